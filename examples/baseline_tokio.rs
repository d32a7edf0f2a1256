//! Benchmark floor: the least a WebSocket echo server can be on tokio. One task per
//! connection owns its `TcpStream`; the handshake is parsed by hand; frames go through
//! this crate's sans-IO codec; nothing else (no actors, no HTTP layer, no limits beyond
//! the codec's). A read lands in a per-thread scratch buffer first, so an idle connection
//! holds no buffer. Written for `scripts/bench_owned.py` only.
//!
//! ```sh
//! cargo run --release --example baseline_tokio -- --port 9300 --workers 1
//! ```

use std::cell::RefCell;
use std::net::SocketAddr;

use actix_meta_websocket::protocol::{
    accept_key, DataKind, Decoder, Encoder, Incoming, Limits, OpCode, Role,
};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(clap::Parser)]
struct Cli {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 9300)]
    port: u16,
    /// Threads, each with its own listener socket (SO_REUSEPORT) and runtime.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

fn main() -> std::io::Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    let addr = SocketAddr::from(([127, 0, 0, 1], cli.port));
    for _ in 0..cli.workers {
        std::thread::spawn(move || {
            let run = || -> std::io::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                tokio::task::LocalSet::new().block_on(&rt, serve(addr))
            };
            if let Err(e) = run() {
                eprintln!("baseline_tokio on {addr}: {e}");
                std::process::exit(1);
            }
        });
    }
    // Ends on Ctrl-C (SIGINT), as the other benchmark servers do: the scripts stop them so.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(tokio::signal::ctrl_c())
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseport(true)?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener: TcpListener = socket.listen(4096)?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::task::spawn_local(async move {
            let _ = connection(stream).await;
        });
    }
}

/// The handshake, then echo until the peer closes.
async fn connection(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    handshake(&mut stream, &mut buf).await?;
    let mut dec = Decoder::new(Role::Server, Limits::default(), None);
    let mut enc = Encoder::new(Role::Server, None, 6, 0);
    let mut out = BytesMut::new();
    loop {
        while let Some(m) = dec.decode(&mut buf).map_err(std::io::Error::other)? {
            match m {
                Incoming::Text(b) => enc.encode_message(DataKind::Text, &b, &mut out),
                Incoming::Binary(b) => enc.encode_message(DataKind::Binary, &b, &mut out),
                Incoming::Ping(b) => enc.encode_control(OpCode::Pong, &b, &mut out),
                Incoming::Pong(_) => Ok(()),
                Incoming::Close(_) => {
                    let _ = enc.encode_control(OpCode::Close, b"", &mut out);
                    stream.write_all(&out).await?;
                    return Ok(());
                }
            }
            .map_err(std::io::Error::other)?;
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out = BytesMut::new();
        }
        if !read(&mut stream, &mut buf).await? {
            return Ok(());
        }
    }
}

/// Reads what has arrived; false at the end of the stream.
async fn read(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<bool> {
    if !buf.is_empty() {
        buf.reserve(8 * 1024);
        return Ok(stream.read_buf(buf).await? > 0);
    }
    loop {
        stream.readable().await?;
        let read = SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            stream.try_read(&mut s[..]).inspect(|&n| buf.extend_from_slice(&s[..n]))
        });
        match read {
            Ok(n) => return Ok(n > 0),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

async fn handshake(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<()> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        buf.reserve(1024);
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    };
    let head = buf.split_to(end);
    let key = std::str::from_utf8(&head)
        .ok()
        .and_then(|h| {
            h.lines()
                .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key")))
        })
        .map(|(_, v)| v.trim().to_owned())
        .ok_or_else(|| std::io::Error::other("no Sec-WebSocket-Key"))?;
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key.as_bytes())
    );
    stream.write_all(answer.as_bytes()).await?;
    *buf = BytesMut::from(&buf[..]);
    Ok(())
}
