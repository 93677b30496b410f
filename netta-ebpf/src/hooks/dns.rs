//! DNS answers, on the receive path of every socket: `cgroup_skb/ingress` on the
//! root of the cgroup v2 hierarchy runs for each packet a socket receives, in
//! every network namespace, with the packet from its IP header. Anything that is
//! not UDP or TCP from source port 53 leaves after a few loads from the packet
//! (IPv4, or IPv6 without extension headers, as the parser reads them); an
//! answer is copied, bounded, into a ring record with the receiving socket's
//! network namespace. The user side parses it as it parses a packet capture.
//! The verdict is always "allow": netta never drops or alters traffic.
use aya_ebpf::{
    bindings::__sk_buff,
    helpers::{bpf_ktime_get_boot_ns, generated::bpf_skb_load_bytes},
    macros::cgroup_skb,
    programs::SkBuffContext,
    EbpfContext,
};
use core::ptr::{read_volatile, write_volatile};
use netta_ebpf::{
    dns_flags, DnsEvent, Kind, DNS_HEADER_SIZE, DNS_PACKET_LEN, IPPROTO_TCP, IPPROTO_UDP,
};

use crate::maps::DNS_SCRATCH;
use crate::record::{netns_of, ring_output};

/// A cgroup program's verdict: always allow.
const ALLOW: i32 = 1;
const DNS_PORT: u16 = 53;
/// Bounds the copy's length for the verifier (`DNS_PACKET_LEN` is a power of two).
const COPY_MASK: u32 = (DNS_PACKET_LEN - 1) as u32;
const _: () = assert!(DNS_PACKET_LEN.is_power_of_two());

#[cgroup_skb(ingress)]
pub fn dns_ingress(ctx: SkBuffContext) -> i32 {
    let skb = ctx.skb.skb;
    if from_port_53(skb) {
        capture(&ctx, skb);
    }
    ALLOW
}

/// True for UDP or TCP from port 53: direct reads from the packet's linear part
/// (the IP and transport headers of a received packet are there), no helper call.
#[inline(always)]
fn from_port_53(skb: *mut __sk_buff) -> bool {
    // SAFETY: context fields the verifier rewrites; every packet read below is
    // after a bounds check against `data_end`.
    unsafe {
        let data = read_volatile(&(*skb).data) as usize;
        let end = read_volatile(&(*skb).data_end) as usize;
        if data + 20 > end {
            return false;
        }
        let b0 = *(data as *const u8);
        let sport_at = match b0 >> 4 {
            4 => {
                let proto = *((data + 9) as *const u8);
                if proto != IPPROTO_UDP && proto != IPPROTO_TCP {
                    return false;
                }
                // A later fragment has no transport header; a first one is
                // read (and rejected by the parser if incomplete).
                let frag = u16::from_be(core::ptr::read_unaligned((data + 6) as *const u16));
                if frag & 0x1fff != 0 {
                    return false;
                }
                ((b0 & 0x0f) as usize) * 4
            }
            6 => {
                if data + 40 > end {
                    return false;
                }
                let next = *((data + 6) as *const u8);
                if next != IPPROTO_UDP && next != IPPROTO_TCP {
                    return false;
                }
                40
            }
            _ => return false,
        };
        let at = data + sport_at;
        if at + 2 > end {
            return false;
        }
        u16::from_be(core::ptr::read_unaligned(at as *const u16)) == DNS_PORT
    }
}

/// Copies the packet (at most [`DNS_PACKET_LEN`] bytes) into a ring record.
#[inline(always)]
fn capture(ctx: &SkBuffContext, skb: *mut __sk_buff) {
    // Built in a per-CPU slot: the record is larger than the BPF stack.
    let Some(ev) = DNS_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot; nothing else runs on it while this program does.
    let ev = unsafe { &mut *ev };
    let wire = ctx.len();
    let mut n = wire;
    ev.flags = 0;
    if n > DNS_PACKET_LEN as u32 {
        n = DNS_PACKET_LEN as u32;
        ev.flags = dns_flags::TRUNCATED;
    }
    // 1..=DNS_PACKET_LEN by construction, whatever the compiler made of the
    // comparison: verifiers before 6.8 learn no lower bound from `n != 0`, and
    // the copy's length must not be zero. (An empty packet wraps to the largest
    // length, which the helper then refuses.)
    let n = (n.wrapping_sub(1) & COPY_MASK) + 1;
    // SAFETY: the slot holds DNS_PACKET_LEN bytes of packet; n is at most that.
    let rc = unsafe { bpf_skb_load_bytes(ctx.as_ptr(), 0, ev.packet.as_mut_ptr().cast(), n) };
    if rc != 0 {
        return;
    }
    ev.netns = netns_of(receiving_socket(skb, ev));
    ev.kind = Kind::DnsAnswer as u8;
    ev.len = n as u16;
    ev.wire_len = wire;
    ev._pad = 0;
    // SAFETY: a helper without arguments.
    ev.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    let size = DNS_HEADER_SIZE + n as usize;
    // SAFETY: the slot is size_of::<DnsEvent>() bytes; size is at most that.
    let bytes = unsafe { core::slice::from_raw_parts(ev as *const DnsEvent as *const u8, size) };
    ring_output(bytes);
}

/// The receiving socket's address (`skb->sk`), as a number the probe reads can
/// start from: the verifier types the context's `sk` as a socket pointer, on
/// which it allows no arithmetic, so it goes through the record's timestamp slot
/// (map memory, where it reads back as a plain number; overwritten before the
/// record leaves).
#[inline(always)]
fn receiving_socket(skb: *mut __sk_buff, ev: &mut DnsEvent) -> u64 {
    // SAFETY: a context field; the slot is this CPU's.
    unsafe {
        let sk = read_volatile(&(*skb).__bindgen_anon_2.sk);
        if sk.is_null() {
            return 0;
        }
        write_volatile(&mut ev.ts_ns as *mut u64 as *mut *mut _, sk);
        read_volatile(&ev.ts_ns)
    }
}
