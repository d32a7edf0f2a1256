//! The client half over loopback: against our own server, against independent servers
//! (tokio-tungstenite in-process, Python `websockets` with compression), over TLS, through
//! a real HTTP proxy (tinyproxy), and every dial failure as its typed error.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use actix_meta_websocket::client::Proxy;
use actix_meta_websocket::protocol::CloseCode;
use actix_meta_websocket::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message as TMessage;

fn url(s: &str) -> url::Url {
    url::Url::parse(s).unwrap()
}

async fn expect_connect(rx: &mut Events) -> MessageConnect {
    match next(rx).await.1 {
        Event::Connect(c) => c,
        other => panic!("{other:?}"),
    }
}

async fn expect_message(rx: &mut Events) -> WsMessage {
    match next(rx).await.1 {
        Event::Message(m) => m,
        other => panic!("{other:?}"),
    }
}

#[actix_web::test]
async fn client_and_server_talk_both_ways_with_and_without_compression() {
    for compression in [false, true] {
        let (server_worker, mut server_rx) = recorder("server", true);
        let srv = serve(
            WsHandler::new(options(server_worker).compression(compression).protocols(["b", "a"])).unwrap(),
        );
        let (client_worker, mut client_rx) = recorder("client", false);
        let opts = DialOptions::new(url(&srv.url()), Target::from_addr(client_worker))
            .compression(compression)
            .protocols(["a", "b"])
            .header("x-token", "secret")
            .header("x-tag", "one")
            .header("x-tag", "two");
        let id = connect(opts).await.expect("dial");

        let c = expect_connect(&mut client_rx).await;
        assert_eq!(c.id, id);
        assert_eq!(c.protocol.as_deref(), Some("b"));
        assert_eq!(c.compressed, compression);
        assert_eq!(c.remote_addr, Some(srv.addr));
        assert!(c.headers.contains_key("sec-websocket-accept"), "the client sees the 101's headers");
        let s = expect_connect(&mut server_rx).await;
        assert_eq!(s.headers.get("x-token").map(|v| v.as_bytes()), Some(&b"secret"[..]));
        let tags: Vec<&[u8]> = s.headers.get_all("x-tag").map(|v| v.as_bytes()).collect();
        assert_eq!(tags, [&b"one"[..], &b"two"[..]], "repeated headers keep every value, in order");
        assert_eq!(s.remote_addr, c.local_addr, "the server sees the client's socket");

        // Client -> server -> echoed back to the client's target.
        let text = "ping pong ".repeat(50);
        id.send_wait(Outgoing::text(text.clone())).await.unwrap();
        assert_eq!(expect_message(&mut server_rx).await.as_text(), Some(text.as_str()));
        assert_eq!(expect_message(&mut client_rx).await.as_text(), Some(text.as_str()));
        // Server -> client by the server-side id.
        s.id.send_wait(Outgoing::binary(vec![9u8; 70_000])).await.unwrap();
        let m = expect_message(&mut client_rx).await;
        assert_eq!((m.kind, m.body.len()), (MessageKind::Binary, 70_000));

        let stats = id.stats().await.unwrap();
        assert_eq!(stats.compressed, compression);
        if compression {
            assert!(stats.traffic.bytes_out < 200, "the repetitive text went out compressed: {stats:?}");
        }
        id.close(1000, "done").unwrap();
        for (rx, initiator) in [(&mut client_rx, Initiator::Local), (&mut server_rx, Initiator::Peer)] {
            let reason = next_disconnect(rx).await.reason;
            assert_eq!(
                reason,
                DisconnectReason::Closed { initiator, code: CloseCode::NORMAL, reason: "done".into() }
            );
        }
    }
}

#[actix_web::test]
async fn client_against_tokio_tungstenite_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    actix_rt::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(TMessage::text("welcome")).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
            ws.send(m).await.unwrap();
        }
    });
    let (worker, mut rx) = recorder("client", false);
    let id =
        connect(DialOptions::new(url(&format!("ws://{addr}/")), Target::from_addr(worker))).await.unwrap();
    expect_connect(&mut rx).await;
    assert_eq!(expect_message(&mut rx).await.as_text(), Some("welcome"));
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i * 31) as u8).collect();
    id.send_wait(Outgoing::binary(big.clone())).await.unwrap();
    assert_eq!(&expect_message(&mut rx).await.body[..], &big[..]);
    id.close(4000, "bye").unwrap();
    let d = next_disconnect(&mut rx).await;
    assert_eq!(d.reason.code(), CloseCode(4000));
}

/// A child process killed when the test ends.
struct Child_(Child);
impl Drop for Child_ {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const PY_ECHO: &str = r#"
import asyncio
from websockets.asyncio.server import serve
async def echo(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    async with serve(echo, "127.0.0.1", 0, max_size=None, compression="deflate") as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
"#;

fn python_echo_server() -> (Child_, u16) {
    let mut child = Command::new("python3")
        .args(["-c", PY_ECHO])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with `websockets` is needed (scripts/test.sh installs it)");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
        .unwrap();
    let port =
        line.trim().parse().unwrap_or_else(|_| panic!("python websockets server did not start: {line:?}"));
    (Child_(child), port)
}

#[actix_web::test]
async fn client_against_python_websockets_with_compression() {
    if !python_websockets() {
        return;
    }
    let (_py, port) = python_echo_server();
    let (worker, mut rx) = recorder("client", false);
    let opts = DialOptions::new(url(&format!("ws://127.0.0.1:{port}/")), Target::from_addr(worker))
        .compression(true);
    let id = connect(opts).await.unwrap();
    let c = expect_connect(&mut rx).await;
    assert!(c.compressed, "python websockets accepts permessage-deflate");
    for i in 0..20 {
        let text = format!("{{\"seq\":{i},\"payload\":\"{}\"}}", "abc".repeat(200));
        id.send_wait(Outgoing::text(text.clone())).await.unwrap();
        assert_eq!(expect_message(&mut rx).await.as_text(), Some(text.as_str()));
    }
    let stats = id.stats().await.unwrap();
    assert!(
        stats.traffic.bytes_in < stats.traffic.messages_in * 600 / 4,
        "echoes arrived compressed: {stats:?}"
    );
    id.close(1000, "").unwrap();
    assert_eq!(next_disconnect(&mut rx).await.reason.code(), CloseCode::NORMAL);
}

#[actix_web::test]
async fn wss_against_an_actix_web_rustls_server() {
    let (server_cfg, client_cfg) = tls_pair();
    let (server_worker, mut server_rx) = recorder("server", true);
    let handler = WsHandler::new(options(server_worker)).unwrap();
    let h = handler.clone();
    let srv = serve_app_on("127.0.0.1:0", Some(server_cfg), 1, None, move || {
        actix_web::App::new().route("/ws", h.route())
    });
    let addr = srv.addr;

    let (worker, mut rx) = recorder("client", false);
    let opts = DialOptions::new(
        url(&format!("wss://localhost:{}/ws", addr.port())),
        Target::from_addr(worker.clone()),
    )
    .tls(Arc::new(client_cfg));
    let id = connect(opts).await.expect("wss dial");
    expect_connect(&mut rx).await;
    expect_connect(&mut server_rx).await;
    id.send_wait(Outgoing::text("over tls")).await.unwrap();
    assert_eq!(expect_message(&mut rx).await.as_text(), Some("over tls"));
    id.close(1000, "").unwrap();
    next_disconnect(&mut rx).await;

    // Without the test root the certificate is refused, as a TLS error.
    let opts =
        DialOptions::new(url(&format!("wss://localhost:{}/ws", addr.port())), Target::from_addr(worker));
    match connect(opts).await {
        Err(ConnectError::Tls { .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// tinyproxy (Debian's) on a loopback port, with its log.
fn tinyproxy() -> (Child_, u16, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("amw-tinyproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = common::redis::free_port();
    let log = dir.join("tinyproxy.log");
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 20\nAllow 127.0.0.1\nLogLevel Info\nLogFile \"{}\"\nPidFile \"{}\"\n",
            log.display(),
            dir.join("tinyproxy.pid").display()
        ),
    )
    .unwrap();
    let child = Command::new("tinyproxy")
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tinyproxy is needed (scripts/test.sh installs it)");
    // Readiness: poll until it accepts (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "tinyproxy did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Child_(child), port, log)
}

#[actix_web::test]
async fn a_real_http_proxy_carries_the_connection() {
    if !tinyproxy_installed() {
        return;
    }
    let (_proxy, proxy_port, log) = tinyproxy();
    let (server_worker, mut server_rx) = recorder("server", true);
    let srv = serve(WsHandler::new(options(server_worker)).unwrap());
    let (worker, mut rx) = recorder("client", false);
    let opts = DialOptions::new(url(&srv.url()), Target::from_addr(worker))
        .proxy(Proxy::url(&format!("http://127.0.0.1:{proxy_port}")).unwrap());
    let id = connect(opts).await.expect("dial through the proxy");
    let c = expect_connect(&mut rx).await;
    let s = expect_connect(&mut server_rx).await;
    assert_eq!(c.remote_addr.map(|a| a.port()), Some(proxy_port), "the client's socket goes to the proxy");
    assert_ne!(s.remote_addr, c.local_addr, "the server's peer is the proxy, not the client");
    id.send_wait(Outgoing::text("via proxy")).await.unwrap();
    assert_eq!(expect_message(&mut rx).await.as_text(), Some("via proxy"));
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains(&format!("CONNECT 127.0.0.1:{}", srv.addr.port())), "{logged}");
    id.close(1000, "").unwrap();
    next_disconnect(&mut rx).await;

    // A proxy that refuses the tunnel (tinyproxy denies a port nobody listens on with 5xx).
    let (worker, _rx) = recorder("client", false);
    let opts = DialOptions::new(
        url(&format!("ws://127.0.0.1:{}/ws", common::redis::free_port())),
        Target::from_addr(worker),
    )
    .proxy(Proxy::url(&format!("http://127.0.0.1:{proxy_port}")).unwrap());
    match connect(opts).await {
        Err(ConnectError::Proxy { status, .. }) => assert!(status.contains("50"), "{status}"),
        other => panic!("{other:?}"),
    }
}

#[actix_web::test]
async fn a_silent_listener_gives_the_timeout_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (worker, _rx) = recorder("client", false);
    let opts = DialOptions::new(url(&format!("ws://{addr}/")), Target::from_addr(worker))
        .handshake_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    match connect(opts).await {
        Err(ConnectError::Timeout(t)) => assert_eq!(t, Duration::from_millis(300)),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(listener);
}

/// A one-shot server that reads a request head and answers `response` (with `{accept}`
/// replaced by the right accept value), then sends `after`.
async fn scripted_server(response: &'static str, after: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    actix_rt::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            if tcp.read(&mut b).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let key = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("sec-websocket-key: ").or_else(|| l.strip_prefix("Sec-WebSocket-Key: "))
            })
            .unwrap_or_default()
            .trim()
            .to_owned();
        let response =
            response.replace("{accept}", &actix_meta_websocket::protocol::accept_key(key.as_bytes()));
        let _ = tcp.write_all(response.as_bytes()).await;
        let _ = tcp.write_all(&after).await;
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink).await;
    });
    addr
}

const OK_101: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n";

#[actix_web::test]
async fn bad_answers_are_typed_errors() {
    let (worker, _rx) = recorder("client", false);
    let dial = |addr: SocketAddr, compression: bool| {
        let opts = DialOptions::new(url(&format!("ws://{addr}/ws")), Target::from_addr(worker.clone()))
            .compression(compression)
            .protocols(["p1"]);
        connect(opts)
    };
    let forbidden = scripted_server("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", vec![]).await;
    assert!(matches!(dial(forbidden, false).await, Err(ConnectError::Status { status: 403, .. })));

    let wrong_accept = scripted_server(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
        vec![],
    )
    .await;
    assert!(matches!(dial(wrong_accept, false).await, Err(ConnectError::Handshake(_))));

    let other_protocol = scripted_server(
        Box::leak(format!("{OK_101}Sec-WebSocket-Protocol: p2\r\n\r\n").into_boxed_str()),
        vec![],
    )
    .await;
    assert!(matches!(dial(other_protocol, false).await, Err(ConnectError::Handshake(m)) if m.contains("p2")));

    let unoffered_ext = scripted_server(
        Box::leak(format!("{OK_101}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n").into_boxed_str()),
        vec![],
    )
    .await;
    assert!(matches!(dial(unoffered_ext, false).await, Err(ConnectError::Handshake(_))));

    let bad_params = scripted_server(
        Box::leak(
            format!(
                "{OK_101}Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=16\r\n\r\n"
            )
            .into_boxed_str(),
        ),
        vec![],
    )
    .await;
    assert!(matches!(dial(bad_params, true).await, Err(ConnectError::Deflate(_))));

    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    assert!(matches!(dial(refused, false).await, Err(ConnectError::Connect { .. })));

    let opts = DialOptions::new(url("http://127.0.0.1:1/"), Target::from_addr(worker.clone()));
    assert!(matches!(connect(opts).await, Err(ConnectError::Url { .. })));
}

#[actix_web::test]
async fn masked_server_frames_are_refused() {
    // A 101 and then a masked text frame: a client must fail the connection with 1002.
    let mut frame = vec![0x81, 0x82, 1, 2, 3, 4];
    frame.extend([b'h' ^ 1, b'i' ^ 2]);
    let addr = scripted_server(Box::leak(format!("{OK_101}\r\n").into_boxed_str()), frame).await;
    let (worker, mut rx) = recorder("client", false);
    let id =
        connect(DialOptions::new(url(&format!("ws://{addr}/")), Target::from_addr(worker))).await.unwrap();
    expect_connect(&mut rx).await;
    let d = next_disconnect(&mut rx).await;
    assert_eq!(d.id, id);
    assert!(
        matches!(d.reason, DisconnectReason::Protocol { code: CloseCode::PROTOCOL_ERROR, .. }),
        "{:?}",
        d.reason
    );
}
