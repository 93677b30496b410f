//! /proc/net/{tcp,udp}[6] parsing: bad lines are errors, good ones are kept, no panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netta::api::{parse_net, Proto};

fuzz_target!(|data: &[u8]| {
    for proto in [Proto::Tcp, Proto::Udp] {
        let (rows, errors) = parse_net(data, proto);
        // Every line is either a row or an error (the header excepted).
        let lines = data.split(|b| *b == b'\n').count();
        assert!(rows.len() + errors.len() <= lines);
    }
});
