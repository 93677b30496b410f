//! `sock:inet_sock_set_state`: the TCP lifecycle, and the owners of connect,
//! listen and close, which run in the owner's own syscall.
use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::bpf_ktime_get_boot_ns,
    macros::tracepoint,
    programs::TracePointContext,
};
use netta_ebpf::{
    counter, flag, kind, listener_key, tcp_state as st, tp::set_state as f, Event, ListenerInfo,
    SockInfo, AF_INET, AF_INET6, IPPROTO_TCP,
};

use crate::maps::{CONFIG, LISTENERS, TCP_SOCKS};
use crate::record::{
    bump, current_owner, emit, event_from_info, open_if_ready, read_at, set_owner,
};

struct Transition {
    sock: u64,
    old: u8,
    new: u8,
    family: u16,
    local_port: u16,
    remote_port: u16,
    local_addr: [u8; 16],
    remote_addr: [u8; 16],
}

#[inline(always)]
fn field<T>(ctx: &TracePointContext, f: (&str, usize, usize)) -> Result<T, i64> {
    unsafe { ctx.read_at::<T>(f.1) }.map_err(|e| e as i64)
}

#[inline(always)]
fn read_transition(ctx: &TracePointContext) -> Result<Option<Transition>, i64> {
    let protocol: u16 = field(ctx, f::PROTOCOL)?;
    if protocol != IPPROTO_TCP as u16 {
        return Ok(None);
    }
    let family: u16 = field(ctx, f::FAMILY)?;
    let mut t = Transition {
        sock: field::<u64>(ctx, f::SKADDR)?,
        old: field::<i32>(ctx, f::OLDSTATE)? as u8,
        new: field::<i32>(ctx, f::NEWSTATE)? as u8,
        family,
        local_port: field(ctx, f::SPORT)?,
        remote_port: field(ctx, f::DPORT)?,
        local_addr: [0; 16],
        remote_addr: [0; 16],
    };
    if family == AF_INET {
        let s: [u8; 4] = field(ctx, f::SADDR)?;
        let d: [u8; 4] = field(ctx, f::DADDR)?;
        t.local_addr[..4].copy_from_slice(&s);
        t.remote_addr[..4].copy_from_slice(&d);
    } else if family == AF_INET6 {
        t.local_addr = field(ctx, f::SADDR_V6)?;
        t.remote_addr = field(ctx, f::DADDR_V6)?;
    } else {
        return Ok(None);
    }
    Ok(Some(t))
}

#[inline(always)]
fn event_from_transition(k: u8, t: &Transition, now: u64) -> Event {
    let mut ev = Event::zeroed();
    ev.ts_ns = now;
    ev.start_ns = now;
    ev.sock = t.sock;
    ev.kind = k;
    ev.local_addr = t.local_addr;
    ev.remote_addr = t.remote_addr;
    ev.local_port = t.local_port;
    ev.remote_port = t.remote_port;
    ev.family = t.family;
    ev.old_state = t.old;
    ev.new_state = t.new;
    ev.protocol = IPPROTO_TCP;
    ev
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    match try_set_state(&ctx) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}
fn try_set_state(ctx: &TracePointContext) -> Result<(), i64> {
    let Some(t) = read_transition(ctx)? else {
        return Ok(());
    };
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if CONFIG.load().all_states != 0 {
        let ev = event_from_transition(kind::STATE, &t, now);
        emit(&ev, ctx);
    }
    match t.new {
        st::SYN_SENT => {
            // connect(): process context, so `current` owns the socket.
            let (pid, comm) = current_owner();
            let info = SockInfo {
                start_ns: now,
                pid,
                comm,
                flags: flag::INITIATOR,
                family: t.family,
                ..SockInfo::zeroed()
            };
            if TCP_SOCKS.insert(t.sock, info, BPF_ANY as u64).is_err() {
                bump(counter::MAP_FULL);
            }
        }
        st::SYN_RECV => {
            let info = SockInfo {
                start_ns: now,
                flags: flag::ACCEPTED | flag::OWNER_UNKNOWN,
                family: t.family,
                ..SockInfo::zeroed()
            };
            // NOEXIST: a retransmitted handshake must not reset the start time.
            let _ = TCP_SOCKS.insert(t.sock, info, BPF_NOEXIST as u64);
        }
        st::ESTABLISHED => on_established(ctx, &t, now),
        st::FIN_WAIT1 | st::LAST_ACK => {
            // Only close()/shutdown() move a socket here: the owner's own context.
            if let Some(info) = TCP_SOCKS.get_ptr_mut(t.sock) {
                unsafe { (*info).fin_sent = 1 };
                set_owner(info);
                open_if_ready(ctx, t.sock, info, now);
            }
        }
        st::LISTEN => {
            let (pid, comm) = current_owner();
            let l = ListenerInfo { pid, _pad: 0, comm };
            let _ = LISTENERS.insert(listener_key(t.family, t.local_port), l, BPF_ANY as u64);
            let mut ev = event_from_transition(kind::LISTEN_STARTED, &t, now);
            ev.pid = pid;
            ev.comm = comm;
            emit(&ev, ctx);
        }
        st::CLOSE => on_close(ctx, &t, now),
        _ => {}
    }
    Ok(())
}

#[inline(always)]
fn on_established(ctx: &TracePointContext, t: &Transition, now: u64) {
    let ptr = match TCP_SOCKS.get_ptr_mut(t.sock) {
        Some(p) => p,
        None => {
            // Handshake began before netta attached, or the LRU evicted the entry.
            let dir = if t.old == st::SYN_SENT {
                flag::INITIATOR
            } else {
                flag::ACCEPTED
            };
            let info = SockInfo {
                start_ns: now,
                flags: dir | flag::OWNER_UNKNOWN | flag::PARTIAL,
                family: t.family,
                ..SockInfo::zeroed()
            };
            if TCP_SOCKS.insert(t.sock, info, BPF_NOEXIST as u64).is_err() {
                bump(counter::MAP_FULL);
            }
            match TCP_SOCKS.get_ptr_mut(t.sock) {
                Some(p) => p,
                None => return,
            }
        }
    };
    let i = unsafe { &mut *ptr };
    i.established = 1;
    i.family = t.family;
    i.local_addr = t.local_addr;
    i.remote_addr = t.remote_addr;
    i.local_port = t.local_port;
    i.remote_port = t.remote_port;
    if i.flags & flag::OWNER_UNKNOWN != 0 {
        let mut ev = event_from_info(kind::PENDING, t.sock, i, now);
        if let Some(l) = unsafe { LISTENERS.get(listener_key(i.family, i.local_port)) } {
            ev.pid = l.pid;
            ev.comm = l.comm;
            ev.flags = (ev.flags & !flag::OWNER_UNKNOWN) | flag::OWNER_FROM_LISTENER;
        }
        emit(&ev, ctx);
    }
    open_if_ready(ctx, t.sock, ptr, now);
}

#[inline(always)]
fn on_close(ctx: &TracePointContext, t: &Transition, now: u64) {
    match t.old {
        st::LISTEN => {
            let key = listener_key(t.family, t.local_port);
            let mut ev = event_from_transition(kind::LISTEN_STOPPED, t, now);
            if let Some(l) = unsafe { LISTENERS.get(key) } {
                ev.pid = l.pid;
                ev.comm = l.comm;
                let (pid, _) = current_owner();
                // Another SO_REUSEPORT listener on the port may still be open.
                if l.pid == pid {
                    let _ = LISTENERS.remove(key);
                }
            }
            emit(&ev, ctx);
        }
        st::SYN_SENT => {
            let mut ev = event_from_transition(kind::FAILED, t, now);
            if let Some(i) = unsafe { TCP_SOCKS.get(t.sock) } {
                ev.pid = i.pid;
                ev.comm = i.comm;
                ev.start_ns = i.start_ns;
                ev.flags = i.flags;
            } else {
                ev.flags = flag::INITIATOR | flag::OWNER_UNKNOWN | flag::PARTIAL;
            }
            emit(&ev, ctx);
            let _ = TCP_SOCKS.remove(t.sock);
        }
        st::SYN_RECV => {
            // Handshake never completed; nothing was opened.
            let _ = TCP_SOCKS.remove(t.sock);
        }
        _ => {
            match TCP_SOCKS.get_ptr_mut(t.sock) {
                Some(ptr) => {
                    let i = unsafe { &mut *ptr };
                    if i.established == 0 {
                        let _ = TCP_SOCKS.remove(t.sock);
                        return;
                    }
                    if i.flags & flag::OWNER_UNKNOWN != 0 {
                        let key = listener_key(i.family, i.local_port);
                        if let Some(l) = unsafe { LISTENERS.get(key) } {
                            i.pid = l.pid;
                            i.comm = l.comm;
                            i.flags = (i.flags & !flag::OWNER_UNKNOWN) | flag::OWNER_FROM_LISTENER;
                        }
                    }
                    if i.opened_sent == 0 {
                        i.opened_sent = 1;
                        let ev = event_from_info(kind::OPENED, t.sock, i, now);
                        emit(&ev, ctx);
                    }
                    read_byte_counters(t.sock, i);
                    let mut ev = event_from_info(kind::CLOSED, t.sock, i, now);
                    ev.old_state = t.old;
                    ev.new_state = st::CLOSE;
                    emit(&ev, ctx);
                    let _ = TCP_SOCKS.remove(t.sock);
                }
                None => {
                    // Opened before netta started (or evicted): still report the end,
                    // so the agent can drop the row it seeded from /proc.
                    let mut ev = event_from_transition(kind::CLOSED, t, now);
                    ev.start_ns = 0;
                    ev.flags = flag::PARTIAL | flag::OWNER_UNKNOWN;
                    emit(&ev, ctx);
                }
            }
        }
    }
}

/// Payload bytes of a closing TCP socket, from the kernel's own counters:
/// `bytes_acked` also counts our SYN (when we connected) and our FIN once acked, and
/// `bytes_received` counts the peer's FIN, so those sequence numbers come off.
#[inline(always)]
fn read_byte_counters(sock: u64, i: &mut SockInfo) {
    let cfg = CONFIG.load();
    if cfg.off_bytes_acked == 0 || cfg.off_bytes_received == 0 {
        return;
    }
    let (Ok(acked), Ok(received)) = (
        read_at::<u64>(sock, cfg.off_bytes_acked),
        read_at::<u64>(sock, cfg.off_bytes_received),
    ) else {
        return;
    };
    let mut sent = acked;
    if i.flags & flag::INITIATOR != 0 {
        sent = sent.saturating_sub(1);
    }
    if i.fin_sent != 0 {
        if let (Ok(una), Ok(wseq)) = (
            read_at::<u32>(sock, cfg.off_snd_una),
            read_at::<u32>(sock, cfg.off_write_seq),
        ) {
            if una == wseq {
                sent = sent.saturating_sub(1);
            }
        }
    }
    let mut recv = received;
    const SOCK_DONE: u64 = 1 << 1;
    if let Ok(f) = read_at::<u64>(sock, cfg.off_sk_flags) {
        if f & SOCK_DONE != 0 {
            recv = recv.saturating_sub(1);
        }
    }
    i.bytes_sent = sent;
    i.bytes_recv = recv;
}
