//! What netta reads about the kernel before loading: tracefs `format` files and BTF.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netta::api::{tracefs, Btf};

fuzz_target!(|data: &[u8]| {
    let _ = tracefs::parse_format(data);
    if let Ok(btf) = Btf::parse(data.to_vec()) {
        let _ = btf.member_offset("tcp_sock", "bytes_received");
    }
});
