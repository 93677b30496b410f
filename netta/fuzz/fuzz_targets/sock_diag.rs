//! NETLINK_SOCK_DIAG answers: any bytes parse to sockets, skips and flags, no panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netta::api::sock_diag;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let p = sock_diag::parse(data, &mut out);
    // Every socket came from a message of at least header + inet_diag_msg.
    assert!(out.len() * 88 <= data.len());
    let _ = p;
});
