//! The destination of an unconnected UDP send, stashed per thread for `sock_length`
//! (whose tracepoint carries the socket, not the address). Attached only where the
//! send side is counted by `sock_send_length`, by one of two means:
//! - `cgroup/sendmsg{4,6}` on the root of the cgroup v2 hierarchy (preferred): they
//!   run in the sender's syscall, before the send, only for a UDP send that carries
//!   an address, and cost nothing to other syscalls;
//! - `syscalls:sys_{enter,exit}_send{to,msg}` (fallback): any syscall tracepoint
//!   puts every task on the slow syscall path, which costs every syscall on the machine.
use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{cgroup_sock_addr, tracepoint},
    programs::{SockAddrContext, TracePointContext},
};
use core::ptr::read_volatile;
use netta_ebpf::tp::{sendmsg, sendto};
use netta_ebpf::{SendDest, AF_INET, AF_INET6};

use crate::hooks::udp;
use crate::maps::SEND_DEST;
use crate::record::{status, tp_field};

/// A cgroup program's verdict: always allow. netta never blocks or alters traffic.
const ALLOW: i32 = 1;

#[inline(always)]
fn stash(d: &SendDest) {
    let tid = bpf_get_current_pid_tgid();
    let _ = SEND_DEST.insert(tid, *d, BPF_ANY as u64);
}

/// `user_ip4`, `user_ip6` and `user_port` hold the address as the sender wrote it
/// (network byte order); each field is read with one 4-byte load, the only access
/// the verifier allows (volatile: the compiler must not merge two into one).
#[cgroup_sock_addr(sendmsg4)]
pub fn cgroup_sendmsg4(ctx: SockAddrContext) -> i32 {
    let a = ctx.sock_addr;
    let (ip, port, family, sk) = unsafe {
        (
            read_volatile(&(*a).user_ip4),
            read_volatile(&(*a).user_port),
            read_volatile(&(*a).family),
            read_volatile(&(*a).__bindgen_anon_1.sk) as u64,
        )
    };
    let mut d = SendDest {
        addr: [0; 16],
        port: u16::from_be(port as u16),
        family: AF_INET,
        _pad: 0,
        sock: sk,
    };
    if family as u16 == AF_INET6 {
        // An IPv6 socket sending to an IPv4 address (udpv6_sendmsg hands it to
        // udp_sendmsg): keep it as the ::ffff:a.b.c.d the socket's flows use.
        d.family = AF_INET6;
        d.addr[10] = 0xff;
        d.addr[11] = 0xff;
        d.addr[12..].copy_from_slice(&ip.to_ne_bytes());
    } else {
        d.addr[..4].copy_from_slice(&ip.to_ne_bytes());
    }
    stash(&d);
    ALLOW
}

#[cgroup_sock_addr(sendmsg6)]
pub fn cgroup_sendmsg6(ctx: SockAddrContext) -> i32 {
    let a = ctx.sock_addr;
    let mut d = SendDest {
        addr: [0; 16],
        port: 0,
        family: AF_INET6,
        _pad: 0,
        sock: 0,
    };
    unsafe {
        for i in 0..4 {
            let w = read_volatile(&(*a).user_ip6[i]);
            d.addr[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        d.port = u16::from_be(read_volatile(&(*a).user_port) as u16);
        d.sock = read_volatile(&(*a).__bindgen_anon_1.sk) as u64;
    }
    stash(&d);
    ALLOW
}

/// Copies an IPv4/IPv6 `sockaddr` from user memory into a stash entry.
#[inline(always)]
fn stash_user(uaddr: u64) -> Result<(), i64> {
    if uaddr == 0 {
        return Ok(());
    }
    let raw: [u8; 24] = unsafe { bpf_probe_read_user(uaddr as *const [u8; 24]) }?;
    if let Some(d) = udp::dest_from_sockaddr(&raw) {
        stash(&d);
    }
    Ok(())
}

#[tracepoint]
pub fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    let addr: u64 = tp_field(&ctx, sendto::addr).unwrap_or(0);
    status(stash_user(addr))
}

#[tracepoint]
pub fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    let msg: u64 = tp_field(&ctx, sendmsg::msg).unwrap_or(0);
    if msg == 0 {
        return 0;
    }
    // struct user_msghdr (uapi, fixed) starts with msg_name.
    let name: u64 = unsafe { bpf_probe_read_user(msg as *const u64) }.unwrap_or(0);
    status(stash_user(name))
}

#[tracepoint]
pub fn sys_exit_send(_ctx: TracePointContext) -> u32 {
    // Clear the stash so a later connected send() on this thread does not reuse it.
    let tid = bpf_get_current_pid_tgid();
    let _ = SEND_DEST.remove(tid);
    0
}
