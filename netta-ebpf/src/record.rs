//! Helpers every hook shares: reading tracepoint fields, emitting records, the
//! owner of the running task, and the OPENED bookkeeping of a TCP socket.
use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::{BPF_F_CURRENT_CPU, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        generated::{bpf_get_current_cgroup_id, bpf_get_current_uid_gid, bpf_perf_event_output},
    },
    programs::TracePointContext,
    EbpfContext,
};
use netta_ebpf::{
    counter, tcp_state as st, tp::Field, Event, Flags, Kind, Owner, SockInfo, IPPROTO_TCP,
};

use crate::maps::{CONFIG, COUNTERS, EVENTS, PERF_EVENTS};

/// A hook's return value: 0, or 1 when a read failed (the record is dropped).
#[inline(always)]
pub fn status(r: Result<(), i64>) -> u32 {
    match r {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Reads tracepoint field `f` (its offset from the ABI's layout).
///
/// Direct loads from the context, not a `bpf_probe_read_kernel` call per field (a
/// helper call each, most of a hook's run time). The verifier takes a context load
/// only as `ctx + constant`, aligned to its size, so a field is read in the widest
/// words its offset and size allow, each a volatile load the compiler cannot merge
/// into pointer arithmetic.
#[inline(always)]
pub fn tp_field<T: Copy>(ctx: &TracePointContext, f: Field) -> Result<T, i64> {
    let (off, size) = (f.1, core::mem::size_of::<T>());
    let base = ctx.as_ptr() as *const u8;
    let mut out = core::mem::MaybeUninit::<T>::uninit();
    let dst = out.as_mut_ptr() as *mut u8;
    macro_rules! words {
        ($w:ty) => {{
            let n = core::mem::size_of::<$w>();
            let mut i = 0;
            while i < size / n {
                // SAFETY: inside the field, whose layout the agent checked against tracefs.
                unsafe {
                    let v = core::ptr::read_volatile(base.add(off + i * n) as *const $w);
                    core::ptr::write_unaligned(dst.add(i * n) as *mut $w, v);
                }
                i += 1;
            }
        }};
    }
    if size % 8 == 0 && off % 8 == 0 {
        words!(u64)
    } else if size % 4 == 0 && off % 4 == 0 {
        words!(u32)
    } else if size % 2 == 0 && off % 2 == 0 {
        words!(u16)
    } else {
        words!(u8)
    }
    // SAFETY: every byte of `out` was written above.
    Ok(unsafe { out.assume_init() })
}

#[inline(always)]
pub fn bump(idx: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(idx) {
        // Per-CPU slot: no other CPU writes it.
        unsafe { *p += 1 };
    }
}

/// Sends a connection record, with its socket's network namespace (read here, so
/// only records that go out pay for it).
#[inline(always)]
pub fn emit<C: EbpfContext>(ev: &mut Event, ctx: &C) {
    if ev.sock != 0 && ev.netns == 0 {
        ev.netns = netns_of(ev.sock);
    }
    emit_bytes(ctx, ev.as_bytes());
}

/// Sends any record: the ring buffer, or the perf array of this CPU.
#[inline(always)]
pub fn emit_bytes<C: EbpfContext>(ctx: &C, data: &[u8]) {
    if CONFIG.load().use_perf != 0 {
        perf_output(ctx, data);
        return;
    }
    ring_output(data);
}

/// Sends a record to the perf array of this CPU. perf counts a full buffer
/// itself (PERF_RECORD_LOST), which the agent reads.
#[inline(always)]
pub fn perf_output<C: EbpfContext>(ctx: &C, data: &[u8]) {
    // SAFETY: the map's address is what the loader relocates; data is valid for its length.
    unsafe {
        bpf_perf_event_output(
            ctx.as_ptr(),
            core::ptr::addr_of!(PERF_EVENTS).cast_mut().cast(),
            BPF_F_CURRENT_CPU,
            data.as_ptr().cast_mut().cast(),
            data.len() as u64,
        )
    };
}

/// Sends a record through the ring buffer (the DNS hook has no perf path).
#[inline(always)]
pub fn ring_output(data: &[u8]) {
    let waiting = || EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let wake = if wake_check_due() && waiting() >= CONFIG.load().wakeup_bytes as u64 {
        BPF_RB_FORCE_WAKEUP
    } else {
        // The reader also drains on a short timer.
        BPF_RB_NO_WAKEUP
    };
    if EVENTS.output::<[u8]>(data, wake as u64).is_err() {
        bump(counter::LOST);
    }
}

/// True once per [`counter::WAKE_CHECK_EVERY`] records of this CPU.
#[inline(always)]
fn wake_check_due() -> bool {
    match COUNTERS.get_ptr_mut(counter::SINCE_WAKE_CHECK) {
        Some(p) => unsafe {
            *p += 1;
            if *p >= counter::WAKE_CHECK_EVERY {
                *p = 0;
                true
            } else {
                false
            }
        },
        None => true,
    }
}

/// The inode of a socket's network namespace (`sk->__sk_common.skc_net->ns.inum`);
/// 0 when it cannot be read.
#[inline(always)]
pub fn netns_of(sock: u64) -> u32 {
    let cfg = CONFIG.load();
    match read_at::<u64>(sock, cfg.off_skc_net) {
        Ok(net) if net != 0 => read_at::<u32>(net, cfg.off_net_inum).unwrap_or(0),
        _ => 0,
    }
}

/// The running task as an owner: process id, user, cgroup and command.
#[inline(always)]
pub fn current_owner() -> Owner {
    // A read-only global: the verifier drops the branch not taken.
    let (uid_gid, cgroup) = if CONFIG.load().no_owner_ids != 0 {
        (0, 0)
    } else {
        // SAFETY: helpers without arguments.
        unsafe { (bpf_get_current_uid_gid(), bpf_get_current_cgroup_id()) }
    };
    Owner {
        pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        uid: uid_gid as u32,
        cgroup,
        comm: bpf_get_current_comm().unwrap_or([0; netta_ebpf::COMM_LEN]),
    }
}

#[inline(always)]
pub fn add(counter: *mut u64, v: u64) {
    // Several CPUs may send on one socket at once; XADD keeps the sum exact.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, v) };
}

/// Reads a `T` at byte offset `off` of kernel object `base`.
#[inline(always)]
pub fn read_at<T>(base: u64, off: u32) -> Result<T, i64> {
    // SAFETY: a probe read: a bad address is an error, never a fault.
    unsafe { bpf_probe_read_kernel((base as *const u8).add(off as usize) as *const T) }
        .map_err(|e| e as i64)
}

/// Event built from what the kernel map knows about a TCP socket.
#[inline(always)]
pub fn event_from_info(k: Kind, sock: u64, info: &SockInfo, now: u64) -> Event {
    let mut ev = tcp_record(k, sock, now);
    ev.set_ends(&info.ends);
    ev.start_ns = info.start_ns;
    ev.bytes_sent = info.bytes_sent;
    ev.bytes_recv = info.bytes_recv;
    ev.set_owner(&info.owner);
    ev.netns = info.netns;
    ev.flags = info.flags;
    ev.new_state = st::ESTABLISHED;
    ev
}

/// A TCP record of kind `k` about socket `sock` (0: none), made at `now`.
#[inline(always)]
pub fn tcp_record(k: Kind, sock: u64, now: u64) -> Event {
    let mut ev = Event::zeroed();
    ev.ts_ns = now;
    ev.sock = sock;
    ev.kind = k as u8;
    ev.protocol = IPPROTO_TCP;
    ev
}

/// Reads a socket's network namespace once, with its first record: its
/// other records take it from the map.
#[inline(always)]
pub fn keep_netns(sock: u64, i: &mut SockInfo) {
    if i.netns == 0 {
        i.netns = netns_of(sock);
    }
}

/// Sends OPENED once per socket, as soon as its owner is known.
#[inline(always)]
pub fn open_if_ready<C: EbpfContext>(ctx: &C, sock: u64, info: *mut SockInfo, now: u64) {
    let i = unsafe { &mut *info };
    if i.established != 0 && i.opened_sent == 0 && !i.flags.contains(Flags::OWNER_UNKNOWN) {
        i.opened_sent = 1;
        keep_netns(sock, i);
        let mut ev = event_from_info(Kind::Opened, sock, i, now);
        emit(&mut ev, ctx);
    }
}

/// Takes the running task as the owner: call only from the owner's own syscall.
#[inline(always)]
pub fn set_owner(info: *mut SockInfo) {
    let i = unsafe { &mut *info };
    if i.flags.contains(Flags::OWNER_UNKNOWN) {
        i.owner = current_owner();
        i.flags
            .remove(Flags::OWNER_UNKNOWN | Flags::OWNER_FROM_LISTENER);
    }
}
