//! `sock:sock_{send,recv}_length` (Linux 6.3+): the fallback where fexit is missing.
//! They run in the syscall of whoever uses the socket, so they give an accepted
//! socket its owner, and the send side counts UDP datagrams.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use netta_ebpf::{tp::sock_len as f, Flags, IPPROTO_TCP, IPPROTO_UDP};

use crate::hooks::udp;
use crate::maps::{CONFIG, SEND_DEST, TCP_SOCKS};
use crate::record::{open_if_ready, set_owner, status, tp_field as field};

#[tracepoint]
pub fn sock_send_length(ctx: TracePointContext) -> u32 {
    status(try_sock_length(&ctx, true))
}

#[tracepoint]
pub fn sock_recv_length(ctx: TracePointContext) -> u32 {
    status(try_sock_length(&ctx, false))
}

fn try_sock_length(ctx: &TracePointContext, send: bool) -> Result<(), i64> {
    let protocol: u16 = field(ctx, f::protocol)?;
    if protocol == IPPROTO_TCP as u16 {
        let sk: u64 = field(ctx, f::sk)?;
        let Some(info) = TCP_SOCKS.get_ptr_mut(sk) else {
            return Ok(());
        };
        if !unsafe { (*info).flags }.contains(Flags::OWNER_UNKNOWN) {
            return Ok(());
        }
        // Runs in the syscall of whoever uses the socket: a valid owner even on error.
        set_owner(info);
        open_if_ready(ctx, sk, info, unsafe { bpf_ktime_get_boot_ns() });
    } else if protocol == IPPROTO_UDP as u16 && send && CONFIG.load().udp_via_length != 0 {
        let ret: i32 = field(ctx, f::ret)?;
        let family: u16 = field(ctx, f::family)?;
        let sk: u64 = field(ctx, f::sk)?;
        let tid = bpf_get_current_pid_tgid();
        // Consumed here: a stash lives for one send. One left for another socket
        // (0: the syscall tracepoints, which clear it at the syscall's exit) is not used.
        let dest = unsafe { SEND_DEST.get(tid) }.copied();
        if dest.is_some() {
            let _ = SEND_DEST.remove(tid);
        }
        let dest = dest.filter(|d| d.sock == 0 || d.sock == sk);
        udp::account(ctx, sk, family, ret, dest.as_ref())?;
    }
    Ok(())
}
