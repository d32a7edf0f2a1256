//! The inflating message layer: arbitrary frames on two permessage-deflate connections of
//! one thread, with fuzzer-chosen parameters and memory mode, fed in interleaved pieces
//! so they pass pooled zlib streams between them mid-message. Invariants: no panic,
//! inflated size within the limit, text is UTF-8, and both connections, given the same
//! bytes, decode the same messages and fail at the same point (sharing streams changes
//! nothing).
#![no_main]
use actix_meta_websocket::protocol::{Decoder, DeflateMemory, DeflateParams, Incoming, Limits, Role};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fn drain(dec: &mut Decoder, buf: &mut BytesMut, limits: Limits, got: &mut Vec<Incoming>) -> bool {
    loop {
        match dec.decode(buf) {
            Ok(Some(m)) => {
                match &m {
                    Incoming::Text(t) => {
                        assert!(std::str::from_utf8(t).is_ok());
                        assert!(t.len() <= limits.max_message_size);
                    }
                    Incoming::Binary(b) => assert!(b.len() <= limits.max_message_size),
                    _ => {}
                }
                got.push(m);
            }
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&[ctl, piece], data)) = data.split_first_chunk::<2>() else { return };
    let params = DeflateParams {
        server_no_context_takeover: ctl & 1 != 0,
        client_no_context_takeover: ctl & 2 != 0,
        server_max_window_bits: 8 + (ctl >> 2 & 7),
        client_max_window_bits: 8 + (ctl >> 5 & 7),
    };
    let memory = if piece & 0x80 != 0 { DeflateMemory::Dedicated } else { DeflateMemory::Pooled };
    let piece = (piece & 0x7f) as usize + 1;
    let limits = Limits { max_frame_size: 1 << 16, max_message_size: 1 << 16 };
    let mut decs = [
        Decoder::with_memory(Role::Client, limits, Some(&params), memory),
        Decoder::with_memory(Role::Client, limits, Some(&params), memory),
    ];
    let mut bufs = [BytesMut::new(), BytesMut::new()];
    let mut alive = [true, true];
    let mut got = [Vec::new(), Vec::new()];
    // Both connections get the same bytes, in pieces, in turn.
    for chunk in data.chunks(piece) {
        for i in 0..2 {
            if alive[i] {
                bufs[i].extend_from_slice(chunk);
                alive[i] = drain(&mut decs[i], &mut bufs[i], limits, &mut got[i]);
            }
        }
        assert_eq!(alive[0], alive[1]);
    }
    assert_eq!(got[0], got[1]);
});
