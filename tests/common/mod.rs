//! Shared test support: a recording worker actor, a server on a loopback port, and a raw
//! TCP WebSocket peer for crafting bytes the polite clients never send.
#![allow(dead_code)]

#[cfg(feature = "cluster")]
pub mod cluster;
pub mod history;
pub mod redis;
pub mod reliability;
pub mod served;

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use actix_meta_websocket::protocol::{Decoder, Incoming, Limits, Role};
use actix_meta_websocket::{HandlerOptions, MessageConnect, MessageDisconnect, WsHandler, WsMessage};
use actix_web::{App, HttpServer};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// What a recording worker saw, in order.
#[derive(Debug, Clone)]
pub enum Event {
    Connect(MessageConnect),
    Message(WsMessage),
    Disconnect(MessageDisconnect),
}

/// A worker that reports every event to the test and, when `echo` is set, writes every
/// message back unchanged.
pub struct Recorder {
    pub name: &'static str,
    pub tx: mpsc::UnboundedSender<(&'static str, Event)>,
    pub echo: bool,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl actix::Handler<MessageConnect> for Recorder {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        let _ = self.tx.send((self.name, Event::Connect(m)));
    }
}

impl actix::Handler<WsMessage> for Recorder {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        if self.echo {
            let (id, same) = m.clone().into_parts();
            id.send(same);
        }
        let _ = self.tx.send((self.name, Event::Message(m)));
    }
}

impl actix::Handler<MessageDisconnect> for Recorder {
    type Result = ();
    fn handle(&mut self, m: MessageDisconnect, _: &mut Context<Self>) {
        let _ = self.tx.send((self.name, Event::Disconnect(m)));
    }
}

/// Stops a recorder: its target is gone from then on.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct StopRecorder;

impl actix::Handler<StopRecorder> for Recorder {
    type Result = ();
    fn handle(&mut self, _: StopRecorder, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

pub type Events = mpsc::UnboundedReceiver<(&'static str, Event)>;

pub fn recorder(name: &'static str, echo: bool) -> (Addr<Recorder>, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Recorder { name, tx, echo }.start(), rx)
}

/// The next event, or a panic after 10 s (a hang is a failure, not a wait).
pub async fn next(rx: &mut Events) -> (&'static str, Event) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("timed out waiting for an event")
        .expect("event channel closed")
}

pub async fn next_disconnect(rx: &mut Events) -> MessageDisconnect {
    loop {
        if let (_, Event::Disconnect(d)) = next(rx).await {
            return d;
        }
    }
}

/// A tokio-tungstenite client connected to `url`: an independent peer.
pub async fn tungstenite(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    tokio_tungstenite::connect_async(url).await.expect("handshake").0
}

/// A one-worker actix-web server on 127.0.0.1 with `handler` at `/ws`.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: actix_web::dev::ServerHandle,
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

pub fn serve(handler: WsHandler) -> TestServer {
    let h = handler.clone();
    serve_each(1, Some(&handler), move || h.clone())
}

/// A server on 127.0.0.1 with `workers` threads; each mounts at `/ws` the handler that
/// `handler` makes on that thread (so per-thread actors start there). With
/// `configured_by`, an `HttpServer` takes that handler's settings (`configure_server`).
pub fn serve_each(
    workers: usize,
    configured_by: Option<&WsHandler>,
    handler: impl Fn() -> WsHandler + Clone + Send + 'static,
) -> TestServer {
    serve_app(workers, configured_by, move || App::new().route("/ws", handler().route()))
}

/// Which server the tests run on: `WsServer`, which takes each WebSocket's socket over,
/// when `AMW_SERVER=owned` (every suite that serves runs so a second time: see `served`);
/// actix-web's `HttpServer` otherwise.
pub fn owned_sockets() -> bool {
    std::env::var("AMW_SERVER").is_ok_and(|v| v == "owned")
}

/// Serves the `App`s `factory` makes on 127.0.0.1, on the server `owned_sockets` says.
pub fn serve_app<F, I, S, B>(workers: usize, configured_by: Option<&WsHandler>, factory: F) -> TestServer
where
    F: Fn() -> I + Send + Clone + 'static,
    I: actix_service::IntoServiceFactory<S, actix_http::Request>,
    S: actix_service::ServiceFactory<actix_http::Request, Config = actix_web::dev::AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<actix_http::Response<B>> + 'static,
    <S::Service as actix_service::Service<actix_http::Request>>::Future: 'static,
    S::Service: 'static,
    B: actix_web::body::MessageBody + 'static,
{
    serve_app_on("127.0.0.1:0", None, workers, configured_by, factory)
}

/// Like `serve_app`, on `addr`, with TLS when `tls` is given.
pub fn serve_app_on<F, I, S, B>(
    addr: &str,
    tls: Option<rustls::ServerConfig>,
    workers: usize,
    configured_by: Option<&WsHandler>,
    factory: F,
) -> TestServer
where
    F: Fn() -> I + Send + Clone + 'static,
    I: actix_service::IntoServiceFactory<S, actix_http::Request>,
    S: actix_service::ServiceFactory<actix_http::Request, Config = actix_web::dev::AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<actix_http::Response<B>> + 'static,
    <S::Service as actix_service::Service<actix_http::Request>>::Future: 'static,
    S::Service: 'static,
    B: actix_web::body::MessageBody + 'static,
{
    served::note();
    let (addr, server) = if owned_sockets() {
        let server = actix_meta_websocket::WsServer::new(factory).workers(workers).disable_signals();
        let server = match tls {
            Some(config) => server.bind_rustls_0_23(addr, config),
            None => server.bind(addr),
        };
        let server = server.expect("bind");
        (server.addrs()[0], server.run())
    } else {
        let mut server = HttpServer::new(factory);
        if let Some(h) = configured_by {
            server = h.configure_server(server);
        }
        let server = server.workers(workers).disable_signals();
        let server = match tls {
            Some(config) => server.bind_rustls_0_23(addr, config),
            None => server.bind(addr),
        };
        let server = server.expect("bind");
        (server.addrs()[0], server.run())
    };
    let handle = server.handle();
    actix_rt::spawn(server);
    TestServer { addr, handle }
}

pub fn options(target: Addr<Recorder>) -> HandlerOptions {
    HandlerOptions::new(actix_meta_websocket::Target::from_addr(target))
}

/// A raw WebSocket client over TCP: handshake by hand, frames by hand.
pub struct RawClient {
    pub stream: TcpStream,
    pub buf: BytesMut,
    pub decoder: Decoder,
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Sends `request` and returns the status code and the full response head.
pub async fn http_request(addr: SocketAddr, request: &str) -> (u16, String, TcpStream, BytesMut) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let _ = buf.split_to(end + 4);
            let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
            return (status, head, stream, buf);
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read_buf(&mut buf))
            .await
            .expect("response timed out")
            .expect("read");
        assert!(n > 0, "connection closed before a response: {:?}", String::from_utf8_lossy(&buf));
    }
}

pub fn upgrade_request(addr: SocketAddr, extra: &str) -> String {
    upgrade_request_to(addr, "/ws?room=1", extra)
}

pub fn upgrade_request_to(addr: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

impl RawClient {
    /// A raw peer over an upgraded `stream` (with what was read past the handshake),
    /// decoding what the other side sends: server frames when `Role::Client`.
    pub fn over(stream: TcpStream, buf: BytesMut, role: Role) -> RawClient {
        RawClient { stream, buf, decoder: Decoder::new(role, Limits::default(), None) }
    }

    pub async fn connect(addr: SocketAddr, extra: &str) -> (RawClient, String) {
        let (status, head, stream, buf) = http_request(addr, &upgrade_request(addr, extra)).await;
        assert_eq!(status, 101, "{head}");
        (RawClient { stream, buf, decoder: Decoder::new(Role::Client, Limits::default(), None) }, head)
    }

    /// Like `connect`, to `path` (with its query).
    pub async fn connect_path(addr: SocketAddr, path: &str) -> (RawClient, String) {
        let (status, head, stream, buf) = http_request(addr, &upgrade_request_to(addr, path, "")).await;
        assert_eq!(status, 101, "{head}");
        (RawClient { stream, buf, decoder: Decoder::new(Role::Client, Limits::default(), None) }, head)
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next frame or message from the server; `None` on EOF.
    pub async fn recv(&mut self) -> Option<Incoming> {
        loop {
            if let Some(m) = self.decoder.decode(&mut self.buf).expect("server sent a bad frame") {
                return Some(m);
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buf))
                .await
                .expect("server sent nothing for 10 s")
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Reads (and drops) everything until EOF.
    pub async fn read_to_end(&mut self) {
        while self.recv().await.is_some() {}
    }

    /// Reads until the server's close frame and returns its code; then expects EOF.
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            match self.recv().await {
                Some(Incoming::Close(frame)) => {
                    let code = frame.map_or(1005, |f| f.code.0);
                    // The server closes the TCP connection after its close frame.
                    let mut rest = Vec::new();
                    let _ = tokio::time::timeout(Duration::from_secs(10), self.stream.read_to_end(&mut rest))
                        .await;
                    return code;
                }
                Some(_) => continue,
                None => panic!("EOF without a close frame"),
            }
        }
    }
}

/// A masked client frame.
pub fn client_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
    out
}

/// SO_LINGER {on, 0}: closing `s` sends RST instead of FIN.
pub fn socket_linger_zero(s: &std::net::TcpStream) {
    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, val: *const std::ffi::c_void, len: u32) -> i32;
    }
    use std::os::fd::AsRawFd;
    let l = Linger { l_onoff: 1, l_linger: 0 };
    // SOL_SOCKET = 1, SO_LINGER = 13 on Linux.
    let r = unsafe {
        setsockopt(
            s.as_raw_fd(),
            1,
            13,
            &l as *const Linger as *const _,
            std::mem::size_of::<Linger>() as u32,
        )
    };
    assert_eq!(r, 0, "setsockopt(SO_LINGER)");
}

/// Resets `stream` (RST, no FIN).
pub fn reset(stream: TcpStream) {
    let std_stream = stream.into_std().expect("into_std");
    socket_linger_zero(&std_stream);
    drop(std_stream);
}

/// Accepts one WebSocket client on `listener` and answers its upgrade by hand; returns
/// the raw stream for crafting server frames (unmasked).
pub async fn accept_raw(listener: &tokio::net::TcpListener) -> (TcpStream, BytesMut) {
    let (mut tcp, _) = listener.accept().await.expect("accept");
    let mut buf = BytesMut::with_capacity(4096);
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read_buf(&mut buf))
            .await
            .expect("request timed out")
            .expect("read");
        assert!(n > 0, "client left before its request");
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let _ = buf.split_to(end);
    let key = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key")))
        .map(|(_, v)| v.trim().to_owned())
        .expect("a key");
    let accept = actix_meta_websocket::protocol::accept_key(key.as_bytes());
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tcp.write_all(answer.as_bytes()).await.expect("write");
    (tcp, buf)
}

/// An unmasked server frame.
pub fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// A self-signed certificate for `localhost`: a server configuration with it, and a
/// client configuration that trusts it (ALPN `http/1.1`).
pub fn tls_pair() -> (rustls::ServerConfig, rustls::ClientConfig) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let cert_der = cert.cert.der().clone();
    let key_der =
        rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).expect("its key");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der)
        .expect("a server configuration");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).expect("the root");
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    (server, client)
}

/// Whether an outside peer (a program the tests talk to) is installed. Without it the test
/// is skipped with a line on stderr that the test harness does not swallow, unless
/// `AMW_REQUIRE_PEERS=1` (set by `scripts/test.sh`, which installs them), where a missing
/// peer fails the test.
/// Where cargo puts example `name` beside this test binary, if it is built (`scripts/test.sh`
/// builds the examples the tests run: `cargo test` builds them without putting them where a
/// test can find them); otherwise the test is skipped, or fails under AMW_REQUIRE_PEERS=1.
pub fn example(name: &str, build: &str) -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().expect("test exe");
    let bin = exe.parent().and_then(|d| d.parent()).expect("target dir").join("examples").join(name);
    let built = bin.exists();
    peer(&format!("examples/{name} ({build})"), built).then_some(bin)
}

pub fn peer(name: &str, installed: bool) -> bool {
    use std::io::Write;
    if installed {
        return true;
    }
    if std::env::var("AMW_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
        panic!("{name} is required (AMW_REQUIRE_PEERS=1) but not installed");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {name} is not installed; `bash scripts/test.sh` installs it and runs every test"
    );
    false
}

fn runs(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn python_websockets() -> bool {
    peer("python3 with `websockets`", runs("python3", &["-c", "import websockets"]))
}

pub fn node_ws() -> bool {
    let modules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/node_modules/ws");
    peer("node with `ws` (tests/peers)", runs("node", &["--version"]) && modules.is_dir())
}

pub fn tinyproxy_installed() -> bool {
    peer("tinyproxy", runs("tinyproxy", &["-v"]))
}
