//! The server half over real loopback sockets: an independent client (tokio-tungstenite)
//! for the ordinary paths, a raw TCP peer for bytes no polite client sends.

mod common;

use std::time::Duration;

use actix::{Actor, ActorContext, Context, ResponseFuture};
use actix_meta_websocket::protocol::{CloseCode, Incoming, ProtocolError};
use actix_meta_websocket::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as TCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as TMessage;

async fn tungstenite(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    tokio_tungstenite::connect_async(url).await.expect("handshake").0
}

#[actix_web::test]
async fn round_robin_over_two_members_across_three_connections() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let a = Recorder { name: "a", tx: tx.clone(), echo: false }.start();
    let b = Recorder { name: "b", tx, echo: false }.start();
    let pool = Pool::new([a, b]).unwrap();
    let srv = serve(WsHandler::new(HandlerOptions::new(pool)).unwrap());
    let mut order = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(tungstenite(&srv.url()).await);
        match next(&mut rx).await {
            (name, Event::Connect(_)) => order.push(name),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(order, ["a", "b", "a"]);
    // Each connection keeps its target: a message on the second goes to b.
    clients[1].send(TMessage::text("to b")).await.unwrap();
    match next(&mut rx).await {
        ("b", Event::Message(m)) => assert_eq!(m.as_text(), Some("to b")),
        other => panic!("{other:?}"),
    }
}

#[actix_web::test]
async fn connect_echo_close_in_order_with_the_same_id() {
    let (worker, mut rx) = recorder("w", true);
    let srv = serve(WsHandler::new(options(worker)).unwrap());
    let mut ws = tungstenite(&format!("{}?room=7", srv.url())).await;

    let id = match next(&mut rx).await.1 {
        Event::Connect(c) => {
            assert_eq!(c.uri, "/ws?room=7");
            assert_eq!(c.local_addr, Some(srv.addr));
            assert_eq!(c.remote_addr.map(|a| a.ip()), Some(std::net::Ipv4Addr::LOCALHOST.into()));
            assert!(!c.compressed);
            c.id
        }
        other => panic!("{other:?}"),
    };
    ws.send(TMessage::text("héllo")).await.unwrap();
    ws.send(TMessage::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    match next(&mut rx).await.1 {
        Event::Message(m) => {
            assert_eq!(&m.id, &id);
            assert_eq!((m.kind, m.as_text()), (MessageKind::Text, Some("héllo")));
        }
        other => panic!("{other:?}"),
    }
    match next(&mut rx).await.1 {
        Event::Message(m) => assert_eq!((m.kind, &m.body[..]), (MessageKind::Binary, &[0u8, 1, 2, 255][..])),
        other => panic!("{other:?}"),
    }
    assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text("héllo"));
    assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::binary(vec![0u8, 1, 2, 255]));

    let stats = id.stats().await.unwrap();
    assert_eq!((stats.traffic.messages_in, stats.traffic.messages_out), (2, 2));
    assert!(stats.traffic.bytes_in > 0 && stats.traffic.bytes_out > 0);
    assert_eq!(stats.local_addr, Some(srv.addr));

    ws.close(Some(CloseFrame { code: TCloseCode::Library(4001), reason: "done".into() })).await.unwrap();
    // The server echoes the close and ends the TCP connection.
    loop {
        match ws.next().await {
            Some(Ok(TMessage::Close(Some(f)))) => assert_eq!(u16::from(f.code), 4001),
            Some(Ok(other)) => panic!("{other:?}"),
            Some(Err(_)) | None => break,
        }
    }
    let d = next_disconnect(&mut rx).await;
    assert_eq!(d.id, id);
    assert_eq!(
        d.reason,
        DisconnectReason::Closed { initiator: Initiator::Peer, code: CloseCode(4001), reason: "done".into() }
    );
    assert!(!id.is_connected() || id.stats().await.is_err());
}

#[actix_web::test]
async fn writes_by_id_with_every_kind() {
    let (worker, mut rx) = recorder("w", false);
    let srv = serve(WsHandler::new(options(worker)).unwrap());
    let mut ws = tungstenite(&srv.url()).await;
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    c.id.send(Outgoing::default()); // unset kind: text, empty
    c.id.send_wait(Outgoing::binary(&b"\x00bin"[..])).await.unwrap();
    c.id.send(Outgoing::ping(&b"p"[..]));
    assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text(""));
    assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::binary(&b"\x00bin"[..]));
    assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::Ping(bytes::Bytes::from_static(b"p")));
    // Invalid outgoing messages are refused to the awaiting sender, not sent.
    let bad_text = Outgoing { kind: MessageKind::Text, body: bytes::Bytes::from_static(b"\xff") };
    assert!(matches!(c.id.send_wait(bad_text).await, Err(WriteError::Invalid(_))));
    assert!(matches!(c.id.send_wait(Outgoing::ping(vec![0u8; 126])).await, Err(WriteError::Invalid(_))));
    // Close from our side with a code and reason.
    c.id.send_wait(Outgoing::close(4002, "bye")).await.unwrap();
    match ws.next().await.unwrap().unwrap() {
        TMessage::Close(Some(f)) => assert_eq!((u16::from(f.code), f.reason.as_str()), (4002, "bye")),
        other => panic!("{other:?}"),
    }
    drop(ws); // tungstenite answered the close when it read it
    let d = next_disconnect(&mut rx).await;
    assert_eq!(
        d.reason,
        DisconnectReason::Closed { initiator: Initiator::Local, code: CloseCode(4002), reason: "bye".into() }
    );
    assert_eq!(c.id.send_wait(Outgoing::text("late")).await, Err(WriteError::Closed));
}

#[actix_web::test]
async fn a_prepared_broadcast_reaches_plain_and_compressed_peers_in_order() {
    // One server accepting permessage-deflate; a plain peer gets the shared frame, a
    // compressing peer (our client) gets the message compressed for its own context.
    let (worker, mut rx) = recorder("w", false);
    let srv = serve(WsHandler::new(options(worker).compression(true)).unwrap());
    let mut plain = tungstenite(&srv.url()).await;
    let Event::Connect(a) = next(&mut rx).await.1 else { panic!() };
    let (client_worker, mut crx) = recorder("c", false);
    let opts = DialOptions::new(url::Url::parse(&srv.url()).unwrap(), Target::from_addr(client_worker))
        .compression(true);
    connect(opts).await.unwrap();
    let Event::Connect(b) = next(&mut rx).await.1 else { panic!() };
    let Event::Connect(cc) = next(&mut crx).await.1 else { panic!() };
    assert!(!a.compressed && b.compressed && cc.compressed);

    let big: String = (0..20_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let prepared = [PreparedMessage::text(big.clone()), PreparedMessage::binary(vec![1u8, 2, 3])];
    for id in [&a.id, &b.id] {
        id.send(Outgoing::text("before"));
        for p in &prepared {
            id.send_prepared(p);
        }
        id.send(Outgoing::text("after"));
    }
    let want = [
        TMessage::text("before"),
        TMessage::text(big.clone()),
        TMessage::binary(vec![1u8, 2, 3]),
        TMessage::text("after"),
    ];
    for w in &want {
        assert_eq!(&plain.next().await.unwrap().unwrap(), w);
    }
    let want_ours = [
        Outgoing::text("before"),
        Outgoing::text(big),
        Outgoing::binary(vec![1u8, 2, 3]),
        Outgoing::text("after"),
    ];
    for w in &want_ours {
        let Event::Message(got) = next(&mut crx).await.1 else { panic!("expected a message") };
        assert_eq!((got.kind, &got.body), (w.kind, &w.body));
    }
    // The compressed peer really got compressed frames: far fewer bytes than the text.
    assert!(b.id.stats().await.unwrap().traffic.bytes_out < 5_000);
    assert!(a.id.stats().await.unwrap().traffic.bytes_out > 20_000);
}

#[actix_web::test]
async fn http_failures_have_the_right_status() {
    let (worker, _rx) = recorder("w", false);
    let handler = WsHandler::new(options(worker)).unwrap();
    let srv = serve(handler.clone());
    let a = srv.addr;
    let cases: Vec<(String, u16)> = vec![
        (format!("GET /ws HTTP/1.1\r\nHost: {a}\r\n\r\n"), 400),
        (format!("GET /ws HTTP/1.1\r\nHost: {a}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"), 400),
        (upgrade_request(a, "").replace(KEY, "not-a-key"), 400),
        (upgrade_request(a, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"), 400), // repeated key
        (upgrade_request(a, "").replace("GET", "POST").replace("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n"), 405),
        (upgrade_request(a, "").replace("Version: 13", "Version: 8"), 426),
        (upgrade_request(a, "Origin: http://evil.example\r\n"), 403),
    ];
    for (req, want) in cases {
        let (status, head, ..) = http_request(a, &req).await;
        assert_eq!(status, want, "{req}\n=> {head}");
        if want == 426 {
            assert!(head.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{head}");
        }
    }
    // Same origin is fine by default.
    RawClient::connect(a, &format!("Origin: http://{a}\r\n")).await;
}

#[actix_web::test]
async fn origin_predicate_allows_cross_origin() {
    let (worker, _rx) = recorder("w", false);
    let opts = options(worker).check_origin(|req| {
        req.headers().get("origin").is_some_and(|o| o.as_bytes() == b"https://app.example")
    });
    let srv = serve(WsHandler::new(opts).unwrap());
    RawClient::connect(srv.addr, "Origin: https://app.example\r\n").await;
    let (status, ..) =
        http_request(srv.addr, &upgrade_request(srv.addr, "Origin: https://other.example\r\n")).await;
    assert_eq!(status, 403);
}

#[actix_web::test]
async fn no_live_pool_member_gives_503() {
    let (worker, _rx) = recorder("w", false);
    let srv = serve(WsHandler::new(options(worker.clone())).unwrap());
    let _ = worker.send(StopRecorder).await;
    let (status, ..) = http_request(srv.addr, &upgrade_request(srv.addr, "")).await;
    assert_eq!(status, 503);
}

#[derive(actix::Message)]
#[rtype(result = "()")]
struct StopRecorder;
impl actix::Handler<StopRecorder> for Recorder {
    type Result = ();
    fn handle(&mut self, _: StopRecorder, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[actix_web::test]
async fn subprotocol_and_compression_are_negotiated() {
    let (worker, mut rx) = recorder("w", true);
    let opts = options(worker).protocols(["v2", "v1"]).compression(true);
    let srv = serve(WsHandler::new(opts).unwrap());
    let (mut raw, head) = RawClient::connect(
        srv.addr,
        "Sec-WebSocket-Protocol: v1, v2\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    .await;
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("sec-websocket-protocol: v2"), "{head}");
    assert!(lower.contains("sec-websocket-extensions: permessage-deflate"), "{head}");
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    assert_eq!(c.protocol.as_deref(), Some("v2"));
    assert!(c.compressed);
    // RFC 7692 7.2.3.1: compressed "Hello", masked, RSV1 set; the echo comes back compressed
    // or not (below the threshold), and decodes to the same text either way.
    raw.decoder = actix_meta_websocket::protocol::Decoder::new(
        actix_meta_websocket::protocol::Role::Client,
        Default::default(),
        Some(&Default::default()),
    );
    raw.send_raw(&client_frame(true, 0b100, 1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])).await;
    assert_eq!(raw.recv().await, Some(Incoming::Text("Hello".into())));
    let big = "compress me ".repeat(100);
    let mut enc = actix_meta_websocket::protocol::Encoder::new(
        actix_meta_websocket::protocol::Role::Client,
        Some(&Default::default()),
        6,
        0,
    );
    let mut wire = bytes::BytesMut::new();
    enc.encode_message(actix_meta_websocket::protocol::DataKind::Text, big.as_bytes(), &mut wire).unwrap();
    assert!(wire.len() < big.len() / 4);
    raw.send_raw(&wire).await;
    assert_eq!(raw.recv().await, Some(Incoming::Text(big.clone().into())));
    let stats = c.id.stats().await.unwrap();
    assert!(stats.traffic.bytes_out < big.len() as u64 / 4, "echo was not compressed: {stats:?}");
}

async fn violation(payload_frames: Vec<u8>, want: CloseCode, check: impl Fn(&ProtocolError) -> bool) {
    let (worker, mut rx) = recorder("w", false);
    let mut opts = options(worker);
    opts.settings.limits.max_frame_size = 1024;
    opts.settings.limits.max_message_size = 4096;
    let srv = serve(WsHandler::new(opts).unwrap());
    let (mut raw, _) = RawClient::connect(srv.addr, "").await;
    raw.send_raw(&payload_frames).await;
    assert_eq!(raw.expect_close().await, want.0);
    let d = next_disconnect(&mut rx).await;
    match &d.reason {
        DisconnectReason::Protocol { code, error } => {
            assert_eq!(*code, want);
            assert!(check(error), "{error:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[actix_web::test]
async fn protocol_violations_close_with_their_code_and_reach_the_target() {
    let mut unmasked = vec![0x81, 0x02];
    unmasked.extend_from_slice(b"hi");
    violation(unmasked, CloseCode::PROTOCOL_ERROR, |e| *e == ProtocolError::UnmaskedFrame).await;
    violation(client_frame(true, 0, 3, b""), CloseCode::PROTOCOL_ERROR, |e| {
        *e == ProtocolError::ReservedOpcode(3)
    })
    .await;
    violation(client_frame(true, 0b010, 1, b"x"), CloseCode::PROTOCOL_ERROR, |e| {
        matches!(e, ProtocolError::ReservedBits(_))
    })
    .await;
    violation(client_frame(true, 0, 1, b"\xce\xba\xff"), CloseCode::INVALID_PAYLOAD, |e| {
        *e == ProtocolError::InvalidUtf8
    })
    .await;
    violation(client_frame(true, 0, 2, &[0; 2000]), CloseCode::MESSAGE_TOO_BIG, |e| {
        matches!(e, ProtocolError::FrameTooLarge { .. })
    })
    .await;
    let mut many = Vec::new();
    for i in 0..5 {
        many.extend(client_frame(false, 0, if i == 0 { 2 } else { 0 }, &[0; 1000]));
    }
    violation(many, CloseCode::MESSAGE_TOO_BIG, |e| matches!(e, ProtocolError::MessageTooLarge { .. })).await;
    violation(client_frame(true, 0, 8, b"\x03\xed"), CloseCode::PROTOCOL_ERROR, |e| {
        *e == ProtocolError::InvalidCloseCode(1005)
    })
    .await;
}

#[actix_web::test]
async fn answers_to_messages_before_a_violation_or_close_go_out_first() {
    // The worker on another thread, as in a server whose pool lives on the main arbiter:
    // its echo and its "handled" answer race to the connection.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let arbiter = actix::Arbiter::new();
    let worker =
        Recorder::start_in_arbiter(&arbiter.handle(), move |_| Recorder { name: "w", tx, echo: true });
    let srv = serve(WsHandler::new(options(worker)).unwrap());
    // One write: a text message, then `after`; the echo must come before our close `code`.
    let message_then = |text: &'static [u8], after: Vec<u8>, code: u16, round: usize| async move {
        let (mut raw, _) = RawClient::connect(srv.addr, "").await;
        let mut bytes = client_frame(true, 0, 1, text);
        bytes.extend(after);
        raw.send_raw(&bytes).await;
        assert_eq!(raw.recv().await, Some(Incoming::Text(bytes::Bytes::from_static(text))), "round {round}");
        assert_eq!(raw.expect_close().await, code);
    };
    for round in 0..20 {
        // Autobahn 3.2: a valid message, then a frame with a reserved bit.
        message_then(b"first", client_frame(true, 2, 1, b"bad rsv"), 1002, round).await;
        // A message, then the peer's close: the echo still goes out before our close.
        message_then(b"last words", client_frame(true, 0, 8, &1000u16.to_be_bytes()), 1000, round).await;
    }
    let mut disconnects = 0;
    while disconnects < 40 {
        if let (_, Event::Disconnect(_)) = next(&mut rx).await {
            disconnects += 1;
        }
    }
    arbiter.stop();
}

#[actix_web::test]
async fn idle_timeout_closes_a_silent_peer() {
    let (worker, mut rx) = recorder("w", false);
    let mut opts = options(worker);
    opts.settings.heartbeat = None;
    opts.settings.idle_timeout = Some(Duration::from_millis(300));
    let srv = serve(WsHandler::new(opts).unwrap());
    let (mut raw, _) = RawClient::connect(srv.addr, "").await;
    assert_eq!(
        raw.recv().await,
        Some(Incoming::Close(Some(actix_meta_websocket::protocol::CloseFrame {
            code: CloseCode::GOING_AWAY,
            reason: "idle timeout".into()
        })))
    );
    raw.send_raw(&client_frame(true, 0, 8, b"\x03\xe9")).await;
    assert_eq!(next_disconnect(&mut rx).await.reason, DisconnectReason::IdleTimeout);
}

#[actix_web::test]
async fn heartbeat_pings_keep_an_answering_peer_alive() {
    let (worker, mut rx) = recorder("w", false);
    let mut opts = options(worker);
    opts.settings.heartbeat = Some(Duration::from_millis(50));
    opts.settings.idle_timeout = Some(Duration::from_millis(400));
    let srv = serve(WsHandler::new(opts).unwrap());
    let mut ws = tungstenite(&srv.url()).await;
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    // tungstenite answers pings while we read; ten of them outlast the idle timeout.
    let mut pings = 0;
    let started = std::time::Instant::now();
    while pings < 10 {
        match ws.next().await.unwrap().unwrap() {
            TMessage::Ping(_) => pings += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(started.elapsed() > Duration::from_millis(400));
    assert!(c.id.is_connected());
}

/// A target that holds every message until released, to model a slow worker; with
/// `connect_gate`, its `MessageConnect` handler also blocks its thread until the test
/// opens that gate.
struct Gate {
    release: std::sync::Arc<tokio::sync::Semaphore>,
    tx: tokio::sync::mpsc::UnboundedSender<(&'static str, Event)>,
    connect_gate: Option<std::sync::mpsc::Receiver<()>>,
}
impl Actor for Gate {
    type Context = Context<Self>;
}
impl actix::Handler<MessageConnect> for Gate {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        if let Some(gate) = &self.connect_gate {
            let _ = gate.recv();
        }
        let _ = self.tx.send(("gate", Event::Connect(m)));
    }
}
impl actix::Handler<WsMessage> for Gate {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) -> Self::Result {
        let release = self.release.clone();
        let tx = self.tx.clone();
        Box::pin(async move {
            release.acquire().await.expect("semaphore").forget();
            let _ = tx.send(("gate", Event::Message(m)));
        })
    }
}
impl actix::Handler<MessageDisconnect> for Gate {
    type Result = ();
    fn handle(&mut self, m: MessageDisconnect, _: &mut Context<Self>) {
        let _ = self.tx.send(("gate", Event::Disconnect(m)));
    }
}

#[actix_web::test]
async fn a_slow_target_slows_the_reading_instead_of_buffering() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let gate = Gate { release: release.clone(), tx, connect_gate: None }.start();
    let mut opts = HandlerOptions::new(Target::from_addr(gate));
    opts.settings.max_in_flight = 4;
    let srv = serve(WsHandler::new(opts).unwrap());
    let (mut raw, _) = RawClient::connect(srv.addr, "").await;
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };

    // 32 MiB in 64 KiB messages; the writer must block long before it is all sent.
    let frame = client_frame(true, 0, 2, &vec![7u8; 64 * 1024]);
    let writer = actix_rt::spawn(async move {
        let mut sent = 0usize;
        for _ in 0..512 {
            if tokio::time::timeout(Duration::from_secs(1), raw.send_raw(&frame)).await.is_err() {
                return (sent, raw);
            }
            sent += 1;
        }
        (sent, raw)
    });
    let (sent, raw) = writer.await.unwrap();
    assert!(sent < 512, "the peer wrote everything: nothing pushed back");
    let stats = c.id.stats().await.unwrap();
    assert_eq!(stats.traffic.messages_in, 4, "only the window's messages have been taken");
    // Read ahead: at most a partial message plus one chunk of actix-web's reader (whose
    // buffer stops at 128 KiB), nowhere near the 32 MiB the peer wanted to send.
    assert!(stats.buffers.incoming <= 256 * 1024, "{stats:?}");
    // Released, the target receives everything that was sent, in order.
    release.add_permits(10_000);
    let mut got = 0;
    while got < sent.min(8) {
        if let (_, Event::Message(m)) = next(&mut rx).await {
            assert_eq!(m.body.len(), 64 * 1024);
            got += 1;
        }
    }
    drop(raw);
}

/// A connection (256 KiB outgoing bound, 300 ms write and close timeouts) whose raw peer
/// never reads.
async fn stuck_peer() -> (Events, MessageConnect, RawClient, TestServer) {
    let (worker, mut rx) = recorder("w", false);
    let mut opts = options(worker);
    opts.settings.max_write_buffer = 256 * 1024;
    opts.settings.write_timeout = Duration::from_millis(300);
    opts.settings.close_timeout = Duration::from_millis(300);
    let srv = serve(WsHandler::new(opts).unwrap());
    let (raw, _) = RawClient::connect(srv.addr, "").await;
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    (rx, c, raw, srv)
}

#[actix_web::test]
async fn a_stuck_peer_hits_the_outgoing_bound() {
    let (mut rx, c, raw, _srv) = stuck_peer().await;
    let chunk = bytes::Bytes::from(vec![1u8; 64 * 1024]);
    let mut accepted = 0usize;
    let err = loop {
        match c.id.send_wait(Outgoing::binary(chunk.clone())).await {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 10_000, "never pushed back");
    };
    assert_eq!(err, WriteError::SlowConsumer);
    assert_eq!(next_disconnect(&mut rx).await.reason, DisconnectReason::SlowConsumer);
    drop(raw);
}

#[actix_web::test]
async fn fire_and_forget_writes_to_a_stuck_peer_stay_bounded_then_close() {
    let (mut rx, c, raw, _srv) = stuck_peer().await;
    let chunk = bytes::Bytes::from(vec![1u8; 64 * 1024]);
    // 64 MiB offered without waiting: the connection must neither buffer it all nor
    // lose it silently; it closes as a slow consumer.
    for _ in 0..1024 {
        c.id.send(Outgoing::binary(chunk.clone()));
    }
    let stats = c.id.stats().await;
    if let Ok(stats) = stats {
        // Buffer, transport and queue together stay near twice the bound, not 64 MiB.
        assert!(stats.buffers.outgoing <= 2 * 256 * 1024 + 64 * 1024 + 4096, "{stats:?}");
    }
    assert_eq!(next_disconnect(&mut rx).await.reason, DisconnectReason::SlowConsumer);
    drop(raw);
}

#[actix_web::test]
async fn a_burst_larger_than_the_buffer_reaches_a_reading_peer() {
    // Echoing a 3 MiB message through a 1 MiB buffer, then small ones: the echoes wait
    // for the peer to read instead of counting it as a slow consumer.
    // The write timeout is far beyond the 10 s each read may take, so a connection that
    // misses the moment its buffer drains fails here instead of waking on that timer.
    for (size, fragment_size) in [(3 << 20, None), (1 << 20, Some(4096))] {
        let (worker, mut rx) = recorder("w", true);
        let mut opts = options(worker);
        opts.settings.write_timeout = Duration::from_secs(60);
        opts.settings.fragment_size = fragment_size;
        let srv = serve(WsHandler::new(opts).unwrap());
        let mut ws = tungstenite(&srv.url()).await;
        let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
        let big = vec![9u8; size];
        ws.feed(TMessage::binary(big.clone())).await.unwrap();
        for i in 0..50 {
            ws.feed(TMessage::text(format!("small {i}"))).await.unwrap();
        }
        ws.flush().await.unwrap();
        let mut want = vec![TMessage::binary(big)];
        want.extend((0..50).map(|i| TMessage::text(format!("small {i}"))));
        for w in want {
            let got = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("echo stalled");
            assert_eq!(got.unwrap().unwrap(), w);
        }
        assert!(c.id.is_connected());
        assert_eq!(c.id.stats().await.unwrap().traffic.messages_out, 51);
    }
}

#[actix_web::test]
async fn message_connect_comes_first_even_when_its_handler_is_slow() {
    // One actor: MessageConnect is queued first in its mailbox. Different actors: the
    // connection must not hand the message over before MessageConnect was handled.
    for one_actor in [true, false] {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (open, gate_rx) = std::sync::mpsc::channel();
        let arbiter = actix::Arbiter::new();
        let gate_tx = tx.clone();
        // Messages pass at once: only MessageConnect is held.
        let release = std::sync::Arc::new(tokio::sync::Semaphore::new(tokio::sync::Semaphore::MAX_PERMITS));
        let gate = Gate::start_in_arbiter(&arbiter.handle(), move |_| Gate {
            release,
            tx: gate_tx,
            connect_gate: Some(gate_rx),
        });
        let target = if one_actor {
            Target::from_addr(gate)
        } else {
            let recorder = Recorder { name: "recorder", tx, echo: false }.start();
            Target::from_recipients(gate.recipient(), recorder.clone().recipient(), recorder.recipient())
        };
        let srv = serve(WsHandler::new(HandlerOptions::new(target)).unwrap());
        let (mut raw, _) = RawClient::connect(srv.addr, "").await;
        raw.send_raw(&client_frame(true, 0, 1, b"at once")).await;
        // Nothing may arrive while MessageConnect is being handled: a negative check, so
        // a bounded wait (loopback delivers in well under a millisecond).
        let early = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
        assert!(early.is_err(), "one_actor={one_actor}: {early:?} before MessageConnect was handled");
        open.send(()).unwrap();
        assert!(matches!(next(&mut rx).await, ("gate", Event::Connect(_))), "one_actor={one_actor}");
        match next(&mut rx).await {
            (_, Event::Message(m)) => assert_eq!(m.as_text(), Some("at once"), "one_actor={one_actor}"),
            other => panic!("one_actor={one_actor}: {other:?}"),
        }
        arbiter.stop();
    }
}

#[actix_web::test]
async fn a_stopped_target_gives_1011_and_a_disconnect() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let observer = Recorder { name: "observer", tx: tx.clone(), echo: false }.start();
    let dying = Recorder { name: "dying", tx, echo: false }.start();
    let target = Target::from_recipients(
        observer.clone().recipient(),
        dying.clone().recipient(),
        observer.recipient(),
    );
    let mut opts = HandlerOptions::new(target);
    // Far beyond `next`'s 10 s: the disconnect must come from reading the peer's close.
    opts.settings.close_timeout = Duration::from_secs(60);
    // A full window when the target dies must not stop the reading.
    opts.settings.max_in_flight = 1;
    let srv = serve(WsHandler::new(opts).unwrap());
    let (mut raw, _) = RawClient::connect(srv.addr, "").await;
    let Event::Connect(_) = next(&mut rx).await.1 else { panic!() };
    dying.send(StopRecorder).await.unwrap();
    raw.send_raw(&client_frame(true, 0, 1, b"anyone there?")).await;
    assert_eq!(
        raw.recv().await,
        Some(Incoming::Close(Some(actix_meta_websocket::protocol::CloseFrame {
            code: CloseCode::INTERNAL_ERROR,
            reason: "target gone".into()
        })))
    );
    raw.send_raw(&client_frame(true, 0, 8, b"\x03\xf3")).await;
    assert_eq!(next_disconnect(&mut rx).await.reason, DisconnectReason::TargetGone);
    assert_eq!(raw.recv().await, None, "the server ends TCP after the handshake");
}

#[actix_web::test]
async fn shutdown_closes_with_1001_disconnects_all_and_refuses_new() {
    let (worker, mut rx) = recorder("w", false);
    let handler = WsHandler::new(options(worker)).unwrap();
    let srv = serve(handler.clone());
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(tungstenite(&srv.url()).await);
        let Event::Connect(_) = next(&mut rx).await.1 else { panic!() };
    }
    assert_eq!(handler.connections(), 3);
    let shutdown = actix_rt::spawn(handler.shutdown());
    for ws in &mut clients {
        match ws.next().await.unwrap().unwrap() {
            TMessage::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001),
            other => panic!("{other:?}"),
        }
    }
    shutdown.await.unwrap();
    for _ in 0..3 {
        assert_eq!(next_disconnect(&mut rx).await.reason, DisconnectReason::Shutdown);
    }
    assert_eq!(handler.connections(), 0);
    let (status, ..) = http_request(srv.addr, &upgrade_request(srv.addr, "")).await;
    assert_eq!(status, 503);
}

#[actix_web::test]
async fn pipelined_messages_reach_a_busy_target_complete_and_in_order() {
    // All messages in one write: batches end when the window is full.
    busy_target_keeps_order(32).await;
    // A window wider than the pump's budget per poll: batches end when the pump yields, so
    // several hand-overs await answers while the target's mailbox is full and its shared
    // sender parked, and reading goes on behind them.
    busy_target_keeps_order(10_000).await;
}

async fn busy_target_keeps_order(max_in_flight: usize) {
    // A mailbox of one makes actix park senders: the window's ordered hand-over must hold
    // even then, for every connection sharing the target.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = Recorder::create(|ctx| {
        ctx.set_mailbox_capacity(1);
        Recorder { name: "w", tx, echo: true }
    });
    let mut opts = options(worker);
    opts.settings.max_in_flight = max_in_flight;
    let srv = serve(WsHandler::new(opts).unwrap());
    const CONNS: usize = 4;
    const EACH: usize = 1000;
    let mut clients = Vec::new();
    for c in 0..CONNS {
        let mut ws = tungstenite(&srv.url()).await;
        for n in 0..EACH {
            ws.feed(TMessage::text(format!("{c}-{n}"))).await.unwrap();
        }
        ws.flush().await.unwrap();
        clients.push(ws);
    }
    // The peer reads its echoes in the order it sent them.
    for (c, ws) in clients.iter_mut().enumerate() {
        for n in 0..EACH {
            let got =
                tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
            assert_eq!(got, TMessage::text(format!("{c}-{n}")));
        }
    }
    // And the target saw each connection's messages in order, none missing.
    let mut seen: std::collections::HashMap<u64, usize> = Default::default();
    let mut total = 0;
    while total < CONNS * EACH {
        if let (_, Event::Message(m)) = next(&mut rx).await {
            let seq = m.id.seq();
            let n: usize = m.as_text().unwrap().split_once('-').unwrap().1.parse().unwrap();
            let expected = seen.entry(seq).or_default();
            assert_eq!(n, *expected, "connection {seq} out of order");
            *expected += 1;
            total += 1;
        }
    }
    assert_eq!(seen.len(), CONNS);
}
