//! The server half over real loopback sockets, its ordinary paths: routing over the pool,
//! connect / messages / disconnect in order, writes by id, broadcasts, HTTP answers to bad
//! upgrades, origin and subprotocol and compression negotiation. An independent client
//! (tokio-tungstenite) for the ordinary paths, a raw TCP peer for bytes no polite client
//! sends. The server under pressure is in `server_flow.rs`.

mod common;

use actix::Actor;
use actix_meta_websocket::protocol::{CloseCode, Incoming};
use actix_meta_websocket::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as TCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as TMessage;

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
