#![no_main]
//! Fuzzes the `wall` payload decoder: it must return Ok or a typed error, never panic,
//! and whatever it accepts must encode and decode to the same value.

use gavel_protocol::{Wall, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = decode::<Wall>(data) {
        let again: Wall = decode(&encode(&message)).expect("accepted message re-decodes");
        assert_eq!(again, message);
    }
});
