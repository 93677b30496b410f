//! Rules files: accepted whole or rejected with a reason, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netta::api::Rules;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = Rules::from_toml(text) {
            assert!(!e.to_string().is_empty());
        }
    }
});
