//! `syscalls:sys_{enter,exit}_send{to,msg}`: the destination a thread passed to an
//! unconnected send, stashed per thread for `sock_length` (whose tracepoint carries
//! the socket, not the address). Attached only on the length-tracepoint path.
use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use netta_ebpf::tp::{sendmsg, sendto};

use crate::hooks::udp;
use crate::maps::SEND_DEST;
use crate::record::{status, tp_field};

/// Copies an IPv4/IPv6 `sockaddr` from user memory into a stash entry.
#[inline(always)]
fn stash_dest(uaddr: u64) -> Result<(), i64> {
    if uaddr == 0 {
        return Ok(());
    }
    let raw: [u8; 24] = unsafe { bpf_probe_read_user(uaddr as *const [u8; 24]) }?;
    if let Some(d) = udp::dest_from_sockaddr(&raw) {
        let tid = bpf_get_current_pid_tgid();
        let _ = SEND_DEST.insert(tid, d, BPF_ANY as u64);
    }
    Ok(())
}

#[tracepoint]
pub fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    let addr: u64 = tp_field(&ctx, sendto::addr).unwrap_or(0);
    status(stash_dest(addr))
}

#[tracepoint]
pub fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    let msg: u64 = tp_field(&ctx, sendmsg::msg).unwrap_or(0);
    if msg == 0 {
        return 0;
    }
    // struct user_msghdr (uapi, fixed) starts with msg_name.
    let name: u64 = unsafe { bpf_probe_read_user(msg as *const u64) }.unwrap_or(0);
    status(stash_dest(name))
}

#[tracepoint]
pub fn sys_exit_send(_ctx: TracePointContext) -> u32 {
    // Clear the stash so a later connected send() on this thread does not reuse it.
    let tid = bpf_get_current_pid_tgid();
    let _ = SEND_DEST.remove(tid);
    0
}
