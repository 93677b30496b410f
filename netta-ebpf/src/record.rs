//! Helpers every hook shares: reading tracepoint fields, emitting records, the
//! owner of the running task, and the OPENED bookkeeping of a TCP socket.
use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    programs::TracePointContext,
    EbpfContext,
};
use netta_ebpf::{
    counter, tcp_state as st, tp::Field, Event, Flags, Kind, SockInfo, COMM_LEN, IPPROTO_TCP,
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

#[inline(always)]
pub fn emit<C: EbpfContext>(ev: &Event, ctx: &C) {
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
pub fn current_owner() -> (u32, [u8; COMM_LEN]) {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    (pid, comm)
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
    ev.pid = info.pid;
    ev.comm = info.comm;
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

/// Sends OPENED once per socket, as soon as its owner is known.
#[inline(always)]
pub fn open_if_ready<C: EbpfContext>(ctx: &C, sock: u64, info: *mut SockInfo, now: u64) {
    let i = unsafe { &mut *info };
    if i.established != 0 && i.opened_sent == 0 && !i.flags.contains(Flags::OWNER_UNKNOWN) {
        i.opened_sent = 1;
        let ev = event_from_info(Kind::Opened, sock, i, now);
        emit(&ev, ctx);
    }
}

/// Takes the running task as the owner: call only from the owner's own syscall.
#[inline(always)]
pub fn set_owner(info: *mut SockInfo) {
    let i = unsafe { &mut *info };
    if i.flags.contains(Flags::OWNER_UNKNOWN) {
        let (pid, comm) = current_owner();
        i.pid = pid;
        i.comm = comm;
        i.flags
            .remove(Flags::OWNER_UNKNOWN | Flags::OWNER_FROM_LISTENER);
    }
}
