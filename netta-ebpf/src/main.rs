//! netta's kernel program: TCP lifecycle from `sock:inet_sock_set_state`, owners from
//! process-context hooks, byte counts from `tcp_sock` at CLOSE, and UDP flows
//! aggregated per (socket, destination). One module per hook under `hooks/`; the
//! maps and the helpers they share are in `maps` and `record`.
//!
//! Ownership rule: many transitions run in softirq, where `current` is whatever task
//! happened to be running (on loopback, the *peer*). The owner is therefore only ever
//! taken from hooks that run in the socket owner's own syscall: CLOSE->SYN_SENT
//! (connect), CLOSE->LISTEN (listen), ->FIN_WAIT1 / ->LAST_ACK (close, shutdown),
//! the return of `inet_csk_accept` (fexit) and the send/recv length tracepoints
//! (the loader attaches whichever of those two the kernel has, fexit first). An
//! accepted socket's OPENED record waits for the first of those; if none ran before
//! CLOSE, the listener's owner is used and flagged.
#![no_std]
#![no_main]
// The bpf target exposes no `fetch_add` on atomics; the intrinsic lowers to BPF XADD.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod hooks;
mod maps;
mod record;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
