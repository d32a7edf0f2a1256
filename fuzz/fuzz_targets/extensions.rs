//! The Sec-WebSocket-Extensions parser and both sides of permessage-deflate negotiation.
//! Invariants: no panic; an accepted server answer is accepted by a client that offered
//! the same configuration (when the client's own offer is what was parsed).
#![no_main]
use actix_meta_websocket::protocol::{parse_extensions, DeflateConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(exts) = parse_extensions(s) else { return };
    // Display form parses back to the same elements.
    for e in &exts {
        let again = parse_extensions(&e.to_string()).expect("display output parses");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].name, e.name);
    }
    let cfg = DeflateConfig::default();
    if let Some((_, answer)) = cfg.negotiate_server(&exts) {
        let parsed = parse_extensions(&answer).expect("our answer parses");
        assert_eq!(parsed.len(), 1);
    }
    let _ = cfg.accept_client(&exts);
});
