//! The visitor's WebSocket frames: `protocol::parse` is the first thing a text frame meets.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = aia_chat::realtime::protocol::parse(text);
    }
});
