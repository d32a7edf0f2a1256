//! A WebSocket load generator for any `ws://` URL, loopback only, bounded in time. It
//! speaks the protocol with this crate's sans-IO codec straight over tokio sockets, so
//! its own cost per message is small and the same whichever server it drives.
//!
//! ```sh
//! # echo: C connections, P messages in flight each, S bytes, text or binary
//! cargo run --release --example loadgen -- echo --url ws://127.0.0.1:9100/ws --conns 50 --inflight 32 --size 64 --kind text --secs 5
//! # hold: N idle connections from several 127.0.0.x source addresses, until --secs ends
//! cargo run --release --example loadgen -- hold --url ws://127.0.0.1:9100/ws --conns 10000 --sources 8 --secs 10
//! # connect-rate: handshake + close cycles per second over C parallel loops
//! cargo run --release --example loadgen -- connect-rate --url ws://127.0.0.1:9100/ws --conns 8 --secs 5
//! # churn: C members join and leave a group on the server's side, once
//! cargo run --release --example loadgen -- churn --url ws://127.0.0.1:9100/ws --conns 10000 --sources 8
//! # fanout: C receivers and one publisher, against `bench_server --fanout`; P broadcasts in flight
//! cargo run --release --example loadgen -- fanout --url ws://127.0.0.1:9100/ws --conns 1000 --inflight 4 --size 2048 --secs 5
//! # fanout over cluster nodes: receivers spread over --url and every --also
//! cargo run --release --example loadgen -- fanout --url ws://127.0.0.1:9100/ws --also ws://127.0.0.1:9101/ws --conns 1000
//! # relay: one sender on --url, one receiver on the last --also (or --url), through
//! # `bench_server --cluster`'s global ids, R messages per second; latency percentiles
//! cargo run --release --example loadgen -- relay --url ws://127.0.0.1:9100/ws --also ws://127.0.0.1:9101/ws --rate 1000
//! ```
//!
//! Each mode prints one JSON line of results on standard output; `hold` first prints
//! `READY` once every connection is open.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_meta_websocket::protocol::{
    parse_extensions, CloseCode, DataKind, Decoder, DeflateConfig, DeflateParams, Encoder, Incoming, Limits,
    Role,
};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A WebSocket load generator for a loopback `ws://` URL, bounded in time; prints one
/// JSON line of results.
#[derive(clap::Parser)]
#[command(version)]
struct Cli {
    /// echo: messages echoed; hold: idle connections (prints READY once all are open);
    /// connect-rate: handshake and close cycles; fanout: one publisher's messages
    /// delivered to every receiver; churn: C connections, then one request that the
    /// server make each join a group and leave it (prints READY before the request).
    #[arg(value_parser = ["echo", "hold", "connect-rate", "fanout", "churn", "relay"], default_value = "echo")]
    mode: String,
    /// The server, on a loopback IP address.
    #[arg(long, default_value = "ws://127.0.0.1:9100/ws")]
    url: url::Url,
    /// More servers (nodes of one cluster): fanout spreads its receivers over all of
    /// them; relay receives on the last.
    #[arg(long)]
    also: Vec<url::Url>,
    /// Connections (or parallel loops for connect-rate).
    #[arg(long, default_value_t = 50)]
    conns: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Message kind.
    #[arg(long, value_parser = ["text", "binary"], default_value = "text")]
    kind: String,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Source addresses 127.0.0.1..=127.0.0.N (hold mode, past 64k connections per source).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..))]
    sources: u8,
    /// Offer permessage-deflate.
    #[arg(long)]
    deflate: bool,
    /// hold: each connection first sends one text message of --size bytes and reads its
    /// echo, so the hold measures connections that have talked.
    #[arg(long)]
    first_message: bool,
    /// fanout: broadcasts per second (0: as fast as --inflight allows); relay: messages
    /// per second.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
}

struct Args {
    mode: String,
    /// --url, then every --also.
    targets: Vec<Target>,
    conns: usize,
    inflight: usize,
    size: usize,
    text: bool,
    secs: f64,
    sources: u8,
    deflate: bool,
    first_message: bool,
    rate: f64,
}

struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
}

fn target(url: &url::Url) -> Target {
    let Some(host) = url.host_str().map(str::to_owned) else {
        clap_error("--url has no host");
    };
    let ip: IpAddr = host.parse().unwrap_or_else(|_| clap_error("--url must use a loopback IP address"));
    if !ip.is_loopback() {
        clap_error("--url must use a loopback IP address");
    }
    let port = url.port().unwrap_or(80);
    Target { addr: SocketAddr::new(ip, port), host: format!("{host}:{port}"), path: url.path().to_owned() }
}

fn parse_args() -> Args {
    let cli = <Cli as clap::Parser>::parse();
    Args {
        mode: cli.mode,
        targets: std::iter::once(&cli.url).chain(&cli.also).map(target).collect(),
        conns: cli.conns,
        inflight: cli.inflight,
        size: cli.size,
        text: cli.kind == "text",
        secs: cli.secs,
        sources: cli.sources,
        deflate: cli.deflate,
        first_message: cli.first_message,
        rate: cli.rate,
    }
}

fn clap_error(msg: &str) -> ! {
    <Cli as clap::CommandFactory>::command().error(clap::error::ErrorKind::ValueValidation, msg).exit()
}

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    dec: Decoder,
    enc: Encoder,
}

async fn open(args: &Args, n: usize) -> std::io::Result<Conn> {
    open_at(args, n, 0).await
}

/// Connection `n` to target `at`.
async fn open_at(args: &Args, n: usize, at: usize) -> std::io::Result<Conn> {
    let to = &args.targets[at];
    let socket = TcpSocket::new_v4()?;
    if args.sources > 1 {
        let src = Ipv4Addr::new(127, 0, 0, 1 + (n % args.sources as usize) as u8);
        socket.bind(SocketAddr::new(src.into(), 0))?;
    }
    let mut stream = socket.connect(to.addr).await?;
    stream.set_nodelay(true)?;
    let cfg = DeflateConfig::default();
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
        to.path,
        to.host,
        actix_meta_websocket::protocol::generate_key()
    );
    if args.deflate {
        req.push_str(&format!("Sec-WebSocket-Extensions: {}\r\n", cfg.client_offer()));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(1024);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let _ = buf.split_to(head_end);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(std::io::Error::other(format!("no upgrade: {}", head.lines().next().unwrap_or(""))));
    }
    let params: Option<DeflateParams> = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("sec-websocket-extensions:").map(str::to_owned))
        .and_then(|v| parse_extensions(v.trim()).ok())
        .and_then(|e| cfg.accept_client(&e).ok().flatten());
    let limits = Limits { max_frame_size: 64 << 20, max_message_size: 64 << 20 };
    Ok(Conn {
        stream,
        buf,
        dec: Decoder::new(Role::Client, limits, params.as_ref()),
        enc: Encoder::new(Role::Client, params.as_ref(), 6, 0),
    })
}

/// A payload of `size` bytes whose first 16 carry the send time (hex nanoseconds) and
/// whose rest is JSON as a market feed sends it: the same keys, eight symbols with prices
/// near their own, round lots, rising times. So text stays text and deflate has
/// realistic input, neither random bytes nor one record repeated.
fn payload(size: usize, t0: Instant) -> Vec<u8> {
    use std::io::Write;
    const SYMBOLS: [&str; 8] = ["ACME", "GLOBEX", "INITECH", "UMBRELLA", "HOOLI", "STARK", "WAYNE", "TYRELL"];
    const VENUES: [&str; 4] = ["XNAS", "XNYS", "BATS", "ARCX"];
    static SEED: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let mut x = SEED.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) | 1;
    let mut next = move |n: u64| {
        // xorshift64: cheap, deterministic per message.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut p = format!("{:016x}", t0.elapsed().as_nanos() as u64).into_bytes();
    p.push(b'[');
    let mut ts = 1_764_108_000_000u64;
    while p.len() < size {
        let s = next(8) as usize;
        let bid = 10_000 + 2_500 * s as u64 + next(400) - 200; // cents, near the symbol's own
        let ask = bid + 1 + next(5);
        ts += next(40);
        let _ = write!(
            p,
            r#"{{"symbol":"{}","bid":{}.{:02},"ask":{}.{:02},"volume":{},"venue":"{}","ts":{}}},"#,
            SYMBOLS[s],
            bid / 100,
            bid % 100,
            ask / 100,
            ask % 100,
            100 * (1 + next(49)),
            VENUES[next(4) as usize],
            ts,
        );
    }
    p.truncate(size.max(16));
    p
}

fn sent_at(body: &[u8]) -> Option<u64> {
    std::str::from_utf8(body.get(..16)?).ok().and_then(|h| u64::from_str_radix(h, 16).ok())
}

async fn echo(args: Arc<Args>) {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(args.secs);
    let msgs = Arc::new(AtomicU64::new(0));
    let wire_out = Arc::new(AtomicU64::new(0));
    let wire_in = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for n in 0..args.conns {
        let conn = open(&args, n).await.expect("connect");
        let (args, msgs, wire_out, wire_in) = (args.clone(), msgs.clone(), wire_out.clone(), wire_in.clone());
        tasks.push(tokio::spawn(async move {
            let Conn { stream, mut buf, mut dec, mut enc } = conn;
            let (mut rd, mut wr) = stream.into_split();
            let kind = if args.text { DataKind::Text } else { DataKind::Binary };
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
            let size = args.size;
            let writer = tokio::spawn(async move {
                let mut out = BytesMut::new();
                while rx.recv().await.is_some() {
                    out.clear();
                    enc.encode_message(kind, &payload(size, t0), &mut out).expect("encode");
                    // Coalesce whatever else is queued into the same write.
                    while rx.try_recv().is_ok() {
                        enc.encode_message(kind, &payload(size, t0), &mut out).expect("encode");
                    }
                    wire_out.fetch_add(out.len() as u64, Ordering::Relaxed);
                    if wr.write_all(&out).await.is_err() {
                        return;
                    }
                }
                let mut close = BytesMut::new();
                let _ = enc.encode_close(Some((CloseCode::NORMAL, "")), &mut close);
                let _ = wr.write_all(&close).await;
            });
            for _ in 0..args.inflight {
                let _ = tx.send(());
            }
            let mut lat = Vec::with_capacity(1 << 16);
            let mut outstanding = args.inflight;
            let mut tx = Some(tx);
            while outstanding > 0 {
                match dec.decode(&mut buf) {
                    Ok(Some(Incoming::Text(b) | Incoming::Binary(b))) => {
                        let now = t0.elapsed().as_nanos() as u64;
                        if let Some(at) = sent_at(&b) {
                            lat.push(((now - at.min(now)) / 1000) as u32);
                        }
                        msgs.fetch_add(1, Ordering::Relaxed);
                        outstanding -= 1;
                        if Instant::now() < deadline {
                            if let Some(tx) = &tx {
                                let _ = tx.send(());
                                outstanding += 1;
                            }
                        } else {
                            tx = None;
                        }
                        continue;
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => {}
                    Err(e) => panic!("server sent a bad frame: {e}"),
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        wire_in.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
            drop(tx);
            let _ = writer.await;
            lat
        }));
    }
    let mut lat: Vec<u32> = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("connection task"));
    }
    let secs = t0.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0)
    };
    let n = msgs.load(Ordering::Relaxed);
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
        pct(0.5),
        pct(0.99),
        wire_out.load(Ordering::Relaxed),
        wire_in.load(Ordering::Relaxed)
    );
}

async fn hold(args: Arc<Args>) {
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

async fn connect_rate(args: Arc<Args>) {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(args.secs);
    let cycles = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for n in 0..args.conns {
        let (args, cycles) = (args.clone(), cycles.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = n;
            while Instant::now() < deadline {
                let mut c = open(&args, i).await.expect("connect");
                i += args.conns;
                let mut close = BytesMut::new();
                c.enc.encode_close(Some((CloseCode::NORMAL, "")), &mut close).expect("close");
                c.stream.write_all(&close).await.expect("write close");
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

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Arc::new(parse_args());
    match args.mode.as_str() {
        "echo" => echo(args).await,
        "hold" => hold(args).await,
        "connect-rate" => connect_rate(args).await,
        "fanout" => fanout(args).await,
        "churn" => churn(args).await,
        "relay" => relay(args).await,
        other => {
            eprintln!("unknown mode {other:?}: echo | hold | connect-rate | fanout | churn | relay");
            std::process::exit(2);
        }
    }
}

/// Opens `conns` idle connections and one more that asks `bench_server --fanout` (text
/// `churn`) to make every connection join a group and leave it, and waits for the answer.
async fn churn(args: Arc<Args>) {
    let mut members = Vec::with_capacity(args.conns);
    for n in 0..args.conns {
        members.push(open(&args, n).await.expect("connect"));
    }
    let mut asker = open(&args, args.conns).await.expect("connect");
    println!("READY");
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let mut out = BytesMut::new();
    asker.enc.encode_message(DataKind::Text, b"churn", &mut out).expect("encode");
    asker.stream.write_all(&out).await.expect("ask");
    loop {
        match asker.dec.decode(&mut asker.buf) {
            Ok(Some(Incoming::Text(b))) if &b[..] == b"churned" => break,
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => panic!("server sent a bad frame: {e}"),
        }
        match tokio::time::timeout(Duration::from_secs(60), asker.stream.read_buf(&mut asker.buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => panic!("churn: no answer"),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    // The other thread's home may still be taking its last leaves: let it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("{{\"mode\":\"churn\",\"members\":{},\"secs\":{:.4}}}", members.len() + 1, secs);
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    // Closed once the caller has read the results and the server's CPU time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(members);
}

/// One receiver in this many decodes what it gets.
const SAMPLE: usize = 50;

/// Counts and drops the whole data messages at the front of `buf` (final data frames),
/// leaving a partial frame in place.
fn count_frames(buf: &mut BytesMut) -> Result<u64, actix_meta_websocket::protocol::ProtocolError> {
    use actix_meta_websocket::protocol::{FrameHeader, OpCode};
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

/// Receivers count what reaches them and wake the publisher, which keeps `inflight`
/// broadcasts outstanding: a message counts as delivered once every receiver has it.
async fn fanout(args: Arc<Args>) {
    let mut receivers = Vec::with_capacity(args.conns);
    for n in 0..args.conns {
        receivers.push(open_at(&args, n, n % args.targets.len()).await.expect("connect receiver"));
    }
    let mut publisher = open(&args, args.conns).await.expect("connect publisher");
    // The caller may read the server's CPU time now, to leave the handshakes out.
    println!("READY");
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(args.secs);
    let delivered = Arc::new(AtomicU64::new(0));
    let wire_in = Arc::new(AtomicU64::new(0));
    let wake = Arc::new(tokio::sync::Notify::new());
    let done = Arc::new(tokio::sync::watch::channel(false).0);
    let mut tasks = Vec::new();
    for (i, conn) in receivers.into_iter().enumerate() {
        let (delivered, wire_in, wake, mut done) =
            (delivered.clone(), wire_in.clone(), wake.clone(), done.subscribe());
        // One receiver in SAMPLE decodes (and inflates) for latency; the others count whole
        // messages from frame headers, so the load generator is not what limits the rate.
        let sample = i % SAMPLE == 0;
        tasks.push(tokio::spawn(async move {
            let Conn { mut stream, mut buf, mut dec, .. } = conn;
            let mut lat = Vec::new();
            loop {
                if !sample {
                    match count_frames(&mut buf) {
                        Ok(0) => {}
                        Ok(n) => {
                            delivered.fetch_add(n, Ordering::Relaxed);
                            wake.notify_one();
                        }
                        Err(e) => panic!("server sent a bad frame: {e}"),
                    }
                } else {
                    match dec.decode(&mut buf) {
                        Ok(Some(Incoming::Text(b) | Incoming::Binary(b))) => {
                            let now = t0.elapsed().as_nanos() as u64;
                            if let Some(at) = sent_at(&b) {
                                lat.push(((now - at.min(now)) / 1000) as u32);
                            }
                            delivered.fetch_add(1, Ordering::Relaxed);
                            wake.notify_one();
                            continue;
                        }
                        Ok(Some(_)) => continue,
                        Ok(None) => {}
                        Err(e) => panic!("server sent a bad frame: {e}"),
                    }
                }
                tokio::select! {
                    r = stream.read_buf(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => { wire_in.fetch_add(n as u64, Ordering::Relaxed); }
                    },
                    _ = done.changed() => break,
                }
            }
            // The connection stays open until the results are out: its close is not
            // part of the measurement.
            (lat, stream)
        }));
    }
    let kind = if args.text { DataKind::Text } else { DataKind::Binary };
    let receivers = args.conns as u64;
    let mut published = 0u64;
    let mut out = BytesMut::new();
    let mut tick = (args.rate > 0.0).then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate)));
    while Instant::now() < deadline {
        if let Some(tick) = tick.as_mut() {
            tick.tick().await;
        }
        while delivered.load(Ordering::Relaxed) + (args.inflight as u64) * receivers <= published * receivers
        {
            if tokio::time::timeout(Duration::from_secs(5), wake.notified()).await.is_err() {
                eprintln!("fanout: deliveries stalled");
                break;
            }
        }
        out.clear();
        publisher.enc.encode_message(kind, &payload(args.size, t0), &mut out).expect("encode");
        publisher.stream.write_all(&out).await.expect("publish");
        published += 1;
    }
    // Until everything published has arrived, or a few seconds.
    let settle = Instant::now() + Duration::from_secs(5);
    while delivered.load(Ordering::Relaxed) < published * receivers && Instant::now() < settle {
        let _ = tokio::time::timeout(Duration::from_millis(50), wake.notified()).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let _ = done.send(true);
    let mut lat: Vec<u32> = Vec::new();
    let mut open_streams = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (l, stream) = t.await.expect("receiver task");
        lat.extend(l);
        open_streams.push(stream);
    }
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0)
    };
    let n = delivered.load(Ordering::Relaxed);
    println!(
        "{{\"mode\":\"fanout\",\"receivers\":{},\"size\":{},\"deflate\":{},\"published\":{},\"delivered\":{},\"secs\":{:.3},\"delivered_per_s\":{:.0},\"p50_us\":{},\"p99_us\":{},\"wire_bytes_in\":{}}}",
        args.conns,
        args.size,
        args.deflate,
        published,
        n,
        secs,
        n as f64 / secs,
        pct(0.5),
        pct(0.99),
        wire_in.load(Ordering::Relaxed)
    );
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    // Closed once the caller has read the results and the server's CPU time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(open_streams);
}

/// Sends `text` on `conn`.
async fn send_text(conn: &mut Conn, text: &[u8], out: &mut BytesMut) {
    out.clear();
    conn.enc.encode_message(DataKind::Text, text, out).expect("encode");
    conn.stream.write_all(out).await.expect("send");
}

/// The next text message on `conn`.
async fn next_text(conn: &mut Conn) -> Option<bytes::Bytes> {
    loop {
        match conn.dec.decode(&mut conn.buf) {
            Ok(Some(Incoming::Text(b))) => return Some(b),
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => panic!("server sent a bad frame: {e}"),
        }
        if conn.stream.read_buf(&mut conn.buf).await.ok()? == 0 {
            return None;
        }
    }
}

/// One sender and one receiver: the receiver asks the server for its global id, the
/// sender sends `to <id> <payload>` at --rate, the server relays each with
/// `Cluster::send`; latency is from the payload's send time to its arrival.
async fn relay(args: Arc<Args>) {
    let mut out = BytesMut::new();
    let mut receiver = open_at(&args, 1, args.targets.len() - 1).await.expect("connect receiver");
    send_text(&mut receiver, b"id?", &mut out).await;
    let id = next_text(&mut receiver).await.expect("an id");
    let id =
        std::str::from_utf8(&id).ok().and_then(|t| t.strip_prefix("id ")).expect("id <global id>").to_owned();
    let mut sender = open(&args, 0).await.expect("connect sender");
    println!("READY");
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    let t0 = Instant::now();
    let received = tokio::spawn(async move {
        let mut lat = Vec::new();
        while let Some(b) = next_text(&mut receiver).await {
            if b.as_ref() == b"end" {
                break;
            }
            let now = t0.elapsed().as_nanos() as u64;
            if let Some(at) = sent_at(&b) {
                lat.push(((now - at.min(now)) / 1000) as u32);
            }
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
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0)
    };
    println!(
        "{{\"mode\":\"relay\",\"sent\":{sent},\"received\":{},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{}}}",
        lat.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99)
    );
}
