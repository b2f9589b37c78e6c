//! Chatwoot's webhook: the signature check over the raw body, then the body's meaning.
#![no_main]

use aia_chat::operator::signature;
use aia_chat::operator::webhook::Webhook;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The first line holds the headers the check reads: "TIMESTAMP SIGNATURE".
    let (head, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let head = String::from_utf8_lossy(head);
    let mut parts = head.splitn(2, ' ');
    let (timestamp, sig) = (parts.next(), parts.next());
    let _ = signature::verify("fuzz-secret-24chars-xxxx", timestamp, sig, body, 1_767_225_600);
    if let Ok(hook) = serde_json::from_slice::<Webhook>(body) {
        let _ = hook.effect();
    }
});
