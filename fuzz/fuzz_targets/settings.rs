//! Every client setting's validator: admins and the CLI type these values.
#![no_main]

use aia_chat::clients::{SETTINGS, UpstreamPolicy, normalize};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The first byte picks the setting, the rest is the value.
    let Some((&pick, value)) = data.split_first() else { return };
    let Ok(value) = std::str::from_utf8(value) else { return };
    let def = &SETTINGS[usize::from(pick) % SETTINGS.len()];
    for policy in [UpstreamPolicy::default(), UpstreamPolicy { deny_private: true }] {
        let _ = normalize(def, value, policy);
    }
});
