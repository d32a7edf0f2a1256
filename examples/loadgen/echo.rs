//! Modes against an echo server: `echo` (messages echoed, with latencies), `hold` (idle
//! connections) and `connect-rate` (handshake and close cycles).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_meta_websocket::protocol::{CloseCode, DataKind, Incoming};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;

use super::conn::{next_text, open, payload, send_text, write_flushed, Conn, Latencies, Stream};
use super::Args;

/// What every echo connection adds to.
#[derive(Default)]
struct Totals {
    msgs: AtomicU64,
    wire_out: AtomicU64,
    wire_in: AtomicU64,
}

/// Every connection keeps `--inflight` messages outstanding until `--secs` is over.
pub async fn echo(args: Arc<Args>) {
    let t0 = Instant::now();
    let totals = Arc::new(Totals::default());
    let mut tasks = Vec::new();
    for n in 0..args.conns {
        let conn = open(&args, n).await.expect("connect");
        tasks.push(tokio::spawn(echo_one(conn, args.clone(), totals.clone(), t0)));
    }
    let mut lat = Latencies::default();
    for t in tasks {
        lat.extend(t.await.expect("connection task"));
    }
    let secs = t0.elapsed().as_secs_f64();
    let n = totals.msgs.load(Ordering::Relaxed);
    println!(
        "{{\"mode\":\"echo\",\"conns\":{},\"inflight\":{},\"size\":{},\"kind\":\"{}\",\"deflate\":{},\"msgs\":{},\"secs\":{:.3},\"msgs_per_s\":{:.0},\"mb_per_s\":{:.1},\"p50_us\":{},\"p99_us\":{},\"wire_bytes_out\":{},\"wire_bytes_in\":{}}}",
        args.conns,
        args.inflight,
        args.size,
        if args.text { "text" } else { "binary" },
        args.deflate,
        n,
        secs,
        n as f64 / secs,
        n as f64 * args.size as f64 / secs / 1e6,
        lat.percentile(0.5),
        lat.percentile(0.99),
        totals.wire_out.load(Ordering::Relaxed),
        totals.wire_in.load(Ordering::Relaxed)
    );
}

/// One connection, until the deadline.
async fn echo_one(conn: Conn, args: Arc<Args>, totals: Arc<Totals>, t0: Instant) -> Latencies {
    let Conn { stream, buf, dec, enc } = conn;
    let run = Run { buf, dec, enc, args, totals, t0 };
    match stream {
        // The plain socket's own halves: no lock between reader and writer.
        Stream::Plain(s) => {
            let (rd, wr) = s.into_split();
            run.echo(rd, wr).await
        }
        Stream::Tls(s) => {
            let (rd, wr) = tokio::io::split(*s);
            run.echo(rd, wr).await
        }
    }
}

/// One connection's echo loop, over either kind of socket.
struct Run {
    buf: BytesMut,
    dec: actix_meta_websocket::protocol::Decoder,
    enc: actix_meta_websocket::protocol::Encoder,
    args: Arc<Args>,
    totals: Arc<Totals>,
    t0: Instant,
}

impl Run {
    /// A writer task sends a message for each token; this reader hands a token back for
    /// each echo until the deadline.
    async fn echo<R, W>(self, mut rd: R, wr: W) -> Latencies
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let Run { mut buf, mut dec, enc, args, totals, t0 } = self;
        let deadline = t0 + Duration::from_secs_f64(args.secs);
        let (tx, rx) = mpsc::unbounded_channel::<()>();
        let writer = tokio::spawn(write_messages(wr, enc, rx, args.clone(), totals.clone(), t0));
        for _ in 0..args.inflight {
            let _ = tx.send(());
        }
        let mut lat = Latencies::default();
        let (mut outstanding, mut tx) = (args.inflight, Some(tx));
        while outstanding > 0 {
            match dec.decode(&mut buf) {
                Ok(Some(Incoming::Text(b) | Incoming::Binary(b))) => {
                    lat.arrived(&b, t0);
                    totals.msgs.fetch_add(1, Ordering::Relaxed);
                    outstanding -= 1;
                    if Instant::now() >= deadline {
                        tx = None;
                    } else if let Some(tx) = &tx {
                        let _ = tx.send(());
                        outstanding += 1;
                    }
                    continue;
                }
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => panic!("server sent a bad frame: {e}"),
            }
            if !read_more(&mut rd, &mut buf, &totals).await {
                break;
            }
        }
        drop(tx);
        let _ = writer.await;
        lat
    }
}

async fn read_more<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut, totals: &Totals) -> bool {
    match rd.read_buf(buf).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            totals.wire_in.fetch_add(n as u64, Ordering::Relaxed);
            true
        }
    }
}

/// Sends a message per token, whatever else is queued in the same write; a close frame
/// once the tokens stop.
async fn write_messages<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut enc: actix_meta_websocket::protocol::Encoder,
    mut rx: mpsc::UnboundedReceiver<()>,
    args: Arc<Args>,
    totals: Arc<Totals>,
    t0: Instant,
) {
    let kind = if args.text { DataKind::Text } else { DataKind::Binary };
    let mut out = BytesMut::new();
    while rx.recv().await.is_some() {
        out.clear();
        enc.encode_message(kind, &payload(args.size, t0), &mut out).expect("encode");
        while rx.try_recv().is_ok() {
            enc.encode_message(kind, &payload(args.size, t0), &mut out).expect("encode");
        }
        totals.wire_out.fetch_add(out.len() as u64, Ordering::Relaxed);
        if write_flushed(&mut wr, &out).await.is_err() {
            return;
        }
    }
    let mut close = BytesMut::new();
    let _ = enc.encode_close(Some((CloseCode::NORMAL, "")), &mut close);
    let _ = write_flushed(&mut wr, &close).await;
}

/// Opens `--conns` connections (each echoing one message first with `--first-message`),
/// says READY, and holds them for `--secs`.
pub async fn hold(args: Arc<Args>) {
    let t0 = Instant::now();
    let mut conns = Vec::with_capacity(args.conns);
    let mut out = BytesMut::new();
    for n in 0..args.conns {
        let mut c = open(&args, n).await.expect("connect");
        if args.first_message {
            send_text(&mut c, &payload(args.size, t0), &mut out).await;
            next_text(&mut c).await.expect("the echo");
        }
        conns.push(c);
    }
    let opened = t0.elapsed().as_secs_f64();
    println!("READY");
    tokio::time::sleep(Duration::from_secs_f64(args.secs)).await;
    println!("{{\"mode\":\"hold\",\"conns\":{},\"open_secs\":{:.3}}}", conns.len(), opened);
}

/// `--conns` loops of: handshake, close, until the server has closed TCP.
pub async fn connect_rate(args: Arc<Args>) {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(args.secs);
    let cycles = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for n in 0..args.conns {
        let (args, cycles) = (args.clone(), cycles.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = n;
            while Instant::now() < deadline {
                open_and_close(&args, i).await;
                i += args.conns;
                cycles.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.expect("connect task");
    }
    let secs = t0.elapsed().as_secs_f64();
    let n = cycles.load(Ordering::Relaxed);
    println!(
        "{{\"mode\":\"connect-rate\",\"conns\":{},\"cycles\":{},\"secs\":{:.3},\"cycles_per_s\":{:.0}}}",
        args.conns,
        n,
        secs,
        n as f64 / secs
    );
}

async fn open_and_close(args: &Args, n: usize) {
    let mut c = open(args, n).await.expect("connect");
    let mut close = BytesMut::new();
    c.enc.encode_close(Some((CloseCode::NORMAL, "")), &mut close).expect("close");
    write_flushed(&mut c.stream, &close).await.expect("write close");
    // Until the server's close frame and its end of the TCP connection.
    loop {
        match c.dec.decode(&mut c.buf) {
            Ok(Some(_)) | Err(_) => continue,
            Ok(None) => {}
        }
        match c.stream.read_buf(&mut c.buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}
