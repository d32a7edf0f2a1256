//! The inflating message layer: arbitrary frames on a permessage-deflate connection with
//! fuzzer-chosen parameters. Invariants: no panic, inflated size within the limit, text
//! is UTF-8.
#![no_main]
use actix_meta_websocket::protocol::{Decoder, DeflateParams, Incoming, Limits, Role};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, data)) = data.split_first() else { return };
    let params = DeflateParams {
        server_no_context_takeover: ctl & 1 != 0,
        client_no_context_takeover: ctl & 2 != 0,
        server_max_window_bits: 8 + (ctl >> 2 & 7),
        client_max_window_bits: 8 + (ctl >> 5 & 7),
    };
    let limits = Limits { max_frame_size: 1 << 16, max_message_size: 1 << 16 };
    let mut dec = Decoder::new(Role::Client, limits, Some(&params));
    let mut buf = BytesMut::from(data);
    loop {
        match dec.decode(&mut buf) {
            Ok(Some(Incoming::Text(t))) => {
                assert!(std::str::from_utf8(&t).is_ok());
                assert!(t.len() <= limits.max_message_size);
            }
            Ok(Some(Incoming::Binary(b))) => assert!(b.len() <= limits.max_message_size),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
});
