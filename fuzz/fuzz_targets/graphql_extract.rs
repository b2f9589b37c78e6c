//! A GraphQL source's response: the mapper that finds FAQ entries in any JSON shape.
#![no_main]

use aia_chat::knowledge::extract::{Mapping, extract};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = extract(&value, &Mapping::default(), 1);
    }
});
