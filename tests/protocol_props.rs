//! Property tests: whatever messages, fragment sizes, masks, deflate parameters and read
//! chunking, what the encoder writes the decoder gives back exactly.

use actix_meta_websocket::protocol::*;
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Msg {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        ".{0,300}".prop_map(Msg::Text),
        // Repetitive text so compression has something to find.
        ("[a-c ]{0,40}", 0usize..50).prop_map(|(s, n)| Msg::Text(s.repeat(n))),
        proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Msg::Binary),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Msg::Ping),
    ]
}

fn deflate() -> impl Strategy<Value = Option<DeflateParams>> {
    prop_oneof![
        Just(None),
        (any::<bool>(), any::<bool>(), 8u8..=15, 8u8..=15).prop_map(|(s, c, sb, cb)| Some(DeflateParams {
            server_no_context_takeover: s,
            client_no_context_takeover: c,
            server_max_window_bits: sb,
            client_max_window_bits: cb,
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(
        msgs in proptest::collection::vec(msg(), 1..12),
        params in deflate(),
        client_sends in any::<bool>(),
        max_frame in 1usize..500,
        threshold in 0usize..200,
        chunk in 1usize..700,
    ) {
        let (from, to) = if client_sends { (Role::Client, Role::Server) } else { (Role::Server, Role::Client) };
        let mut enc = Encoder::new(from, params.as_ref(), 6, threshold);
        let mut dec = Decoder::new(to, Limits::default(), params.as_ref());
        let mut wire = BytesMut::new();
        let mut expected = Vec::new();
        for m in &msgs {
            match m {
                Msg::Text(s) => {
                    enc.encode_message_fragmented(DataKind::Text, s.as_bytes(), max_frame, &mut wire).unwrap();
                    expected.push(Incoming::Text(Bytes::from(s.clone())));
                }
                Msg::Binary(b) => {
                    enc.encode_message_fragmented(DataKind::Binary, b, max_frame, &mut wire).unwrap();
                    expected.push(Incoming::Binary(Bytes::from(b.clone())));
                }
                Msg::Ping(p) => {
                    enc.encode_control(OpCode::Ping, p, &mut wire).unwrap();
                    expected.push(Incoming::Ping(Bytes::from(p.clone())));
                }
            }
        }
        // Deliver the wire bytes in reads of `chunk` bytes.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), deflate in any::<bool>(), server in any::<bool>()) {
        let role = if server { Role::Server } else { Role::Client };
        let params = DeflateParams::default();
        let mut dec = Decoder::new(role, Limits { max_frame_size: 1000, max_message_size: 2000 }, deflate.then_some(&params));
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = dec.decode(&mut buf) {}
    }
}
