//! Over TLS, the end of a burst reaches a reader that paused and read again without waiting
//! for a later write: on `WsServer` and on `HttpServer` (server to client), and from the
//! crate's own client (client to server). Socket buffers are small, so the burst fills the
//! socket while the reader pauses and the TLS layer holds records the socket refused.
//!
//! `AMW_TLS_ROUNDS=N` repeats each case N times in one run (the loop the issue asks for).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_meta_websocket::*;
use actix_web::App;
use common::*;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as TMessage;

/// Messages in one burst and their size: 1.2 MB, past the default write buffer bound.
const BURST: usize = 3000;
const SIZE: usize = 400;
/// From the client (whose socket is small too).
const CLIENT_SIZE: usize = 400;
/// The bar: everything within this of the reader's resuming.
const WITHIN: Duration = Duration::from_secs(1);

fn rounds() -> usize {
    std::env::var("AMW_TLS_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(3)
}

/// A loopback listener (or socket) whose buffers are small, so a burst fills them.
fn small_buffers(socket: &socket2::Socket) {
    socket.set_send_buffer_size(16 * 1024).expect("SO_SNDBUF");
    socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
}

fn small_listener() -> std::net::TcpListener {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    small_buffers(&socket);
    socket.set_reuse_address(true).expect("SO_REUSEADDR");
    socket.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).expect("bind");
    socket.listen(128).expect("listen");
    socket.into()
}

async fn small_socket(addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    small_buffers(&socket);
    socket.set_nonblocking(true).expect("non-blocking");
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    socket.connect(addr).await.expect("connect")
}

/// Hands each connection's id to the test.
struct Ids(mpsc::UnboundedSender<ConnectionId>);
impl Actor for Ids {
    type Context = Context<Self>;
}
impl Handler<MessageConnect> for Ids {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        let _ = self.0.send(m.id);
    }
}
impl Handler<WsMessage> for Ids {
    type Result = ();
    fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {}
}
impl Handler<MessageDisconnect> for Ids {
    type Result = ();
    fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {}
}

/// Settings that leave no other write to push a held-back tail out: no heartbeat within
/// the test's time.
fn quiet() -> ConnectionSettings {
    ConnectionSettings { heartbeat: None, idle_timeout: None, ..ConnectionSettings::default() }
}

fn message(i: usize, size: usize) -> String {
    format!("{i:06}{}", "x".repeat(size - 6))
}

/// Writes a burst to `id` and waits until the connection has taken all of it in.
async fn burst(id: &ConnectionId, size: usize) {
    for i in 0..BURST {
        id.send(message(i, size));
    }
    // Answered after the writes before it: the connection has encoded or queued them all.
    id.stats().await.expect("the connection is up");
}

enum Server {
    Owned,
    Http,
}

fn tls_server(kind: Server, handler: WsHandler, config: rustls::ServerConfig) -> TestServer {
    let lst = small_listener();
    let addr = lst.local_addr().unwrap();
    let factory = move || App::new().route("/ws", handler.route());
    let server = match kind {
        Server::Owned => WsServer::new(factory)
            .workers(1)
            .disable_signals()
            .listen_rustls_0_23(lst, config)
            .expect("listen")
            .run(),
        Server::Http => actix_web::HttpServer::new(factory)
            .workers(1)
            .disable_signals()
            .listen_rustls_0_23(lst, config)
            .expect("listen")
            .run(),
    };
    let handle = server.handle();
    actix_rt::spawn(server);
    TestServer { addr, handle }
}

type TlsWs = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn tls_client(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> TlsWs {
    let tcp = small_socket(addr).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.expect("TLS");
    let url = format!("wss://localhost:{}/ws", addr.port());
    tokio_tungstenite::client_async(url, tls).await.expect("handshake").0
}

/// Reads `BURST` messages in order, each within `WITHIN` of `resumed`.
async fn read_burst<S>(ws: &mut S, resumed: Instant, size: usize)
where
    S: futures_util::Stream<Item = Result<TMessage, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    for i in 0..BURST {
        let left = WITHIN.saturating_sub(resumed.elapsed());
        let got = match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(other) => panic!("message {i}: {other:?}"),
            Err(_) => panic!("message {i} of {BURST} not there {WITHIN:?} after the reader resumed"),
        };
        assert_eq!(got.into_text().expect("text").as_str(), message(i, size), "message {i}");
    }
}

async fn paused_reader_gets_the_whole_burst(kind: Server) {
    let (server_cfg, client_cfg) = tls_pair();
    let client_cfg = Arc::new(client_cfg);
    let (tx, mut ids) = mpsc::unbounded_channel();
    let opts = HandlerOptions::new(Target::from_addr(Ids(tx).start())).settings(quiet());
    let srv = tls_server(kind, WsHandler::new(opts).unwrap(), server_cfg);
    for _ in 0..rounds() {
        let mut ws = tls_client(srv.addr, client_cfg.clone()).await;
        let id = ids.recv().await.expect("connected");
        // The reader pauses for the whole burst, then reads.
        burst(&id, SIZE).await;
        read_burst(&mut ws, Instant::now(), SIZE).await;
    }
}

#[actix_web::test]
async fn over_wss_on_ws_server_a_paused_reader_gets_the_end_of_a_burst() {
    paused_reader_gets_the_whole_burst(Server::Owned).await;
}

#[actix_web::test]
async fn over_tls_on_http_server_a_paused_reader_gets_the_end_of_a_burst() {
    paused_reader_gets_the_whole_burst(Server::Http).await;
}

#[actix_web::test]
async fn over_wss_readers_under_concurrent_load_get_every_burst_whole() {
    let (server_cfg, client_cfg) = tls_pair();
    let client_cfg = Arc::new(client_cfg);
    let (tx, mut ids) = mpsc::unbounded_channel();
    let opts = HandlerOptions::new(Target::from_addr(Ids(tx).start())).settings(quiet());
    let srv = tls_server(Server::Owned, WsHandler::new(opts).unwrap(), server_cfg);
    for _ in 0..rounds() {
        let mut readers = Vec::new();
        for _ in 0..4 {
            let ws = tls_client(srv.addr, client_cfg.clone()).await;
            readers.push((ws, ids.recv().await.expect("connected")));
        }
        // Every reader reads as the bursts go, all at once.
        let tasks: Vec<_> = readers
            .into_iter()
            .map(|(mut ws, id)| {
                actix_rt::spawn(async move {
                    let writer = actix_rt::spawn(async move { burst(&id, SIZE).await });
                    let started = Instant::now();
                    for i in 0..BURST {
                        let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
                        let m =
                            m.unwrap_or_else(|_| panic!("message {i} never came")).expect("open").unwrap();
                        assert_eq!(m.into_text().unwrap().as_str(), message(i, SIZE));
                    }
                    writer.await.unwrap();
                    started.elapsed()
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("reader");
        }
    }
}

/// A wss server on a thread of its own that reads nothing until told, then reads a whole
/// burst; its join handle fails if it did not get the burst in time.
fn pausing_server(
    config: rustls::ServerConfig,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>) {
    let lst = small_listener();
    lst.set_nonblocking(true).unwrap();
    let addr = lst.local_addr().unwrap();
    let (resume_tx, resume) = tokio::sync::oneshot::channel::<()>();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let reading = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let lst = tokio::net::TcpListener::from_std(lst).unwrap();
            let (tcp, _) = lst.accept().await.expect("accept");
            let tls = acceptor.accept(tcp).await.expect("TLS");
            let mut ws = tokio_tungstenite::accept_async(tls).await.expect("upgrade");
            resume.await.expect("told to resume");
            read_burst(&mut ws, Instant::now(), CLIENT_SIZE).await;
            let _ = ws.close(None).await;
        })
    });
    (addr, resume_tx, reading)
}

/// The TCP step of an awc client whose sockets have small buffers.
#[derive(Clone)]
struct SmallSockets;

impl actix_service::Service<actix_tls::connect::ConnectInfo<actix_http::Uri>> for SmallSockets {
    type Response = actix_tls::connect::Connection<actix_http::Uri, tokio::net::TcpStream>;
    type Error = actix_tls::connect::ConnectError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, req: actix_tls::connect::ConnectInfo<actix_http::Uri>) -> Self::Future {
        let addr = SocketAddr::from(([127, 0, 0, 1], req.port()));
        let uri = req.request().clone();
        Box::pin(async move { Ok(actix_tls::connect::Connection::new(uri, small_socket(addr).await)) })
    }
}

fn small_socket_client(tls: rustls::ClientConfig) -> awc::Client {
    let connector = awc::Connector::new()
        .connector(SmallSockets)
        .max_http_version(actix_http::Version::HTTP_11)
        .rustls_0_23(Arc::new(tls));
    awc::Client::builder().connector(connector).finish()
}

#[actix_web::test]
async fn the_crates_client_over_wss_gets_the_end_of_its_burst_to_a_paused_server() {
    for _ in 0..rounds() {
        let (mut server_cfg, mut client_cfg) = tls_pair();
        server_cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        client_cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let (addr, resume, reading) = pausing_server(server_cfg);
        let (tx, _ids) = mpsc::unbounded_channel();
        let url = format!("wss://localhost:{}/ws", addr.port());
        let opts = DialOptions::new(url, Target::from_addr(Ids(tx).start()))
            .client(small_socket_client(client_cfg))
            .settings(quiet());
        let id = connect(opts).await.expect("dialled");
        burst(&id, CLIENT_SIZE).await;
        resume.send(()).expect("server waiting");
        // The server checks its reads (a failure there fails this join).
        let reading = tokio::task::spawn_blocking(move || reading.join());
        tokio::time::timeout(Duration::from_secs(10), reading)
            .await
            .expect("server done")
            .unwrap()
            .expect("read it all");
        tokio::time::timeout(Duration::from_secs(10), id.closed()).await.expect("closed");
    }
}
