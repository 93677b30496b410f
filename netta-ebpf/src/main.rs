//! netta's kernel program: TCP lifecycle from `sock:inet_sock_set_state`, owners from
//! process-context hooks (`sock:sock_{send,recv}_length` among them), byte counts from
//! `tcp_sock` at CLOSE, and UDP flows aggregated per (socket, destination).
//!
//! Ownership rule: many transitions run in softirq, where `current` is whatever task
//! happened to be running (on loopback, the *peer*). The owner is therefore only ever
//! taken from hooks that run in the socket owner's own syscall: CLOSE->SYN_SENT
//! (connect), CLOSE->LISTEN (listen), ->FIN_WAIT1 / ->LAST_ACK (close, shutdown) and
//! the send/recv length hooks. An accepted socket's OPENED record waits for the first
//! of those; if none ran before CLOSE, the listener's owner is used and flagged.
#![no_std]
#![no_main]
// The bpf target exposes no `fetch_add` on atomics; the intrinsic lowers to BPF XADD.
#![allow(internal_features)]
#![feature(core_intrinsics)]

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_user,
    },
    macros::{map, tracepoint},
    maps::{LruHashMap, PerCpuArray, PerfEventArray, RingBuf},
    programs::TracePointContext,
    Global,
};
use netta_abi::{
    counter, flag, kind, listener_key, tcp_state as st, Config, Event, ListenerInfo, SendDest,
    SockInfo, UdpFlowKey, UdpFlowStats, AF_INET, AF_INET6, COMM_LEN, IPPROTO_TCP, IPPROTO_UDP,
};

#[unsafe(no_mangle)]
static CONFIG: Global<Config> = Global::new(Config {
    all_states: 0,
    use_perf: 0,
    _pad: [0; 2],
    wakeup_bytes: 256 * 1024,
    off_v6_daddr: 56,
    off_v6_rcv_saddr: 72,
    off_bytes_acked: 0,
    off_bytes_received: 0,
    off_snd_una: 0,
    off_write_seq: 0,
    off_sk_flags: 0,
    _pad2: 0,
});

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

#[map(name = "PERF_EVENTS")]
static PERF_EVENTS: PerfEventArray<Event> = PerfEventArray::new(0);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::LEN, 0);

#[map(name = "TCP_SOCKS")]
static TCP_SOCKS: LruHashMap<u64, SockInfo> = LruHashMap::with_max_entries(131_072, 0);

#[map(name = "LISTENERS")]
static LISTENERS: LruHashMap<u32, ListenerInfo> = LruHashMap::with_max_entries(4096, 0);

#[map(name = "UDP_FLOWS")]
static UDP_FLOWS: LruHashMap<UdpFlowKey, UdpFlowStats> = LruHashMap::with_max_entries(65_536, 0);

#[map(name = "SYNACK_RETRANS")]
static SYNACK_RETRANS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

#[map(name = "SEND_DEST")]
static SEND_DEST: LruHashMap<u64, SendDest> = LruHashMap::with_max_entries(16_384, 0);

#[inline(always)]
fn bump(idx: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(idx) {
        // Per-CPU slot: no other CPU writes it.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn emit(ev: &Event, ctx: &TracePointContext) {
    let cfg = CONFIG.load();
    if cfg.use_perf != 0 {
        // perf counts a full buffer itself (PERF_RECORD_LOST), which the agent reads.
        PERF_EVENTS.output(ctx, ev, 0);
        return;
    }
    // Wake the reader only once a batch is waiting; it also drains on a short timer.
    let wake = if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= cfg.wakeup_bytes as u64 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    if EVENTS.output::<Event>(ev, wake as u64).is_err() {
        bump(counter::LOST);
    }
}

#[inline(always)]
fn current_owner() -> (u32, [u8; COMM_LEN]) {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    (pid, comm)
}

#[inline(always)]
fn add(counter: *mut u64, v: u64) {
    // Several CPUs may send on one socket at once; XADD keeps the sum exact.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, v) };
}

/// Event built from what the kernel map knows about a TCP socket.
#[inline(always)]
fn event_from_info(k: u8, sock: u64, info: &SockInfo, now: u64) -> Event {
    let mut ev = Event::zeroed();
    ev.ts_ns = now;
    ev.sock = sock;
    ev.kind = k;
    ev.start_ns = info.start_ns;
    ev.bytes_sent = info.bytes_sent;
    ev.bytes_recv = info.bytes_recv;
    ev.local_addr = info.local_addr;
    ev.remote_addr = info.remote_addr;
    ev.local_port = info.local_port;
    ev.remote_port = info.remote_port;
    ev.family = info.family;
    ev.pid = info.pid;
    ev.comm = info.comm;
    ev.flags = info.flags;
    ev.protocol = IPPROTO_TCP;
    ev.new_state = st::ESTABLISHED;
    ev
}

/// Sends OPENED once per socket, as soon as its owner is known.
#[inline(always)]
fn open_if_ready(ctx: &TracePointContext, sock: u64, info: *mut SockInfo, now: u64) {
    let i = unsafe { &mut *info };
    if i.established != 0 && i.opened_sent == 0 && i.flags & flag::OWNER_UNKNOWN == 0 {
        i.opened_sent = 1;
        let ev = event_from_info(kind::OPENED, sock, i, now);
        emit(&ev, ctx);
    }
}

#[inline(always)]
fn set_owner(info: *mut SockInfo) {
    let i = unsafe { &mut *info };
    if i.flags & flag::OWNER_UNKNOWN != 0 {
        let (pid, comm) = current_owner();
        i.pid = pid;
        i.comm = comm;
        i.flags &= !(flag::OWNER_UNKNOWN | flag::OWNER_FROM_LISTENER);
    }
}

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
fn read_transition(ctx: &TracePointContext) -> Result<Option<Transition>, i64> {
    // Offsets: netta_abi::tp::SET_STATE_FIELDS, checked by the agent before load.
    let protocol: u16 = unsafe { ctx.read_at(30) }.map_err(|e| e as i64)?;
    if protocol != IPPROTO_TCP as u16 {
        return Ok(None);
    }
    let family: u16 = unsafe { ctx.read_at(28) }.map_err(|e| e as i64)?;
    let mut t = Transition {
        sock: unsafe { ctx.read_at::<u64>(8) }.map_err(|e| e as i64)?,
        old: unsafe { ctx.read_at::<i32>(16) }.map_err(|e| e as i64)? as u8,
        new: unsafe { ctx.read_at::<i32>(20) }.map_err(|e| e as i64)? as u8,
        family,
        local_port: unsafe { ctx.read_at(24) }.map_err(|e| e as i64)?,
        remote_port: unsafe { ctx.read_at(26) }.map_err(|e| e as i64)?,
        local_addr: [0; 16],
        remote_addr: [0; 16],
    };
    if family == AF_INET {
        let s: [u8; 4] = unsafe { ctx.read_at(32) }.map_err(|e| e as i64)?;
        let d: [u8; 4] = unsafe { ctx.read_at(36) }.map_err(|e| e as i64)?;
        t.local_addr[..4].copy_from_slice(&s);
        t.remote_addr[..4].copy_from_slice(&d);
    } else if family == AF_INET6 {
        t.local_addr = unsafe { ctx.read_at(40) }.map_err(|e| e as i64)?;
        t.remote_addr = unsafe { ctx.read_at(56) }.map_err(|e| e as i64)?;
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
    let now = unsafe { bpf_ktime_get_ns() };
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
            if TCP_SOCKS.insert(&t.sock, &info, BPF_ANY as u64).is_err() {
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
            let _ = TCP_SOCKS.insert(&t.sock, &info, BPF_NOEXIST as u64);
        }
        st::ESTABLISHED => on_established(ctx, &t, now),
        st::FIN_WAIT1 | st::LAST_ACK => {
            // Only close()/shutdown() move a socket here: the owner's own context.
            if let Some(info) = TCP_SOCKS.get_ptr_mut(&t.sock) {
                unsafe { (*info).fin_sent = 1 };
                set_owner(info);
                open_if_ready(ctx, t.sock, info, now);
            }
        }
        st::LISTEN => {
            let (pid, comm) = current_owner();
            let l = ListenerInfo { pid, _pad: 0, comm };
            let _ = LISTENERS.insert(&listener_key(t.family, t.local_port), &l, BPF_ANY as u64);
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
    let ptr = match TCP_SOCKS.get_ptr_mut(&t.sock) {
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
            if TCP_SOCKS
                .insert(&t.sock, &info, BPF_NOEXIST as u64)
                .is_err()
            {
                bump(counter::MAP_FULL);
            }
            match TCP_SOCKS.get_ptr_mut(&t.sock) {
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
        if let Some(l) = unsafe { LISTENERS.get(&listener_key(i.family, i.local_port)) } {
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
            if let Some(l) = unsafe { LISTENERS.get(&key) } {
                ev.pid = l.pid;
                ev.comm = l.comm;
                let (pid, _) = current_owner();
                // Another SO_REUSEPORT listener on the port may still be open.
                if l.pid == pid {
                    let _ = LISTENERS.remove(&key);
                }
            }
            emit(&ev, ctx);
        }
        st::SYN_SENT => {
            let mut ev = event_from_transition(kind::FAILED, t, now);
            if let Some(i) = unsafe { TCP_SOCKS.get(&t.sock) } {
                ev.pid = i.pid;
                ev.comm = i.comm;
                ev.start_ns = i.start_ns;
                ev.flags = i.flags;
            } else {
                ev.flags = flag::INITIATOR | flag::OWNER_UNKNOWN | flag::PARTIAL;
            }
            emit(&ev, ctx);
            let _ = TCP_SOCKS.remove(&t.sock);
        }
        st::SYN_RECV => {
            // Handshake never completed; nothing was opened.
            let _ = TCP_SOCKS.remove(&t.sock);
        }
        _ => {
            match TCP_SOCKS.get_ptr_mut(&t.sock) {
                Some(ptr) => {
                    let i = unsafe { &mut *ptr };
                    if i.established == 0 {
                        let _ = TCP_SOCKS.remove(&t.sock);
                        return;
                    }
                    if i.flags & flag::OWNER_UNKNOWN != 0 {
                        let key = listener_key(i.family, i.local_port);
                        if let Some(l) = unsafe { LISTENERS.get(&key) } {
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
                    let _ = TCP_SOCKS.remove(&t.sock);
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
    let base = sock as *const u8;
    // SAFETY: probe reads of a live socket (the tracepoint holds it) at BTF offsets.
    let read64 = |off: u32| unsafe { bpf_probe_read_kernel(base.add(off as usize) as *const u64) };
    let read32 = |off: u32| unsafe { bpf_probe_read_kernel(base.add(off as usize) as *const u32) };
    let (Ok(acked), Ok(received)) = (read64(cfg.off_bytes_acked), read64(cfg.off_bytes_received))
    else {
        return;
    };
    let mut sent = acked;
    if i.flags & flag::INITIATOR != 0 {
        sent = sent.saturating_sub(1);
    }
    if i.fin_sent != 0 {
        if let (Ok(una), Ok(wseq)) = (read32(cfg.off_snd_una), read32(cfg.off_write_seq)) {
            if una == wseq {
                sent = sent.saturating_sub(1);
            }
        }
    }
    let mut recv = received;
    const SOCK_DONE: u64 = 1 << 1;
    if let Ok(f) = read64(cfg.off_sk_flags) {
        if f & SOCK_DONE != 0 {
            recv = recv.saturating_sub(1);
        }
    }
    i.bytes_sent = sent;
    i.bytes_recv = recv;
}

#[tracepoint]
pub fn sock_send_length(ctx: TracePointContext) -> u32 {
    match try_sock_length(&ctx, true) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

#[tracepoint]
pub fn sock_recv_length(ctx: TracePointContext) -> u32 {
    match try_sock_length(&ctx, false) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

fn try_sock_length(ctx: &TracePointContext, send: bool) -> Result<(), i64> {
    // Offsets: netta_abi::tp::SOCK_LEN_FIELDS.
    let protocol: u16 = unsafe { ctx.read_at(18) }.map_err(|e| e as i64)?;
    if protocol == IPPROTO_TCP as u16 {
        let sk: u64 = unsafe { ctx.read_at(8) }.map_err(|e| e as i64)?;
        let Some(info) = TCP_SOCKS.get_ptr_mut(&sk) else {
            return Ok(());
        };
        if unsafe { (*info).flags } & flag::OWNER_UNKNOWN == 0 {
            return Ok(());
        }
        // Runs in the syscall of whoever uses the socket: a valid owner even on error.
        set_owner(info);
        open_if_ready(ctx, sk, info, unsafe { bpf_ktime_get_ns() });
    } else if protocol == IPPROTO_UDP as u16 && send {
        udp_send(ctx)?;
    }
    Ok(())
}

#[inline(always)]
fn udp_send(ctx: &TracePointContext) -> Result<(), i64> {
    let ret: i32 = unsafe { ctx.read_at(20) }.map_err(|e| e as i64)?;
    if ret < 0 {
        return Ok(());
    }
    let family: u16 = unsafe { ctx.read_at(16) }.map_err(|e| e as i64)?;
    if family != AF_INET && family != AF_INET6 {
        return Ok(());
    }
    let sk: u64 = unsafe { ctx.read_at(8) }.map_err(|e| e as i64)?;
    let cfg = CONFIG.load();
    let mut key = UdpFlowKey {
        sock: sk,
        remote_addr: [0; 16],
        remote_port: 0,
        family,
        _pad: 0,
    };
    let tid = bpf_get_current_pid_tgid();
    if let Some(d) = unsafe { SEND_DEST.get(&tid) } {
        key.remote_addr = d.addr;
        key.remote_port = d.port;
        key.family = d.family;
    } else {
        // Connected socket: the peer lives in struct sock_common.
        let base = sk as *const u8;
        if family == AF_INET {
            let a: [u8; 4] = unsafe { bpf_probe_read_kernel(base as *const [u8; 4]) }?;
            key.remote_addr[..4].copy_from_slice(&a);
        } else {
            key.remote_addr = unsafe {
                bpf_probe_read_kernel(base.add(cfg.off_v6_daddr as usize) as *const [u8; 16])
            }?;
        }
        let dport: u16 = unsafe { bpf_probe_read_kernel(base.add(12) as *const u16) }?;
        key.remote_port = u16::from_be(dport);
    }
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(s) = UDP_FLOWS.get_ptr_mut(&key) {
        let s = unsafe { &mut *s };
        add(&mut s.packets, 1);
        add(&mut s.bytes, ret as u64);
        s.last_ns = now;
        return Ok(());
    }
    let base = sk as *const u8;
    let mut local_addr = [0u8; 16];
    if family == AF_INET {
        let a: [u8; 4] = unsafe { bpf_probe_read_kernel(base.add(4) as *const [u8; 4]) }?;
        local_addr[..4].copy_from_slice(&a);
    } else {
        local_addr = unsafe {
            bpf_probe_read_kernel(base.add(cfg.off_v6_rcv_saddr as usize) as *const [u8; 16])
        }?;
    }
    // skc_num: the bound local port, host order (assigned by the send that just ran).
    let local_port: u16 = unsafe { bpf_probe_read_kernel(base.add(14) as *const u16) }?;
    let (pid, comm) = current_owner();
    let stats = UdpFlowStats {
        first_ns: now,
        last_ns: now,
        packets: 1,
        bytes: ret as u64,
        local_addr,
        pid,
        local_port,
        _pad: 0,
        comm,
    };
    if UDP_FLOWS.insert(&key, &stats, BPF_NOEXIST as u64).is_err() {
        // Lost a race with another CPU inserting the same flow: count there instead.
        if let Some(s) = UDP_FLOWS.get_ptr_mut(&key) {
            let s = unsafe { &mut *s };
            add(&mut s.packets, 1);
            add(&mut s.bytes, ret as u64);
        }
        return Ok(());
    }
    let mut ev = Event::zeroed();
    ev.ts_ns = now;
    ev.start_ns = now;
    ev.sock = sk;
    ev.kind = kind::UDP_FLOW;
    ev.flags = flag::INITIATOR;
    ev.protocol = IPPROTO_UDP;
    ev.family = key.family;
    ev.local_addr = local_addr;
    ev.local_port = local_port;
    ev.remote_addr = key.remote_addr;
    ev.remote_port = key.remote_port;
    ev.pid = pid;
    ev.comm = comm;
    ev.packets = 1;
    ev.bytes_sent = ret as u64;
    emit(&ev, ctx);
    Ok(())
}

/// Copies an IPv4/IPv6 `sockaddr` from user memory into a stash entry.
#[inline(always)]
fn stash_dest(uaddr: u64) -> Result<(), i64> {
    if uaddr == 0 {
        return Ok(());
    }
    let raw: [u8; 24] = unsafe { bpf_probe_read_user(uaddr as *const [u8; 24]) }?;
    let family = u16::from_ne_bytes([raw[0], raw[1]]);
    let mut d = SendDest {
        addr: [0; 16],
        port: u16::from_be_bytes([raw[2], raw[3]]),
        family,
        _pad: 0,
    };
    if family == AF_INET {
        d.addr[..4].copy_from_slice(&raw[4..8]);
    } else if family == AF_INET6 {
        // sockaddr_in6: family, port, flowinfo, then the address at byte 8.
        d.addr.copy_from_slice(&raw[8..24]);
    } else {
        return Ok(());
    }
    let tid = bpf_get_current_pid_tgid();
    let _ = SEND_DEST.insert(&tid, &d, BPF_ANY as u64);
    Ok(())
}

#[tracepoint]
pub fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    // Offsets: netta_abi::tp::SENDTO_FIELDS.
    let addr: u64 = unsafe { ctx.read_at(48) }.unwrap_or(0);
    match stash_dest(addr) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

#[tracepoint]
pub fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    let msg: u64 = unsafe { ctx.read_at(24) }.unwrap_or(0);
    if msg == 0 {
        return 0;
    }
    // struct user_msghdr starts with msg_name.
    let name: u64 = unsafe { bpf_probe_read_user(msg as *const u64) }.unwrap_or(0);
    match stash_dest(name) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

#[tracepoint]
pub fn sys_exit_send(_ctx: TracePointContext) -> u32 {
    // Clear the stash so a later connected send() on this thread does not reuse it.
    let tid = bpf_get_current_pid_tgid();
    let _ = SEND_DEST.remove(&tid);
    0
}

#[tracepoint]
pub fn tcp_retransmit_synack(ctx: TracePointContext) -> u32 {
    // Offsets: netta_abi::tp::SYNACK_FIELDS. Counted in the kernel: a SYN flood
    // retransmits for every half-open connection, far too many to stream.
    let (Ok(port), Ok(family)) = (unsafe { ctx.read_at::<u16>(24) }, unsafe {
        ctx.read_at::<u16>(28)
    }) else {
        return 1;
    };
    let key = listener_key(family, port);
    match SYNACK_RETRANS.get_ptr_mut(&key) {
        Some(n) => add(n, 1),
        None => {
            let _ = SYNACK_RETRANS.insert(&key, &1, BPF_NOEXIST as u64);
        }
    }
    0
}

#[tracepoint]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    match try_send_reset(&ctx) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

fn try_send_reset(ctx: &TracePointContext) -> Result<(), i64> {
    // Offsets: netta_abi::tp::SEND_RESET_FIELDS. saddr is this host's side.
    let sk: u64 = unsafe { ctx.read_at(16) }.map_err(|e| e as i64)?;
    let state: i32 = unsafe { ctx.read_at(24) }.map_err(|e| e as i64)?;
    let s: [u8; 28] = unsafe { ctx.read_at(32) }.map_err(|e| e as i64)?;
    let d: [u8; 28] = unsafe { ctx.read_at(60) }.map_err(|e| e as i64)?;
    let family = u16::from_ne_bytes([s[0], s[1]]);
    let mut ev = Event::zeroed();
    ev.ts_ns = unsafe { bpf_ktime_get_ns() };
    ev.start_ns = ev.ts_ns;
    ev.sock = sk;
    ev.kind = kind::RESET_SENT;
    ev.protocol = IPPROTO_TCP;
    ev.family = family;
    ev.old_state = state as u8;
    ev.local_port = u16::from_be_bytes([s[2], s[3]]);
    ev.remote_port = u16::from_be_bytes([d[2], d[3]]);
    if family == AF_INET {
        ev.local_addr[..4].copy_from_slice(&s[4..8]);
        ev.remote_addr[..4].copy_from_slice(&d[4..8]);
    } else if family == AF_INET6 {
        ev.local_addr.copy_from_slice(&s[8..24]);
        ev.remote_addr.copy_from_slice(&d[8..24]);
    } else {
        return Ok(());
    }
    emit(&ev, ctx);
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
