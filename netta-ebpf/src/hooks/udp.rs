//! UDP flow accounting, shared by both send paths: one map entry per (socket,
//! destination) counted in the kernel, and one record for the flow's first datagram.
use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_boot_ns, EbpfContext};
use netta_ebpf::{
    Event, Flags, Kind, SendDest, UdpFlowKey, UdpFlowStats, AF_INET, AF_INET6, IPPROTO_UDP,
};

use crate::maps::{CONFIG, UDP_FLOWS};
use crate::record::{add, current_owner, emit, read_at};

/// A sockaddr_in / sockaddr_in6 (its first 24 bytes) as a destination.
#[inline(always)]
pub fn dest_from_sockaddr(raw: &[u8; 24]) -> Option<SendDest> {
    let family = u16::from_ne_bytes([raw[0], raw[1]]);
    let mut d = SendDest {
        addr: [0; 16],
        port: u16::from_be_bytes([raw[2], raw[3]]),
        family,
        _pad: 0,
        sock: 0,
    };
    if family == AF_INET {
        d.addr[..4].copy_from_slice(&raw[4..8]);
    } else if family == AF_INET6 {
        // sockaddr_in6: family, port, flowinfo, then the address at byte 8.
        d.addr.copy_from_slice(&raw[8..24]);
    } else {
        return None;
    }
    Some(d)
}

/// Counts one datagram of `ret` bytes sent on `sk` (to `dest`, or to the connected
/// peer when `None`). Call only in the sender's own syscall.
#[inline(always)]
pub fn account<C: EbpfContext>(
    ctx: &C,
    sk: u64,
    family: u16,
    ret: i32,
    dest: Option<&SendDest>,
) -> Result<(), i64> {
    if ret < 0 || (family != AF_INET && family != AF_INET6) {
        return Ok(());
    }
    let cfg = CONFIG.load();
    let mut key = UdpFlowKey {
        sock: sk,
        remote_addr: [0; 16],
        remote_port: 0,
        family,
        _pad: 0,
    };
    if let Some(d) = dest {
        key.remote_addr = d.addr;
        key.remote_port = d.port;
        key.family = d.family;
    } else {
        // Connected socket: the peer lives in struct sock_common.
        if family == AF_INET {
            let a: [u8; 4] = read_at(sk, cfg.off_daddr)?;
            key.remote_addr[..4].copy_from_slice(&a);
        } else {
            key.remote_addr = read_at(sk, cfg.off_v6_daddr)?;
        }
        let dport: u16 = read_at(sk, cfg.off_dport)?;
        key.remote_port = u16::from_be(dport);
    }
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if let Some(s) = UDP_FLOWS.get_ptr_mut(key) {
        let s = unsafe { &mut *s };
        add(&mut s.packets, 1);
        add(&mut s.bytes, ret as u64);
        s.last_ns = now;
        return Ok(());
    }
    let mut local_addr = [0u8; 16];
    if family == AF_INET {
        let a: [u8; 4] = read_at(sk, cfg.off_rcv_saddr)?;
        local_addr[..4].copy_from_slice(&a);
    } else {
        local_addr = read_at(sk, cfg.off_v6_rcv_saddr)?;
    }
    // skc_num: the bound local port, host order (assigned by the send that just ran).
    let local_port: u16 = read_at(sk, cfg.off_num)?;
    // Who and where are in the flow's record; the map keeps only the counts.
    let stats = UdpFlowStats {
        first_ns: now,
        last_ns: now,
        packets: 1,
        bytes: ret as u64,
    };
    if UDP_FLOWS.insert(key, stats, BPF_NOEXIST as u64).is_err() {
        // Lost a race with another CPU inserting the same flow: count there instead.
        if let Some(s) = UDP_FLOWS.get_ptr_mut(key) {
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
    ev.kind = Kind::UdpFlow as u8;
    ev.flags = Flags::INITIATOR;
    ev.protocol = IPPROTO_UDP;
    ev.family = key.family;
    ev.local_addr = local_addr;
    ev.local_port = local_port;
    ev.remote_addr = key.remote_addr;
    ev.remote_port = key.remote_port;
    ev.set_owner(&current_owner());
    ev.packets = 1;
    ev.bytes_sent = ret as u64;
    emit(&mut ev, ctx);
    Ok(())
}
