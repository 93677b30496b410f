//! History filters from users and API clients: times, networks, actions, whole
//! API query strings, and the filter words of `netta top`'s `/`. Errors are one
//! line; nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netta::api::filter::Filter;
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
    match Filter::parse_words(text) {
        // Words that parse make a history query the store accepts.
        Ok(f) => assert!(f.history_query(10).validate().is_ok()),
        Err(e) => assert!(!e.contains('\n') && !e.contains('\x1b'), "{e:?}"),
    }
    if let Ok(q) = serde_urlencoded::from_str::<Query>(text) {
        if let Err(e) = q.validate() {
            assert!(!e.to_string().contains('\n'));
        }
    }
});
