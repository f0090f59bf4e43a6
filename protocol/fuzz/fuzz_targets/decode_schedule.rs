#![no_main]
//! Fuzzes the `schedule` payload decoder: it must return Ok or a typed error, never panic,
//! and whatever it accepts must encode and decode to the same value.

use gavel_protocol::{Schedule, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = decode::<Schedule>(data) {
        let again: Schedule = decode(&encode(&message)).expect("accepted message re-decodes");
        assert_eq!(again, message);
    }
});
