//! Modes against a broadcasting server (`bench_server --fanout`): `fanout` (one
//! publisher, many receivers), `churn` (joins and leaves) and `relay` (sends between
//! cluster nodes through global ids).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_meta_websocket::protocol::{DataKind, FrameHeader, Incoming, OpCode, ProtocolError};
use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::sync::{watch, Notify};

use super::conn::{
    next_text, open, open_at, payload, say, send_text, write_flushed, Conn, Latencies, Stream,
};
use super::Args;

/// One receiver in this many decodes what it gets.
const SAMPLE: usize = 50;

/// What the receivers share with the publisher.
struct Tally {
    delivered: AtomicU64,
    wire_in: AtomicU64,
    /// A delivery came: the publisher may have room for the next broadcast.
    wake: Notify,
    done: watch::Sender<bool>,
}

/// Receivers count what reaches them and wake the publisher, which keeps `inflight`
/// broadcasts outstanding: a message counts as delivered once every receiver has it.
pub async fn fanout(args: Arc<Args>) {
    let mut receivers = Vec::with_capacity(args.conns);
    for n in 0..args.conns {
        receivers.push(open_at(&args, n, n % args.targets.len()).await.expect("connect receiver"));
    }
    let mut publisher = open(&args, args.conns).await.expect("connect publisher");
    // The caller may read the server's CPU time now, to leave the handshakes out.
    say("READY");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let tally = Arc::new(Tally {
        delivered: AtomicU64::new(0),
        wire_in: AtomicU64::new(0),
        wake: Notify::new(),
        done: watch::channel(false).0,
    });
    let tasks: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(i, conn)| tokio::spawn(receive(conn, i % SAMPLE == 0, tally.clone(), t0)))
        .collect();
    let published = publish(&mut publisher, &args, &tally, t0).await;
    let secs = t0.elapsed().as_secs_f64();
    let _ = tally.done.send(true);
    let mut lat = Latencies::default();
    let mut open_streams = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (l, stream) = t.await.expect("receiver task");
        lat.extend(l);
        open_streams.push(stream);
    }
    let n = tally.delivered.load(Ordering::Relaxed);
    say(&format!(
        "{{\"mode\":\"fanout\",\"receivers\":{},\"size\":{},\"deflate\":{},\"published\":{},\"delivered\":{},\"secs\":{:.3},\"delivered_per_s\":{:.0},\"p50_us\":{},\"p99_us\":{},\"wire_bytes_in\":{}}}",
        args.conns,
        args.size,
        args.deflate,
        published,
        n,
        secs,
        n as f64 / secs,
        lat.percentile(0.5),
        lat.percentile(0.99),
        tally.wire_in.load(Ordering::Relaxed)
    ));
    // Closed once the caller has read the results and the server's CPU time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(open_streams);
}

/// Publishes until `--secs` is over, keeping `--inflight` broadcasts outstanding (at
/// `--rate` if one is given), then waits a little for the last to arrive; how many.
async fn publish(publisher: &mut Conn, args: &Args, tally: &Tally, t0: Instant) -> u64 {
    let deadline = t0 + Duration::from_secs_f64(args.secs);
    let kind = if args.text { DataKind::Text } else { DataKind::Binary };
    let receivers = args.conns as u64;
    let mut published = 0u64;
    let mut out = BytesMut::new();
    let mut tick = (args.rate > 0.0).then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate)));
    while Instant::now() < deadline {
        if let Some(tick) = tick.as_mut() {
            tick.tick().await;
        }
        while tally.delivered.load(Ordering::Relaxed) + (args.inflight as u64) * receivers
            <= published * receivers
        {
            if tokio::time::timeout(Duration::from_secs(5), tally.wake.notified()).await.is_err() {
                eprintln!("fanout: deliveries stalled");
                break;
            }
        }
        out.clear();
        publisher.enc.encode_message(kind, &payload(args.size, t0), &mut out).expect("encode");
        write_flushed(&mut publisher.stream, &out).await.expect("publish");
        published += 1;
    }
    // Until everything published has arrived, or a few seconds.
    let settle = Instant::now() + Duration::from_secs(5);
    while tally.delivered.load(Ordering::Relaxed) < published * receivers && Instant::now() < settle {
        let _ = tokio::time::timeout(Duration::from_millis(50), tally.wake.notified()).await;
    }
    published
}

/// One receiver: counts what arrives until the run is done. A `sample` receiver decodes
/// (and inflates) for latency; the others count whole messages from frame headers, so the
/// load generator is not what limits the rate. The connection stays open until the
/// results are out: its close is not part of the measurement.
async fn receive(conn: Conn, sample: bool, tally: Arc<Tally>, t0: Instant) -> (Latencies, Stream) {
    let Conn { mut stream, mut buf, mut dec, .. } = conn;
    let mut lat = Latencies::default();
    let mut done = tally.done.subscribe();
    loop {
        let n = if sample { decode_all(&mut dec, &mut buf, &mut lat, t0) } else { count_frames(&mut buf) };
        match n {
            Ok(0) => {}
            Ok(n) => {
                tally.delivered.fetch_add(n, Ordering::Relaxed);
                tally.wake.notify_one();
            }
            Err(e) => panic!("server sent a bad frame: {e}"),
        }
        tokio::select! {
            r = stream.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => { tally.wire_in.fetch_add(n as u64, Ordering::Relaxed); }
            },
            _ = done.changed() => break,
        }
    }
    (lat, stream)
}

/// Decodes every whole message in `buf`, noting latencies; how many data messages.
fn decode_all(
    dec: &mut actix_meta_websocket::protocol::Decoder,
    buf: &mut BytesMut,
    lat: &mut Latencies,
    t0: Instant,
) -> Result<u64, ProtocolError> {
    let mut n = 0;
    while let Some(m) = dec.decode(buf)? {
        if let Incoming::Text(b) | Incoming::Binary(b) = m {
            lat.arrived(&b, t0);
            n += 1;
        }
    }
    Ok(n)
}

/// Counts and drops the whole data messages at the front of `buf` (final data frames),
/// leaving a partial frame in place.
fn count_frames(buf: &mut BytesMut) -> Result<u64, ProtocolError> {
    let mut n = 0;
    while let Some((h, head)) = FrameHeader::parse(buf)? {
        let total = head + h.payload_len as usize;
        if buf.len() < total {
            break;
        }
        let _ = buf.split_to(total);
        if h.fin && !h.opcode.is_control() && h.opcode != OpCode::Close {
            n += 1;
        }
    }
    Ok(n)
}

/// Opens `conns` idle connections and one more that asks `bench_server --fanout` (text
/// `churn`) to make every connection join a group and leave it, and waits for the answer.
pub async fn churn(args: Arc<Args>) {
    let mut members = Vec::with_capacity(args.conns);
    for n in 0..args.conns {
        members.push(open(&args, n).await.expect("connect"));
    }
    let mut asker = open(&args, args.conns).await.expect("connect");
    say("READY");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    send_text(&mut asker, b"churn", &mut BytesMut::new()).await;
    let answer = tokio::time::timeout(Duration::from_secs(60), next_text(&mut asker)).await;
    assert!(matches!(answer, Ok(Some(ref b)) if &b[..] == b"churned"), "churn: no answer");
    let secs = t0.elapsed().as_secs_f64();
    // The other thread's inbox may still be taking its last leaves: let it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    say(&format!("{{\"mode\":\"churn\",\"members\":{},\"secs\":{:.4}}}", members.len() + 1, secs));
    // Closed once the caller has read the results and the server's CPU time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(members);
}

/// One sender and one receiver: the receiver asks the server for its global id, the
/// sender sends `to <id> <payload>` at --rate, the server relays each with
/// `Cluster::send`; latency is from the payload's send time to its arrival.
pub async fn relay(args: Arc<Args>) {
    let mut out = BytesMut::new();
    let mut receiver = open_at(&args, 1, args.targets.len() - 1).await.expect("connect receiver");
    send_text(&mut receiver, b"id?", &mut out).await;
    let id = next_text(&mut receiver).await.expect("an id");
    let id =
        std::str::from_utf8(&id).ok().and_then(|t| t.strip_prefix("id ")).expect("id <global id>").to_owned();
    let mut sender = open(&args, 0).await.expect("connect sender");
    say("READY");
    let t0 = Instant::now();
    let received = tokio::spawn(async move {
        let mut lat = Latencies::default();
        while let Some(b) = next_text(&mut receiver).await {
            if b.as_ref() == b"end" {
                break;
            }
            lat.arrived(&b, t0);
        }
        lat
    });
    let deadline = t0 + Duration::from_secs_f64(args.secs);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate.max(1.0)));
    let mut sent = 0u64;
    while Instant::now() < deadline {
        tick.tick().await;
        let mut msg = format!("to {id} ").into_bytes();
        msg.extend_from_slice(&payload(args.size, t0));
        send_text(&mut sender, &msg, &mut out).await;
        sent += 1;
    }
    send_text(&mut sender, format!("to {id} end").as_bytes(), &mut out).await;
    let mut lat = tokio::time::timeout(Duration::from_secs(10), received)
        .await
        .expect("the end arrived")
        .expect("receiver");
    println!(
        "{{\"mode\":\"relay\",\"sent\":{sent},\"received\":{},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{}}}",
        lat.len(),
        lat.percentile(0.5),
        lat.percentile(0.9),
        lat.percentile(0.99)
    );
}
