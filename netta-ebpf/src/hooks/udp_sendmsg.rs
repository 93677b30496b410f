//! fexit of `udp_sendmsg` / `udpv6_sendmsg` (`sk, msg, len`, then the return value):
//! the sender's syscall, after the send bound the local port. An unconnected send's
//! destination is `msg->msg_name`, already copied into kernel memory, so no syscall
//! tracepoint has to stash it.
use aya_ebpf::{macros::fexit, programs::FExitContext};
use netta_ebpf::{AF_INET, AF_INET6};

use crate::hooks::udp;
use crate::maps::CONFIG;
use crate::record::{read_at, status};

#[fexit(function = "udp_sendmsg")]
pub fn udp_sendmsg_exit(ctx: FExitContext) -> u32 {
    sent(&ctx, AF_INET)
}

#[fexit(function = "udpv6_sendmsg")]
pub fn udpv6_sendmsg_exit(ctx: FExitContext) -> u32 {
    sent(&ctx, AF_INET6)
}

#[inline(always)]
fn sent(ctx: &FExitContext, socket_family: u16) -> u32 {
    let sk: u64 = ctx.arg(0);
    let msg: u64 = ctx.arg(1);
    let ret = ctx.arg::<u64>(3) as i32;
    status(try_sent(ctx, sk, msg, ret, socket_family))
}

#[inline(always)]
fn try_sent(
    ctx: &FExitContext,
    sk: u64,
    msg: u64,
    ret: i32,
    socket_family: u16,
) -> Result<(), i64> {
    if ret < 0 || sk == 0 {
        return Ok(());
    }
    let cfg = CONFIG.load();
    let family: u16 = read_at(sk, cfg.off_family)?;
    // udpv6_sendmsg hands IPv4 destinations to udp_sendmsg: count each datagram
    // once, in the function of the socket's own family.
    if family != socket_family {
        return Ok(());
    }
    let mut dest = None;
    if msg != 0 {
        let name: u64 = read_at(msg, cfg.off_msg_name)?;
        if name != 0 {
            let raw: [u8; 24] = read_at(name, 0)?;
            dest = udp::dest_from_sockaddr(&raw);
        }
    }
    udp::account(ctx, sk, family, ret, dest.as_ref())
}
