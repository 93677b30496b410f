//! A RST this host sent (a closed port, or an abort), which the port-scan rule
//! counts: `tcp:tcp_send_reset` where it has the 6.10+ layout, else fentry on
//! `tcp_v{4,6}_send_reset` (the loader attaches one of the two).
use aya_ebpf::{
    helpers::bpf_ktime_get_boot_ns,
    macros::{fentry, tracepoint},
    programs::{FEntryContext, TracePointContext},
};
use netta_ebpf::{tp::send_reset as f, Event, Kind, AF_INET, AF_INET6};

use crate::maps::CONFIG;
use crate::record::{emit, read_at, status, tcp_record, tp_field};

#[tracepoint]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    status(try_send_reset(&ctx))
}

fn try_send_reset(ctx: &TracePointContext) -> Result<(), i64> {
    // saddr is this host's side.
    let sk: u64 = tp_field(ctx, f::skaddr)?;
    let state: i32 = tp_field(ctx, f::state)?;
    let s: [u8; 28] = tp_field(ctx, f::saddr)?;
    let d: [u8; 28] = tp_field(ctx, f::daddr)?;
    let family = u16::from_ne_bytes([s[0], s[1]]);
    let mut ev = reset_sent(sk, family);
    ev.old_state = state as u8;
    ev.local_port = u16::from_be_bytes([s[2], s[3]]);
    ev.remote_port = u16::from_be_bytes([d[2], d[3]]);
    if family == AF_INET {
        ev.local_addr[..4].copy_from_slice(&s[4..8]);
        ev.remote_addr[..4].copy_from_slice(&d[4..8]);
    } else if family == AF_INET6 {
        ev.local_addr.copy_from_slice(&s[8..24]);
        ev.remote_addr.copy_from_slice(&d[8..24]);
    } else {
        return Ok(());
    }
    emit(&mut ev, ctx);
    Ok(())
}

/// fentry of `tcp_v4_send_reset`: the RST answers `skb`, so its addresses are the
/// segment's, swapped. `sk` is NULL for a closed port.
#[fentry(function = "tcp_v4_send_reset")]
pub fn tcp_v4_send_reset_entry(ctx: FEntryContext) -> u32 {
    status(try_reset_entry(&ctx, AF_INET))
}

#[fentry(function = "tcp_v6_send_reset")]
pub fn tcp_v6_send_reset_entry(ctx: FEntryContext) -> u32 {
    status(try_reset_entry(&ctx, AF_INET6))
}

#[inline(always)]
fn try_reset_entry(ctx: &FEntryContext, family: u16) -> Result<(), i64> {
    let sk: u64 = ctx.arg(0);
    let skb: u64 = ctx.arg(1);
    if skb == 0 {
        return Ok(());
    }
    let cfg = CONFIG.load();
    let head: u64 = read_at(skb, cfg.off_skb_head)?;
    let nh: u16 = read_at(skb, cfg.off_skb_network_header)?;
    let th: u16 = read_at(skb, cfg.off_skb_transport_header)?;
    let ip = head + nh as u64;
    let tcp = head + th as u64;
    // Wire formats (fixed): TCP ports at 0 and 2, flags at 13.
    let hdr: [u8; 14] = read_at(tcp, 0)?;
    const RST: u8 = 0x04;
    if hdr[13] & RST != 0 {
        // The kernel never answers a reset with a reset; it returns right away.
        return Ok(());
    }
    let mut ev = reset_sent(sk, family);
    if sk != 0 {
        ev.old_state = read_at::<u8>(sk, cfg.off_state).unwrap_or(0);
    }
    ev.local_port = u16::from_be_bytes([hdr[2], hdr[3]]);
    ev.remote_port = u16::from_be_bytes([hdr[0], hdr[1]]);
    if family == AF_INET {
        // iphdr: saddr at 12, daddr at 16.
        let a: [u8; 8] = read_at(ip, 12)?;
        ev.remote_addr[..4].copy_from_slice(&a[..4]);
        ev.local_addr[..4].copy_from_slice(&a[4..]);
    } else {
        // ipv6hdr: saddr at 8, daddr at 24.
        ev.remote_addr = read_at(ip, 8)?;
        ev.local_addr = read_at(ip, 24)?;
    }
    emit(&mut ev, ctx);
    Ok(())
}

/// A `ResetSent` record for socket `sk` (0: none) of `family`, stamped now.
#[inline(always)]
fn reset_sent(sk: u64, family: u16) -> Event {
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let mut ev = tcp_record(Kind::ResetSent, sk, now);
    ev.start_ns = now;
    ev.family = family;
    ev
}
