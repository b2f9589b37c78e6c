//! CMS pages as training text: the HTML splitter and its plain-text view.
#![no_main]

use aia_chat::knowledge::html;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = html::looks_like_html(text);
        let _ = html::to_text(text);
        let _ = html::faq_pairs(text);
    }
});
