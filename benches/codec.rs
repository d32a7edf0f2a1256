//! Codec throughput: our sans-IO decoder/encoder against actix-http's `ws::Codec`,
//! measured in the same run. Decoding is the server's job (masked input), and ours also
//! validates UTF-8, which actix-http does not.
//!
//! Run: `cargo bench --bench codec`

use actix_codec::{Decoder as _, Encoder as _};
use actix_http::ws;
use actix_meta_websocket::protocol::{DataKind, Decoder, DeflateParams, Encoder, Incoming, Limits, Role};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

const SIZES: [(usize, &str); 4] = [(64, "64B"), (1024, "1KiB"), (64 * 1024, "64KiB"), (1 << 20, "1MiB")];

fn text(n: usize) -> Vec<u8> {
    // Mostly ASCII with some multi-byte characters, like real chat/JSON traffic.
    let unit = "{\"user\":\"zoë\",\"msg\":\"hello, wörld\",\"n\":12345} ".as_bytes();
    let mut v: Vec<u8> = unit.iter().copied().cycle().take(n).collect();
    while std::str::from_utf8(&v).is_err() {
        v.pop();
        v.push(b' ');
    }
    v
}

fn masked_frame(kind: DataKind, payload: &[u8]) -> BytesMut {
    let mut enc = Encoder::new(Role::Client, None, 0, 0);
    let mut out = BytesMut::new();
    enc.encode_message(kind, payload, &mut out).unwrap();
    out
}

fn limits() -> Limits {
    Limits { max_frame_size: 2 << 20, max_message_size: 2 << 20 }
}

fn decode(c: &mut Criterion) {
    for (kind, group) in [(DataKind::Text, "decode_masked_text"), (DataKind::Binary, "decode_masked_binary")]
    {
        let mut g = c.benchmark_group(group);
        for (n, name) in SIZES {
            let wire = masked_frame(kind, &text(n));
            g.throughput(Throughput::Bytes(n as u64));
            g.bench_with_input(BenchmarkId::new("ours", name), &wire, |b, wire| {
                let mut dec = Decoder::new(Role::Server, limits(), None);
                b.iter_batched_ref(
                    || wire.clone(),
                    |buf| match dec.decode(buf) {
                        Ok(Some(Incoming::Text(t) | Incoming::Binary(t))) => black_box(t),
                        other => panic!("{other:?}"),
                    },
                    BatchSize::SmallInput,
                )
            });
            g.bench_with_input(BenchmarkId::new("actix_http", name), &wire, |b, wire| {
                let mut codec = ws::Codec::new().max_size(2 << 20);
                b.iter_batched_ref(
                    || wire.clone(),
                    |buf| match codec.decode(buf) {
                        Ok(Some(ws::Frame::Text(t) | ws::Frame::Binary(t))) => black_box(t),
                        other => panic!("{other:?}"),
                    },
                    BatchSize::SmallInput,
                )
            });
        }
        g.finish();
    }
}

fn encode(c: &mut Criterion) {
    for (role, group) in [(Role::Server, "encode_server"), (Role::Client, "encode_client_masked")] {
        let mut g = c.benchmark_group(group);
        for (n, name) in SIZES {
            let payload = Bytes::from(text(n));
            // One output buffer for both codecs: memcpy speed depends on where the
            // destination sits relative to the source (4K aliasing), so separate
            // allocations would measure the allocator's luck, not the codecs.
            let mut out = BytesMut::with_capacity(n + 16);
            g.throughput(Throughput::Bytes(n as u64));
            g.bench_with_input(BenchmarkId::new("ours", name), &payload, |b, p| {
                let mut enc = Encoder::new(role, None, 0, 0);
                b.iter(|| {
                    out.clear();
                    enc.encode_message(DataKind::Binary, p, &mut out).unwrap();
                    black_box(out.len())
                })
            });
            g.bench_with_input(BenchmarkId::new("actix_http", name), &payload, |b, p| {
                let mut codec = ws::Codec::new().max_size(2 << 20);
                if role == Role::Client {
                    codec = codec.client_mode();
                }
                b.iter(|| {
                    out.clear();
                    codec.encode(ws::Message::Binary(p.clone()), &mut out).unwrap();
                    black_box(out.len())
                })
            });
        }
        g.finish();
    }
}

fn compressed_json(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate_json_2KiB");
    let json = text(2048);
    let params = DeflateParams::default();
    g.throughput(Throughput::Bytes(json.len() as u64));
    g.bench_function("encode_compressed", |b| {
        let mut enc = Encoder::new(Role::Server, Some(&params), 6, 0);
        let mut out = BytesMut::new();
        b.iter(|| {
            out.clear();
            enc.encode_message(DataKind::Text, &json, &mut out).unwrap();
            black_box(out.len())
        })
    });
    g.bench_function("round_trip_compressed", |b| {
        let mut enc = Encoder::new(Role::Client, Some(&params), 6, 0);
        let mut dec = Decoder::new(Role::Server, limits(), Some(&params));
        let mut wire = BytesMut::new();
        b.iter(|| {
            enc.encode_message(DataKind::Text, &json, &mut wire).unwrap();
            black_box(dec.decode(&mut wire).unwrap())
        })
    });
    let mut enc = Encoder::new(Role::Server, Some(&params), 6, 0);
    let mut once = BytesMut::new();
    enc.encode_message(DataKind::Text, &json, &mut once).unwrap();
    eprintln!(
        "deflate_json_2KiB: {} bytes -> {} on the wire (first message, fresh context)",
        json.len(),
        once.len()
    );
    g.finish();
}

criterion_group!(benches, decode, encode, compressed_json);
criterion_main!(benches);
