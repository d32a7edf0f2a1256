//! The compressor and decompressor together: RFC 7692's examples, context takeover over
//! pooled and dedicated streams, windows of every size, bombs and corrupt input.

use bytes::BytesMut;

use super::*;
use crate::protocol::{ProtocolError, Role};

fn pair(params: DeflateParams) -> (Compressor, Decompressor) {
    (Compressor::new(&params, Role::Client, 6), Decompressor::new(&params, Role::Server))
}

fn roundtrip(c: &mut Compressor, d: &mut Decompressor, msg: &[u8]) -> (usize, Vec<u8>) {
    let mut z = BytesMut::new();
    c.compress(msg, &mut z).unwrap();
    let mut out = Vec::new();
    d.inflate(&z, &mut out, 1 << 20).unwrap();
    d.finish(&mut out, 1 << 20).unwrap();
    (z.len(), out.to_vec())
}

#[test]
fn rfc7692_hello_examples() {
    // 7.2.3.1: "Hello" compressed, one message.
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
    let mut out = Vec::new();
    d.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100).unwrap();
    d.finish(&mut out, 100).unwrap();
    assert_eq!(&out[..], b"Hello");
    // 7.2.3.2: the second "Hello" with a shared window.
    let mut out = Vec::new();
    d.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out, 100).unwrap();
    d.finish(&mut out, 100).unwrap();
    assert_eq!(&out[..], b"Hello");
    // 7.2.3.3: "Hello" in a stored (no compression) block.
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
    let mut out = Vec::new();
    d.inflate(&[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00], &mut out, 100).unwrap();
    d.finish(&mut out, 100).unwrap();
    assert_eq!(&out[..], b"Hello");
    // 7.2.3.4: a block with BFINAL set.
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
    let mut out = Vec::new();
    d.inflate(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00], &mut out, 100).unwrap();
    d.finish(&mut out, 100).unwrap();
    assert_eq!(&out[..], b"Hello");
    // Our compressor produces the RFC's bytes for the first message and the shorter
    // form for the second when context is taken over.
    let mut c = Compressor::new(&DeflateParams::default(), Role::Server, 6);
    let mut z = BytesMut::new();
    c.compress(b"Hello", &mut z).unwrap();
    assert_eq!(&z[..], [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    let mut z = BytesMut::new();
    c.compress(b"Hello", &mut z).unwrap();
    assert_eq!(&z[..], [0xf2, 0x00, 0x11, 0x00, 0x00]);
}

#[test]
fn context_takeover_shrinks_repeats_and_no_takeover_does_not() {
    let msg = b"{\"symbol\":\"ACME\",\"price\":101.25,\"volume\":300}".repeat(3);
    let (mut c, mut d) = pair(DeflateParams::default());
    let (first, _) = roundtrip(&mut c, &mut d, &msg);
    let (second, out) = roundtrip(&mut c, &mut d, &msg);
    assert_eq!(out, msg);
    assert!(second < first / 2, "{second} vs {first}");
    let p = DeflateParams { client_no_context_takeover: true, ..DeflateParams::default() };
    let (mut c, mut d) = pair(p);
    let (first, _) = roundtrip(&mut c, &mut d, &msg);
    let (second, out) = roundtrip(&mut c, &mut d, &msg);
    assert_eq!(out, msg);
    assert_eq!(first, second);
}

#[test]
fn small_windows_round_trip() {
    for bits in 8..=15 {
        let p = DeflateParams {
            client_max_window_bits: bits,
            server_max_window_bits: bits,
            ..Default::default()
        };
        let (mut c, mut d) = pair(p);
        let msg: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8 ^ (i / 300) as u8).collect();
        for _ in 0..3 {
            assert_eq!(roundtrip(&mut c, &mut d, &msg).1, msg, "bits {bits}");
        }
    }
}

#[test]
fn deflate_bomb_is_stopped_at_the_limit() {
    let (mut c, mut d) = pair(DeflateParams::default());
    let zeros = vec![0u8; 10 << 20];
    let mut z = BytesMut::new();
    c.compress(&zeros, &mut z).unwrap();
    assert!(z.len() < 20_000, "{}", z.len());
    let mut out = Vec::new();
    let e = d.inflate(&z, &mut out, 64 * 1024).unwrap_err();
    assert!(matches!(e, ProtocolError::MessageTooLarge { limit: 65536, .. }));
    assert!(out.capacity() <= 64 * 1024 + 1, "{}", out.capacity());
}

#[test]
fn corrupt_data_is_an_error() {
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
    let mut out = Vec::new();
    let e = d.inflate(&[0xff, 0xff, 0xff, 0xff], &mut out, 100).unwrap_err();
    assert!(matches!(e, ProtocolError::Inflate(_)));
    assert_eq!(e.close_code().0, 1007);
}

fn takeover(bits: u8) -> DeflateParams {
    DeflateParams { client_max_window_bits: bits, server_max_window_bits: bits, ..DeflateParams::default() }
}

/// Three connections on one thread take turns, so pooled streams pass between them;
/// each must still decode, and context takeover must still pay off.
#[test]
fn interleaved_connections_share_pooled_streams_correctly() {
    for memory in [DeflateMemory::Pooled, DeflateMemory::Dedicated] {
        let mut conns: Vec<_> = [9u8, 12, 15]
            .into_iter()
            .map(|bits| {
                let p = takeover(bits);
                (
                    Compressor::with_memory(&p, Role::Client, 6, memory),
                    Decompressor::with_memory(&p, Role::Server, memory),
                )
            })
            .collect();
        let msg = br#"{"symbol":"ACME","price":101.25,"volume":300,"side":"buy"}"#.repeat(2);
        let mut sizes = vec![Vec::new(); 3];
        for round in 0..6 {
            for (i, (c, d)) in conns.iter_mut().enumerate() {
                let mut m = msg.clone();
                m.extend_from_slice(format!("{round}-{i}").as_bytes());
                let (n, out) = roundtrip(c, d, &m);
                assert_eq!(out, m, "{memory:?} conn {i} round {round}");
                sizes[i].push(n);
            }
        }
        for (i, s) in sizes.iter().enumerate() {
            assert!(s[5] * 3 < s[0], "{memory:?} conn {i}: context takeover did not pay: {s:?}");
        }
    }
}

/// A fragmented message keeps its inflate stream while another connection on the same
/// thread inflates whole messages.
#[test]
fn a_message_in_fragments_keeps_its_stream() {
    let p = takeover(12);
    let (mut c1, mut d1) = pair(p);
    let (mut c2, mut d2) = pair(p);
    let big: Vec<u8> = (0..20_000u32).flat_map(|i| format!("{},", i % 977).into_bytes()).collect();
    let mut z = BytesMut::new();
    c1.compress(&big, &mut z).unwrap();
    let mut out = Vec::new();
    for chunk in z.chunks(z.len() / 4 + 1) {
        d1.inflate(chunk, &mut out, 1 << 24).unwrap();
        let other = b"interleaved message from another connection".repeat(4);
        assert_eq!(roundtrip(&mut c2, &mut d2, &other).1, other);
    }
    d1.finish(&mut out, 1 << 24).unwrap();
    assert_eq!(out, big);
    // And the window carried over to the next message.
    let (n, again) = roundtrip(&mut c1, &mut d1, &big[..3000]);
    assert_eq!(again, &big[..3000]);
    assert!(n < 1000, "{n}");
}

#[test]
fn memory_kept_between_messages() {
    let msg = b"some text that is long enough to compress, some text".repeat(100);
    // Pooled with context takeover: the window, no more, and only once used.
    let (mut c, mut d) = pair(takeover(12));
    assert_eq!((c.retained(), d.retained()), (0, 0));
    roundtrip(&mut c, &mut d, &msg);
    assert_eq!((c.retained(), d.retained()), (4096, 4096));
    // Without context takeover: nothing.
    let p = DeflateParams { client_no_context_takeover: true, ..takeover(12) };
    let (mut c, mut d) = pair(p);
    roundtrip(&mut c, &mut d, &msg);
    assert_eq!((c.retained(), d.retained()), (0, 0));
    // The thread keeps a bounded number of idle streams however many connections ran.
    let mut many: Vec<_> = (0..20).map(|_| pair(takeover(12))).collect();
    for (c, d) in &mut many {
        roundtrip(c, d, &msg);
    }
    let (deflate, inflate) = streams::idle();
    assert!(deflate <= 4 && inflate <= 4, "{deflate} {inflate}");
}

/// Without context takeover a message always compresses to the same bytes, whichever
/// compressor does it: what lets a broadcast be compressed once.
#[test]
fn no_context_takeover_output_depends_on_the_message_only() {
    let p = DeflateParams { server_no_context_takeover: true, ..takeover(12) };
    let msg = br#"{"event":"tick","values":[1,2,3,4,5,6,7,8,9,10]}"#.repeat(5);
    let mut a = Compressor::new(&p, Role::Server, 6);
    let mut b = Compressor::new(&p, Role::Server, 6);
    let mut first = BytesMut::new();
    a.compress(b"something else first, to dirty a stream", &mut BytesMut::new()).unwrap();
    a.compress(&msg, &mut first).unwrap();
    let mut second = BytesMut::new();
    b.compress(&msg, &mut second).unwrap();
    assert!(a.resets_each_message());
    assert_eq!(first, second);
    assert_eq!(a.stream_key(), (12, 6));
}
