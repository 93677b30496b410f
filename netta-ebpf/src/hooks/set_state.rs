//! `sock:inet_sock_set_state`: the TCP lifecycle, and the owners of connect,
//! listen and close, which run in the owner's own syscall.
use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use netta_ebpf::{
    counter, listener_key, tcp_state as st, tp::set_state as f, Endpoints, Event, Flags, Kind,
    ListenerInfo, SockInfo, AF_INET, AF_INET6, IPPROTO_TCP,
};

use crate::maps::{CONFIG, LISTENERS, TCP_SOCKS};
use crate::record::{
    bump, current_owner, emit, event_from_info, keep_netns, open_if_ready, read_at, status,
    tcp_record, tp_field as field,
};

struct Transition {
    sock: u64,
    old: u8,
    new: u8,
    ends: Endpoints,
}

/// The transitions that change nothing netta keeps: every step of a close but the
/// last (FIN_WAIT1, FIN_WAIT2, TIME_WAIT, CLOSING, CLOSE_WAIT, LAST_ACK), since
/// CLOSE's old state tells whether this side sent a FIN. Half of a connection's
/// transitions; they leave before reading anything else.
#[inline(always)]
fn ignored(new: u8) -> bool {
    matches!(
        new,
        st::FIN_WAIT1 | st::FIN_WAIT2 | st::TIME_WAIT | st::CLOSING | st::CLOSE_WAIT | st::LAST_ACK
    )
}

#[inline(always)]
fn read_transition(ctx: &TracePointContext, all_states: bool) -> Result<Option<Transition>, i64> {
    let protocol: u16 = field(ctx, f::protocol)?;
    if protocol != IPPROTO_TCP as u16 {
        return Ok(None);
    }
    let new = field::<i32>(ctx, f::newstate)? as u8;
    if !all_states && ignored(new) {
        return Ok(None);
    }
    let family: u16 = field(ctx, f::family)?;
    let mut t = Transition {
        sock: field::<u64>(ctx, f::skaddr)?,
        old: field::<i32>(ctx, f::oldstate)? as u8,
        new,
        ends: Endpoints {
            family,
            local_port: field(ctx, f::sport)?,
            remote_port: field(ctx, f::dport)?,
            ..Endpoints::zeroed()
        },
    };
    if family == AF_INET {
        let s: [u8; 4] = field(ctx, f::saddr)?;
        let d: [u8; 4] = field(ctx, f::daddr)?;
        t.ends.local_addr[..4].copy_from_slice(&s);
        t.ends.remote_addr[..4].copy_from_slice(&d);
    } else if family == AF_INET6 {
        t.ends.local_addr = field(ctx, f::saddr_v6)?;
        t.ends.remote_addr = field(ctx, f::daddr_v6)?;
    } else {
        return Ok(None);
    }
    Ok(Some(t))
}

#[inline(always)]
fn event_from_transition(k: Kind, t: &Transition, now: u64) -> Event {
    let mut ev = tcp_record(k, t.sock, now);
    ev.set_ends(&t.ends);
    ev.start_ns = now;
    ev.old_state = t.old;
    ev.new_state = t.new;
    ev
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    status(try_set_state(&ctx))
}

fn try_set_state(ctx: &TracePointContext) -> Result<(), i64> {
    let all_states = CONFIG.load().all_states != 0;
    let Some(t) = read_transition(ctx, all_states)? else {
        return Ok(());
    };
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if all_states {
        let mut ev = event_from_transition(Kind::State, &t, now);
        emit(&mut ev, ctx);
    }
    match t.new {
        st::SYN_SENT => {
            // connect(): process context, so `current` owns the socket.
            let info = SockInfo {
                start_ns: now,
                owner: current_owner(),
                flags: Flags::INITIATOR,
                ends: t.ends,
                ..SockInfo::zeroed()
            };
            if TCP_SOCKS.insert(t.sock, info, BPF_ANY as u64).is_err() {
                bump(counter::MAP_FULL);
            }
        }
        st::SYN_RECV => {
            let info = SockInfo {
                start_ns: now,
                flags: Flags::ACCEPTED | Flags::OWNER_UNKNOWN,
                ends: t.ends,
                ..SockInfo::zeroed()
            };
            // NOEXIST: a retransmitted handshake must not reset the start time.
            let _ = TCP_SOCKS.insert(t.sock, info, BPF_NOEXIST as u64);
        }
        st::ESTABLISHED => on_established(ctx, &t, now),
        st::LISTEN => {
            let l = ListenerInfo {
                owner: current_owner(),
            };
            let _ = LISTENERS.insert(
                listener_key(t.ends.family, t.ends.local_port),
                l,
                BPF_ANY as u64,
            );
            let mut ev = event_from_transition(Kind::ListenStarted, &t, now);
            ev.set_owner(&l.owner);
            emit(&mut ev, ctx);
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
                Flags::INITIATOR
            } else {
                Flags::ACCEPTED
            };
            let info = SockInfo {
                start_ns: now,
                flags: dir | Flags::OWNER_UNKNOWN | Flags::PARTIAL,
                ends: t.ends,
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
    i.ends = t.ends;
    if i.flags.contains(Flags::OWNER_UNKNOWN) {
        keep_netns(t.sock, i);
        let mut ev = event_from_info(Kind::Pending, t.sock, i, now);
        if let Some(l) = unsafe { LISTENERS.get(listener_key(i.ends.family, i.ends.local_port)) } {
            ev.set_owner(&l.owner);
            ev.flags = ev.flags.difference(Flags::OWNER_UNKNOWN) | Flags::OWNER_FROM_LISTENER;
        }
        emit(&mut ev, ctx);
    }
    open_if_ready(ctx, t.sock, ptr, now);
}

#[inline(always)]
fn on_close(ctx: &TracePointContext, t: &Transition, now: u64) {
    match t.old {
        st::LISTEN => {
            let key = listener_key(t.ends.family, t.ends.local_port);
            let mut ev = event_from_transition(Kind::ListenStopped, t, now);
            if let Some(l) = unsafe { LISTENERS.get(key) } {
                ev.set_owner(&l.owner);
                let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
                // Another SO_REUSEPORT listener on the port may still be open.
                if l.owner.pid == pid {
                    let _ = LISTENERS.remove(key);
                }
            }
            emit(&mut ev, ctx);
        }
        st::SYN_SENT => {
            let mut ev = event_from_transition(Kind::Failed, t, now);
            if let Some(i) = unsafe { TCP_SOCKS.get(t.sock) } {
                ev.set_owner(&i.owner);
                ev.start_ns = i.start_ns;
                ev.flags = i.flags;
            } else {
                ev.flags = Flags::INITIATOR | Flags::OWNER_UNKNOWN | Flags::PARTIAL;
            }
            emit(&mut ev, ctx);
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
                    if i.flags.contains(Flags::OWNER_UNKNOWN) {
                        let key = listener_key(i.ends.family, i.ends.local_port);
                        if let Some(l) = unsafe { LISTENERS.get(key) } {
                            i.owner = l.owner;
                            i.flags = i.flags.difference(Flags::OWNER_UNKNOWN)
                                | Flags::OWNER_FROM_LISTENER;
                        }
                    }
                    keep_netns(t.sock, i);
                    if i.opened_sent == 0 {
                        i.opened_sent = 1;
                        let mut ev = event_from_info(Kind::Opened, t.sock, i, now);
                        emit(&mut ev, ctx);
                    }
                    read_byte_counters(t.sock, i, sent_fin(t.old));
                    let mut ev = event_from_info(Kind::Closed, t.sock, i, now);
                    ev.old_state = t.old;
                    ev.new_state = st::CLOSE;
                    emit(&mut ev, ctx);
                    let _ = TCP_SOCKS.remove(t.sock);
                }
                None => {
                    // Opened before netta started (or evicted): still report the end,
                    // so the agent can drop the row it seeded from /proc.
                    let mut ev = event_from_transition(Kind::Closed, t, now);
                    ev.start_ns = 0;
                    ev.flags = Flags::PARTIAL | Flags::OWNER_UNKNOWN;
                    emit(&mut ev, ctx);
                }
            }
        }
    }
}

/// True when a socket reaching CLOSE from `old` had queued its own FIN (close() or
/// shutdown() moved it to FIN_WAIT1 or LAST_ACK on the way).
#[inline(always)]
fn sent_fin(old: u8) -> bool {
    matches!(
        old,
        st::FIN_WAIT1 | st::FIN_WAIT2 | st::CLOSING | st::TIME_WAIT | st::LAST_ACK
    )
}

/// Payload bytes of a closing TCP socket, from the kernel's own counters:
/// `bytes_acked` also counts our SYN (when we connected) and our FIN once acked, and
/// `bytes_received` counts the peer's FIN, so those sequence numbers come off.
#[inline(always)]
fn read_byte_counters(sock: u64, i: &mut SockInfo, fin_sent: bool) {
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
    if i.flags.contains(Flags::INITIATOR) {
        sent = sent.saturating_sub(1);
    }
    if fin_sent {
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
