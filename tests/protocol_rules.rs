//! The decoder's RFC 6455 / RFC 7692 rules and limits, one negative test each, plus the
//! RFC's own examples.

use actix_meta_websocket::protocol::*;
use bytes::{Bytes, BytesMut};

fn frame(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let op = OpCode::from_u8(opcode);
    match op {
        Some(opcode) => {
            FrameHeader { fin, rsv, opcode, mask, payload_len: payload.len() as u64 }.encode(&mut out)
        }
        None => {
            // Reserved opcodes cannot be built with OpCode; write the header by hand.
            out.extend_from_slice(&[
                (u8::from(fin) << 7) | (rsv << 4) | opcode,
                payload.len() as u8 | if mask.is_some() { 0x80 } else { 0 },
            ]);
            if let Some(k) = mask {
                out.extend_from_slice(&k);
            }
        }
    }
    let at = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = mask {
        apply_mask(&mut out[at..], k, 0);
    }
    out.to_vec()
}

const K: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

fn server() -> Decoder {
    Decoder::new(Role::Server, Limits::default(), None)
}

fn server_deflate() -> Decoder {
    Decoder::new(Role::Server, Limits::default(), Some(&DeflateParams::default()))
}

fn decode_all(d: &mut Decoder, bytes: &[u8]) -> Result<Vec<Incoming>, ProtocolError> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(m) = d.decode(&mut buf)? {
        out.push(m);
    }
    Ok(out)
}

fn err_of(d: &mut Decoder, bytes: &[u8]) -> ProtocolError {
    decode_all(d, bytes).expect_err("should be refused")
}

#[test]
fn rfc6455_5_7_examples() {
    let mut c = Decoder::new(Role::Client, Limits::default(), None);
    assert_eq!(
        decode_all(&mut c, &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]).unwrap(),
        vec![Incoming::Text(Bytes::from("Hello"))]
    );
    let mut s = server();
    assert_eq!(
        decode_all(&mut s, &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]).unwrap(),
        vec![Incoming::Text(Bytes::from("Hello"))]
    );
    // Unmasked ping then masked pong, each "Hello".
    assert_eq!(
        decode_all(&mut c, &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]).unwrap(),
        vec![Incoming::Ping(Bytes::from("Hello"))]
    );
    assert_eq!(
        decode_all(&mut s, &[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]).unwrap(),
        vec![Incoming::Pong(Bytes::from("Hello"))]
    );
    // 256 bytes and 64 KiB binary in a single unmasked frame.
    let mut big = vec![0x82, 0x7e, 0x01, 0x00];
    big.extend(vec![7u8; 256]);
    assert_eq!(decode_all(&mut c, &big).unwrap(), vec![Incoming::Binary(Bytes::from(vec![7u8; 256]))]);
    let mut huge = vec![0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0];
    huge.extend(vec![9u8; 65536]);
    assert_eq!(decode_all(&mut c, &huge).unwrap(), vec![Incoming::Binary(Bytes::from(vec![9u8; 65536]))]);
}

#[test]
fn rfc7692_compressed_hello_forms() {
    let mut d = Decoder::new(Role::Client, Limits::default(), Some(&DeflateParams::default()));
    // 7.2.3.1 and 7.2.3.2 (shared window): the same message twice.
    let a = decode_all(&mut d, &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap();
    let b = decode_all(&mut d, &[0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap();
    assert_eq!(a, vec![Incoming::Text(Bytes::from("Hello"))]);
    assert_eq!(a, b);
    // 7.2.3.1 fragmented: the compressed bytes split over two frames.
    let mut d = Decoder::new(Role::Client, Limits::default(), Some(&DeflateParams::default()));
    let mut wire = vec![0x41, 0x03, 0xf2, 0x48, 0xcd];
    wire.extend_from_slice(&[0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00]);
    assert_eq!(decode_all(&mut d, &wire).unwrap(), vec![Incoming::Text(Bytes::from("Hello"))]);
    // 7.2.3.3: no compression (stored block), still RSV1.
    let wire = [0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
    assert_eq!(decode_all(&mut d, &wire).unwrap(), vec![Incoming::Text(Bytes::from("Hello"))]);
    // An uncompressed message on a deflate connection: RSV1 clear.
    assert_eq!(
        decode_all(&mut d, &[0x81, 0x02, b'h', b'i']).unwrap(),
        vec![Incoming::Text(Bytes::from("hi"))]
    );
}

#[test]
fn masking_rules_per_role() {
    assert_eq!(err_of(&mut server(), &frame(true, 0, 1, None, b"x")), ProtocolError::UnmaskedFrame);
    let mut c = Decoder::new(Role::Client, Limits::default(), None);
    assert_eq!(err_of(&mut c, &frame(true, 0, 1, K, b"x")), ProtocolError::MaskedFrame);
}

#[test]
fn rsv_bits_without_extension() {
    for rsv in 1..8u8 {
        let e = err_of(&mut server(), &frame(true, rsv, 1, K, b"x"));
        assert_eq!(e, ProtocolError::ReservedBits(rsv));
        assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR);
    }
    // With deflate: RSV2/RSV3 still refused, RSV1 refused on control and continuation frames.
    assert_eq!(
        err_of(&mut server_deflate(), &frame(true, 0b010, 1, K, b"x")),
        ProtocolError::ReservedBits(0b010)
    );
    assert_eq!(
        err_of(&mut server_deflate(), &frame(true, RSV1, 9, K, b"")),
        ProtocolError::ReservedBits(RSV1)
    );
    let mut wire = frame(false, RSV1, 1, K, &[0xf2, 0x48]);
    wire.extend(frame(true, RSV1, 0, K, &[0xcd, 0xc9, 0xc9, 0x07, 0x00]));
    assert_eq!(err_of(&mut server_deflate(), &wire), ProtocolError::ReservedBits(RSV1));
}

#[test]
fn opcode_and_control_rules() {
    for op in [3u8, 7, 0xb, 0xf] {
        assert_eq!(err_of(&mut server(), &frame(true, 0, op, K, b"")), ProtocolError::ReservedOpcode(op));
    }
    assert_eq!(err_of(&mut server(), &frame(false, 0, 9, K, b"")), ProtocolError::FragmentedControl);
    let mut long_ping = vec![0x89, 0x80 | 126, 0, 126, 1, 2, 3, 4];
    long_ping.extend(vec![0; 126]);
    assert_eq!(err_of(&mut server(), &long_ping), ProtocolError::ControlTooLong(126));
}

#[test]
fn continuation_rules() {
    assert_eq!(err_of(&mut server(), &frame(true, 0, 0, K, b"x")), ProtocolError::UnexpectedContinuation);
    let mut wire = frame(false, 0, 1, K, b"a");
    wire.extend(frame(true, 0, 2, K, b"b"));
    assert_eq!(err_of(&mut server(), &wire), ProtocolError::ExpectedContinuation);
}

#[test]
fn control_frames_interleave_with_fragments() {
    let mut wire = frame(false, 0, 1, K, b"fra");
    wire.extend(frame(true, 0, 9, K, b"p"));
    wire.extend(frame(false, 0, 0, K, b"gm"));
    wire.extend(frame(true, 0, 10, K, b""));
    wire.extend(frame(true, 0, 0, K, b"ent"));
    assert_eq!(
        decode_all(&mut server(), &wire).unwrap(),
        vec![
            Incoming::Ping(Bytes::from("p")),
            Incoming::Pong(Bytes::new()),
            Incoming::Text(Bytes::from("fragment"))
        ]
    );
}

#[test]
fn close_payload_rules() {
    assert_eq!(decode_all(&mut server(), &frame(true, 0, 8, K, b"")).unwrap(), vec![Incoming::Close(None)]);
    assert_eq!(err_of(&mut server(), &frame(true, 0, 8, K, b"\x03")), ProtocolError::InvalidClosePayload);
    assert_eq!(
        err_of(&mut server(), &frame(true, 0, 8, K, b"\x03\xee")),
        ProtocolError::InvalidCloseCode(1006)
    );
    let e = err_of(&mut server(), &frame(true, 0, 8, K, b"\x03\xe8\xc3"));
    assert_eq!((e.clone(), e.close_code()), (ProtocolError::InvalidUtf8, CloseCode::INVALID_PAYLOAD));
    let got = decode_all(&mut server(), &frame(true, 0, 8, K, b"\x0b\xb8ok")).unwrap();
    assert_eq!(got, vec![Incoming::Close(Some(CloseFrame { code: CloseCode(3000), reason: "ok".into() }))]);
}

#[test]
fn utf8_fails_fast_mid_frame() {
    // One text frame whose payload is still arriving: the bad byte fails before the rest comes.
    let payload = b"valid then \xff and more";
    let wire = frame(true, 0, 1, K, payload);
    let mut d = server();
    let cut = wire.len() - payload.len() + 12; // header + "valid then \xff"
    let mut buf = BytesMut::from(&wire[..cut - 1]);
    assert_eq!(d.decode(&mut buf), Ok(None));
    buf.extend_from_slice(&wire[cut - 1..cut]);
    assert_eq!(d.decode(&mut buf), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn utf8_fails_fast_across_fragments() {
    // "κόσμε" then a fragment with an invalid continuation: failure on the second frame,
    // before the message ends.
    let mut d = server();
    assert_eq!(decode_all(&mut d, &frame(false, 0, 1, K, "κόσ".as_bytes())).unwrap(), vec![]);
    let e = err_of(&mut d, &frame(false, 0, 0, K, b"\xce\x20"));
    assert_eq!(e.close_code(), CloseCode::INVALID_PAYLOAD);
    // A code point split across fragments is fine.
    let bytes = "€".as_bytes();
    let mut wire = frame(false, 0, 1, K, &bytes[..1]);
    wire.extend(frame(true, 0, 0, K, &bytes[1..]));
    assert_eq!(decode_all(&mut server(), &wire).unwrap(), vec![Incoming::Text(Bytes::from("€"))]);
    // A message that ends mid code point is invalid.
    assert_eq!(err_of(&mut server(), &frame(true, 0, 1, K, &bytes[..2])), ProtocolError::InvalidUtf8);
}

#[test]
fn frame_limit_is_checked_from_the_header() {
    let limits = Limits { max_frame_size: 1000, max_message_size: 1 << 20 };
    let mut d = Decoder::new(Role::Server, limits, None);
    // Only the header of a 2^63-1 byte frame: refused with nothing else sent.
    let header = [0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4];
    let e = err_of(&mut d, &header);
    assert_eq!(e, ProtocolError::FrameTooLarge { size: (1 << 63) - 1, limit: 1000 });
    assert_eq!(e.close_code(), CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn message_limit_counts_fragments_before_buffering() {
    let limits = Limits { max_frame_size: 1 << 20, max_message_size: 100 };
    let mut d = Decoder::new(Role::Server, limits, None);
    let mut buf = BytesMut::new();
    for _ in 0..3 {
        buf.extend(frame(false, 0, if buf.is_empty() { 2 } else { 0 }, K, &[0u8; 40]));
    }
    let e = d.decode(&mut buf).unwrap_err();
    assert_eq!(e, ProtocolError::MessageTooLarge { size: 120, limit: 100 });
}

#[test]
fn compressed_message_limit_applies_to_inflated_size() {
    let params = DeflateParams::default();
    let mut enc = Encoder::new(Role::Client, Some(&params), 6, 0);
    let mut wire = BytesMut::new();
    enc.encode_message(DataKind::Binary, &vec![0u8; 1 << 20], &mut wire).unwrap();
    assert!(wire.len() < 5000);
    let limits = Limits { max_frame_size: 1 << 20, max_message_size: 64 * 1024 };
    let mut d = Decoder::new(Role::Server, limits, Some(&params));
    let e = d.decode(&mut wire).unwrap_err();
    assert!(matches!(e, ProtocolError::MessageTooLarge { limit: 65536, .. }), "{e:?}");
}

#[test]
fn compressed_text_is_utf8_checked() {
    let params = DeflateParams::default();
    let mut enc = Encoder::new(Role::Client, Some(&params), 6, 0);
    let mut wire = BytesMut::new();
    // Encode invalid bytes as "text" via binary compression, then flip the opcode.
    enc.encode_message(DataKind::Binary, b"abc\xff", &mut wire).unwrap();
    wire[0] = (wire[0] & 0xf0) | 0x1;
    let mut d = Decoder::new(Role::Server, Limits::default(), Some(&params));
    assert_eq!(d.decode(&mut wire), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn encoder_refuses_bad_control_frames() {
    let mut e = Encoder::new(Role::Server, None, 0, 0);
    let mut out = BytesMut::new();
    assert_eq!(e.encode_control(OpCode::Ping, &[0; 126], &mut out), Err(EncodeError::ControlTooLong(126)));
    assert_eq!(
        e.encode_close(Some((CloseCode(1005), "")), &mut out),
        Err(EncodeError::InvalidCloseCode(1005))
    );
    // A long reason is cut to fit, on a char boundary.
    let reason = "ü".repeat(80);
    e.encode_close(Some((CloseCode::NORMAL, &reason)), &mut out).unwrap();
    let mut d = Decoder::new(Role::Client, Limits::default(), None);
    match d.decode(&mut out).unwrap() {
        Some(Incoming::Close(Some(f))) => assert_eq!(f.reason.len(), 122),
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_frames_use_fresh_masks() {
    let mut e = Encoder::new(Role::Client, None, 0, 0);
    let mut a = BytesMut::new();
    let mut b = BytesMut::new();
    e.encode_message(DataKind::Binary, &[0; 16], &mut a).unwrap();
    e.encode_message(DataKind::Binary, &[0; 16], &mut b).unwrap();
    assert_eq!(a[1] & 0x80, 0x80);
    assert_ne!(a[2..6], b[2..6], "two frames with the same key");
}
