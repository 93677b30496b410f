//! DNS answers, as sockets receive them, in every network namespace. Each record
//! holds the packet from its IP header (bounded) and the receiving socket's
//! network namespace; the user side parses it as it parses a packet capture.
//!
//! - Preferred: fentry of `__udp_enqueue_schedule_skb` (a datagram joining a
//!   socket's queue) and `tcp_event_data_recv` (a TCP segment with data, in
//!   order). They run for UDP and for TCP data only, not for every packet, and
//!   leave at once unless the source port is 53. The packet may be paged (TCP's
//!   always is), so `bpf_skb_output` copies it, to the perf array.
//! - Where fentry is refused: BTF tracepoints `sock:sk_data_ready` (a linear
//!   datagram, copied from the tail of the receive queue as it arrives) and
//!   `skb:skb_copy_datagram_iovec` (TCP data, and paged datagrams, as they are
//!   read: that tracepoint's `skb` is one `bpf_skb_output` takes).
//! - Fallback: `cgroup_skb/ingress` on the root of the cgroup v2 hierarchy runs for
//!   each packet a socket receives: about 85 ns of cgroup entry per packet, even
//!   for a program that does nothing. Its verdict is always "allow": netta never
//!   drops or alters traffic.
use aya_ebpf::{
    bindings::{__sk_buff, BPF_F_CURRENT_CPU},
    cty::c_void,
    helpers::{
        bpf_ktime_get_boot_ns,
        generated::{bpf_probe_read_kernel as probe_read, bpf_skb_load_bytes, bpf_skb_output},
    },
    macros::{btf_tracepoint, cgroup_skb, fentry},
    programs::{BtfTracePointContext, FEntryContext, SkBuffContext},
    EbpfContext,
};
use core::ptr::{read_volatile, write_volatile};
use netta_ebpf::{
    dns_flags, DnsEvent, Kind, DNS_HEADER_SIZE, DNS_PACKET_LEN, IPPROTO_TCP, IPPROTO_UDP,
};

use crate::maps::{CONFIG, DNS_SCRATCH, PERF_EVENTS};
use crate::record::{netns_of, perf_output, read_at, ring_output};

/// A cgroup program's verdict: always allow.
const ALLOW: i32 = 1;
const DNS_PORT: u16 = 53;
/// Bounds the copy's length for the verifier (`DNS_PACKET_LEN` is a power of two).
const COPY_MASK: u32 = (DNS_PACKET_LEN - 1) as u32;
const _: () = assert!(DNS_PACKET_LEN.is_power_of_two());

/// The IP and transport headers in front of the data, at most: IPv4 with
/// options (60) and TCP with options (60). The copy's bound is the next power of two.
const MAX_HEADERS: u64 = 120;
const HEADERS_MASK: u64 = 127;

/// A datagram joining socket `sk`'s receive queue (runs for UDP only).
#[fentry(function = "__udp_enqueue_schedule_skb")]
pub fn dns_udp_queued(ctx: FEntryContext) -> u32 {
    let skb: *mut c_void = ctx.arg(1);
    let cfg = CONFIG.load();
    let sport = read_at::<u64>(skb as u64, cfg.off_skb_head).and_then(|head| {
        let th: u16 = read_at(skb as u64, cfg.off_skb_transport_header)?;
        read_at::<u16>(head, u32::from(th))
    });
    if sport == Ok(DNS_PORT.to_be()) {
        queued(ctx.arg(0), skb);
    }
    0
}

/// A TCP segment's data, in order, on socket `sk` (runs for data segments only).
#[fentry(function = "tcp_event_data_recv")]
pub fn dns_tcp_data(ctx: FEntryContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    // The peer's port: an answer comes to a socket connected to port 53.
    if read_at::<u16>(sk, CONFIG.load().off_dport) == Ok(DNS_PORT.to_be()) {
        queued(sk, ctx.arg(1));
    }
    0
}

/// `sock:sk_data_ready`: data is ready on socket `sk` (every protocol). A UDP
/// datagram from port 53 is the tail of the receive queue; a linear one is copied
/// from there (a paged one when it is read, in [`dns_copied`]). A reader on
/// another CPU may have taken it already: then what is read is not an answer,
/// and the parser drops it.
#[btf_tracepoint(function = "sk_data_ready")]
pub fn dns_data_ready(ctx: BtfTracePointContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    let cfg = CONFIG.load();
    if read_at::<u16>(sk, cfg.off_sk_protocol) != Ok(u16::from(IPPROTO_UDP)) {
        return 0;
    }
    let Ok(skb) = read_at::<u64>(sk, cfg.off_sk_receive_tail) else {
        return 0;
    };
    // An empty queue's tail is the queue itself.
    if skb == 0 || skb == sk + u64::from(cfg.off_sk_receive_queue) {
        return 0;
    }
    let _ = linear_datagram(&ctx, sk, skb);
    0
}

#[inline(always)]
fn linear_datagram(ctx: &BtfTracePointContext, sk: u64, skb: u64) -> Result<(), i64> {
    let cfg = CONFIG.load();
    let head: u64 = read_at(skb, cfg.off_skb_head)?;
    let th: u16 = read_at(skb, cfg.off_skb_transport_header)?;
    if read_at::<u16>(head, u32::from(th))? != DNS_PORT.to_be()
        || read_at::<u32>(skb, cfg.off_skb_data_len)? != 0
    {
        return Ok(());
    }
    let nh: u16 = read_at(skb, cfg.off_skb_network_header)?;
    let data: u64 = read_at(skb, cfg.off_skb_data)?;
    let len: u32 = read_at(skb, cfg.off_skb_len)?;
    let ip = head + u64::from(nh);
    let headers = data.wrapping_sub(ip);
    if !(20..=MAX_HEADERS).contains(&headers) {
        return Ok(());
    }
    let wire = headers as u32 + len;
    let Some(ev) = DNS_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: this CPU's slot; nothing else runs on it while this program does.
    let ev = unsafe { &mut *ev };
    let (n, flags) = if wire > DNS_PACKET_LEN as u32 {
        (DNS_PACKET_LEN as u32, dns_flags::TRUNCATED)
    } else {
        (wire, 0)
    };
    // 1..=DNS_PACKET_LEN for the verifier, as in `capture`.
    let n = masked(n.wrapping_sub(1), COPY_MASK) + 1;
    // SAFETY: the slot's packet holds DNS_PACKET_LEN bytes; n is at most that.
    if unsafe { probe_read(ev.packet.as_mut_ptr().cast(), n, ip as *const c_void) } != 0 {
        return Ok(());
    }
    stamp(ev, flags, n, wire, netns_of(sk));
    let size = DNS_HEADER_SIZE + n as usize;
    // SAFETY: the slot is size_of::<DnsEvent>() bytes; size is at most that.
    let bytes = unsafe { core::slice::from_raw_parts(ev as *const DnsEvent as *const u8, size) };
    // The perf array, where the other records of these programs go
    // (`bpf_skb_output` has no ring-buffer form).
    perf_output(ctx, bytes);
    Ok(())
}

/// `skb:skb_copy_datagram_iovec`: `skb` is being copied to a reader. TCP data
/// on a socket connected to port 53 goes out once, on the copy that starts the
/// segment; a paged UDP datagram from port 53 goes out too.
#[btf_tracepoint(function = "skb_copy_datagram_iovec")]
pub fn dns_copied(ctx: BtfTracePointContext) -> u32 {
    let skb: *mut c_void = ctx.arg(0);
    if let Ok(Some(sk)) = answer_being_read(skb as u64) {
        queued(sk, skb);
    }
    0
}

/// The socket reading `skb` when what it reads is an answer to send.
#[inline(always)]
fn answer_being_read(skb: u64) -> Result<Option<u64>, i64> {
    let cfg = CONFIG.load();
    let sk: u64 = read_at(skb, cfg.off_skb_sk)?;
    if sk == 0 {
        return Ok(None);
    }
    // A socket connected to another port (most TCP data read) never gets an
    // answer from port 53: one read rules it out.
    let dport: u16 = read_at(sk, cfg.off_dport)?;
    if dport != 0 && dport != DNS_PORT.to_be() {
        return Ok(None);
    }
    let proto: u16 = read_at(sk, cfg.off_sk_protocol)?;
    if proto == u16::from(IPPROTO_TCP) {
        if dport != DNS_PORT.to_be() {
            return Ok(None);
        }
        // The reader's position is this segment's first byte: the first copy.
        let copied: u32 = read_at(sk, cfg.off_copied_seq)?;
        let seq: u32 = read_at(skb, cfg.off_skb_tcp_seq)?;
        return Ok((copied == seq).then_some(sk));
    }
    if proto != u16::from(IPPROTO_UDP) || read_at::<u32>(skb, cfg.off_skb_data_len)? == 0 {
        return Ok(None);
    }
    let head: u64 = read_at(skb, cfg.off_skb_head)?;
    let th: u16 = read_at(skb, cfg.off_skb_transport_header)?;
    Ok((read_at::<u16>(head, u32::from(th))? == DNS_PORT.to_be()).then_some(sk))
}

/// A record's header: `len` bytes of packet follow it, of `wire` on the wire;
/// stamped now (last: `capture` borrows the timestamp slot before).
#[inline(always)]
fn stamp(ev: &mut DnsEvent, flags: u8, len: u32, wire: u32, netns: u32) {
    ev.kind = Kind::DnsAnswer as u8;
    ev.flags = flags;
    ev.len = len as u16;
    ev.wire_len = wire;
    ev._pad = 0;
    ev.netns = netns;
    // SAFETY: a helper without arguments.
    ev.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
}

/// `v & mask`, the mask applied at run time. LLVM drops a mask it proves
/// redundant after a range check, and verifiers before about 6.13 do not carry
/// that check's bound over to the register the copy's length is in.
#[inline(always)]
fn masked(v: u32, mask: u32) -> u32 {
    // SAFETY: a read of a local: only opaque to the optimiser.
    unsafe { core::ptr::read_volatile(&v) & mask }
}

/// Sends the packet of `skb`, queued on socket `sk`, to the perf array: its
/// headers (linear, before `skb->data`) as the record's start, then what
/// `bpf_skb_output` copies from `skb->data` on, paged parts included.
#[inline(always)]
fn queued(sk: u64, skb: *mut c_void) {
    let cfg = CONFIG.load();
    let at = skb as u64;
    let (Ok(head), Ok(nh), Ok(data), Ok(len)) = (
        read_at::<u64>(at, cfg.off_skb_head),
        read_at::<u16>(at, cfg.off_skb_network_header),
        read_at::<u64>(at, cfg.off_skb_data),
        read_at::<u32>(at, cfg.off_skb_len),
    ) else {
        return;
    };
    let ip = head + u64::from(nh);
    let headers = data.wrapping_sub(ip);
    if !(20..=MAX_HEADERS).contains(&headers) {
        return;
    }
    let Some(ev) = DNS_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot; nothing else runs on it while this program does.
    let ev = unsafe { &mut *ev };
    let headers = masked(headers as u32, HEADERS_MASK as u32);
    // SAFETY: the slot's packet holds DNS_PACKET_LEN bytes, more than HEADERS_MASK.
    if unsafe { probe_read(ev.packet.as_mut_ptr().cast(), headers, ip as *const c_void) } != 0 {
        return;
    }
    let room = DNS_PACKET_LEN as u32 - headers;
    let (n, flags) = if len > room {
        (room, dns_flags::TRUNCATED)
    } else {
        (len, 0)
    };
    stamp(
        ev,
        flags,
        headers + n,
        headers.saturating_add(len),
        netns_of(sk),
    );
    let meta = DNS_HEADER_SIZE as u64 + u64::from(headers);
    // The high 32 bits of the flags: how many bytes of the packet to append. A
    // full perf buffer counts the loss itself (the reader reports it).
    // SAFETY: `skb` is the traced function's own argument, as the helper requires;
    // the slot is at least `meta` bytes.
    unsafe {
        bpf_skb_output(
            skb,
            core::ptr::addr_of!(PERF_EVENTS).cast_mut().cast(),
            (u64::from(n) << 32) | BPF_F_CURRENT_CPU,
            (ev as *mut DnsEvent).cast(),
            meta,
        )
    };
}

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
    let netns = netns_of(receiving_socket(skb, ev));
    stamp(ev, ev.flags, n, wire, netns);
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
