//! History filters from users and API clients: times, networks, actions, and
//! whole API query strings. Errors are one line; nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netta::api::history_query::{parse_action, parse_net, Query};
use netta::api::when::parse_time;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = parse_time(text, 1_764_648_000_000_000) {
        assert!(!e.contains('\n'));
    }
    if let Err(e) = parse_net(text) {
        assert!(!e.to_string().contains('\n'));
    }
    let _ = parse_action(text);
    if let Ok(q) = serde_urlencoded::from_str::<Query>(text) {
        if let Err(e) = q.validate() {
            assert!(!e.to_string().contains('\n'));
        }
    }
});
