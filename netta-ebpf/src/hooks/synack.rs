//! `tcp:tcp_retransmit_synack`: SYN-ACK retransmissions per listening port, counted
//! in the kernel (a SYN flood retransmits for every half-open connection, far too
//! many to stream).
use aya_ebpf::{bindings::BPF_NOEXIST, macros::tracepoint, programs::TracePointContext};
use netta_ebpf::{listener_key, tp::synack as f};

use crate::maps::{CONFIG, SYNACK_RETRANS};
use crate::record::{add, read_at, tp_field};

#[tracepoint]
pub fn tcp_retransmit_synack(ctx: TracePointContext) -> u32 {
    let (Ok(port), Ok(sk)) = (
        tp_field::<u16>(&ctx, f::sport),
        tp_field::<u64>(&ctx, f::skaddr),
    ) else {
        return 1;
    };
    let Ok(family) = read_at::<u16>(sk, CONFIG.load().off_family) else {
        return 1;
    };
    let key = listener_key(family, port);
    match SYNACK_RETRANS.get_ptr_mut(key) {
        Some(n) => add(n, 1),
        None => {
            let _ = SYNACK_RETRANS.insert(key, 1, BPF_NOEXIST as u64);
        }
    }
    0
}
