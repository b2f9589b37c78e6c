//! A model's event stream: the SSE parser fed in arbitrary chunks, then both providers'
//! decoders on every event it yields.
#![no_main]

use aia_chat::model::endpoint::Provider;
use aia_chat::model::sse::SseParser;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The first byte sets where the stream is cut into reads.
    let Some((&cut, stream)) = data.split_first() else { return };
    let step = usize::from(cut % 64) + 1;
    for provider in [Provider::OpenAi, Provider::Anthropic] {
        let mut parser = SseParser::new(64 * 1024);
        let mut decoder = provider.protocol().decoder();
        let mut events = Vec::new();
        for chunk in stream.chunks(step) {
            match parser.push(chunk) {
                Ok(more) => events.extend(more),
                Err(_) => break,
            }
        }
        events.extend(parser.finish());
        for event in &events {
            if decoder.event(event).is_err() {
                break;
            }
        }
        let _ = decoder.finish();
    }
});
