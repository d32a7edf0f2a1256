//! The frame decoder on arbitrary bytes, in both roles, fed in arbitrary read sizes.
//! Invariants: no panic; every text message is UTF-8; nothing exceeds the limits.
#![no_main]
use actix_meta_websocket::protocol::{Decoder, Incoming, Limits, Role};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, data)) = data.split_first() else { return };
    let role = if ctl & 1 == 0 { Role::Server } else { Role::Client };
    let chunk = usize::from(ctl >> 1).max(1);
    let limits = Limits { max_frame_size: 4096, max_message_size: 8192 };
    let mut dec = Decoder::new(role, limits, None);
    let mut buf = BytesMut::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(Incoming::Text(t))) => {
                    assert!(std::str::from_utf8(&t).is_ok());
                    assert!(t.len() <= limits.max_message_size);
                }
                Ok(Some(Incoming::Binary(b))) => assert!(b.len() <= limits.max_message_size),
                Ok(Some(Incoming::Ping(p) | Incoming::Pong(p))) => assert!(p.len() <= 125),
                Ok(Some(Incoming::Close(_))) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
