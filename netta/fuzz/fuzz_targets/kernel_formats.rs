//! What netta reads about the kernel before loading: tracefs `format` files and BTF.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netta::api::{tracefs, Btf};

fuzz_target!(|data: &[u8]| {
    let _ = tracefs::parse_format(data);
    if let Ok(btf) = Btf::parse(data.to_vec()) {
        let _ = btf.member_offset("tcp_sock", "bytes_received");
        let _ = btf.func_params("inet_csk_accept");
        let _ = btf.attach_targets(&[(12, "inet_csk_accept"), (8, "btf_trace_sk_data_ready")]);
    }
});
