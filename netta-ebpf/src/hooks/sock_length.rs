//! `sock:sock_{send,recv}_length` (Linux 6.3+): the fallback where fexit is missing.
//! They run in the syscall of whoever uses the socket, so they give an accepted
//! socket its owner, and the send side counts UDP datagrams.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use netta_ebpf::{flag, tp::sock_len as f, IPPROTO_TCP, IPPROTO_UDP};

use crate::hooks::udp;
use crate::maps::{CONFIG, SEND_DEST, TCP_SOCKS};
use crate::record::{open_if_ready, set_owner};

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

#[inline(always)]
fn field<T>(ctx: &TracePointContext, f: (&str, usize, usize)) -> Result<T, i64> {
    unsafe { ctx.read_at::<T>(f.1) }.map_err(|e| e as i64)
}

fn try_sock_length(ctx: &TracePointContext, send: bool) -> Result<(), i64> {
    let protocol: u16 = field(ctx, f::PROTOCOL)?;
    if protocol == IPPROTO_TCP as u16 {
        let sk: u64 = field(ctx, f::SK)?;
        let Some(info) = TCP_SOCKS.get_ptr_mut(sk) else {
            return Ok(());
        };
        if unsafe { (*info).flags } & flag::OWNER_UNKNOWN == 0 {
            return Ok(());
        }
        // Runs in the syscall of whoever uses the socket: a valid owner even on error.
        set_owner(info);
        open_if_ready(ctx, sk, info, unsafe { bpf_ktime_get_boot_ns() });
    } else if protocol == IPPROTO_UDP as u16 && send && CONFIG.load().udp_via_length != 0 {
        let ret: i32 = field(ctx, f::RET)?;
        let family: u16 = field(ctx, f::FAMILY)?;
        let sk: u64 = field(ctx, f::SK)?;
        let tid = bpf_get_current_pid_tgid();
        let dest = unsafe { SEND_DEST.get(tid) };
        udp::account(ctx, sk, family, ret, dest)?;
    }
    Ok(())
}
