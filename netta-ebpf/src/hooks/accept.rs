//! fexit of `inet_csk_accept`: runs in the acceptor's own syscall as it returns the
//! accepted socket, so the acceptor is that socket's owner. One call per accepted
//! connection, where the length tracepoints run on every send and receive.
//!
//! The function changed signature in Linux 6.10; the fexit context holds the
//! arguments and then the return value, so each shape has its own program and the
//! loader picks the one matching the kernel's BTF.
use aya_ebpf::{helpers::bpf_ktime_get_boot_ns, macros::fexit, programs::FExitContext};
use netta_ebpf::flag;

use crate::maps::TCP_SOCKS;
use crate::record::{open_if_ready, set_owner};

/// `struct sock *inet_csk_accept(struct sock *sk, int flags, int *err, bool kern)`.
#[fexit(function = "inet_csk_accept")]
pub fn accept_exit_4(ctx: FExitContext) -> u32 {
    let sk: u64 = ctx.arg(4);
    accepted(&ctx, sk)
}

/// `struct sock *inet_csk_accept(struct sock *sk, struct proto_accept_arg *arg)` (6.10+).
#[fexit(function = "inet_csk_accept")]
pub fn accept_exit_2(ctx: FExitContext) -> u32 {
    let sk: u64 = ctx.arg(2);
    accepted(&ctx, sk)
}

#[inline(always)]
fn accepted(ctx: &FExitContext, sk: u64) -> u32 {
    if sk == 0 {
        return 0;
    }
    let Some(info) = TCP_SOCKS.get_ptr_mut(sk) else {
        return 0;
    };
    if unsafe { (*info).flags } & flag::OWNER_UNKNOWN == 0 {
        return 0;
    }
    set_owner(info);
    open_if_ready(ctx, sk, info, unsafe { bpf_ktime_get_boot_ns() });
    0
}
