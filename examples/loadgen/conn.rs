//! One connection of the load generator: the handshake by hand, then this crate's
//! sans-IO codec over a tokio socket; and what every mode shares (payloads that carry
//! their send time, latency percentiles, lines for the caller).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use actix_meta_websocket::protocol::{
    parse_extensions, DataKind, Decoder, DeflateConfig, DeflateParams, Encoder, Incoming, Limits, Role,
};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};

use super::Args;

/// A connection's socket: plain for `ws://`, TLS (rustls) for `wss://`.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Writes all of `bytes` and flushes (a TLS stream may hold the last record otherwise).
pub async fn write_flushed<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

pub struct Conn {
    pub stream: Stream,
    pub buf: BytesMut,
    pub dec: Decoder,
    pub enc: Encoder,
}

pub async fn open(args: &Args, n: usize) -> std::io::Result<Conn> {
    open_at(args, n, 0).await
}

/// Connection `n` to target `at`.
pub async fn open_at(args: &Args, n: usize, at: usize) -> std::io::Result<Conn> {
    let to = &args.targets[at];
    let socket = TcpSocket::new_v4()?;
    if args.sources > 1 {
        let src = Ipv4Addr::new(127, 0, 0, 1 + (n % args.sources as usize) as u8);
        socket.bind(SocketAddr::new(src.into(), 0))?;
    }
    let tcp = socket.connect(to.addr).await?;
    tcp.set_nodelay(true)?;
    let mut stream = match &args.tls {
        Some(connector) if to.tls => {
            let name = rustls::pki_types::ServerName::IpAddress(to.addr.ip().into());
            Stream::Tls(Box::new(connector.connect(name, tcp).await?))
        }
        _ => Stream::Plain(tcp),
    };
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
    write_flushed(&mut stream, req.as_bytes()).await?;
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
pub fn payload(size: usize, t0: Instant) -> Vec<u8> {
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

pub fn sent_at(body: &[u8]) -> Option<u64> {
    std::str::from_utf8(body.get(..16)?).ok().and_then(|h| u64::from_str_radix(h, 16).ok())
}

/// Sends `text` on `conn`.
pub async fn send_text(conn: &mut Conn, text: &[u8], out: &mut BytesMut) {
    out.clear();
    conn.enc.encode_message(DataKind::Text, text, out).expect("encode");
    write_flushed(&mut conn.stream, out).await.expect("send");
}

/// The next text message on `conn`.
pub async fn next_text(conn: &mut Conn) -> Option<bytes::Bytes> {
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

/// Latencies in microseconds, from payloads that carry their send time.
#[derive(Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    /// `body` arrived now.
    pub fn arrived(&mut self, body: &[u8], t0: Instant) {
        let now = t0.elapsed().as_nanos() as u64;
        if let Some(at) = sent_at(body) {
            self.0.push(((now - at.min(now)) / 1000) as u32);
        }
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p` quantile (0 to 1); sorts first.
    pub fn percentile(&mut self, p: f64) -> u32 {
        self.0.sort_unstable();
        let at = ((self.0.len() as f64 * p) as usize).min(self.0.len().saturating_sub(1));
        self.0.get(at).copied().unwrap_or(0)
    }
}

/// Prints `line` for the caller at once (a script waits for it).
pub fn say(line: &str) {
    use std::io::Write;
    println!("{line}");
    let _ = std::io::stdout().flush();
}
