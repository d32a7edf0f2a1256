//! Hostile peers over loopback: each case asserts the close code or HTTP status, the
//! memory bound it relies on, and the disconnect reason the target receives. Each also
//! records what it measured in target/reliability/ for RELIABILITY.md.

mod common;

use std::time::{Duration, Instant};

use actix_meta_websocket::protocol::{
    CloseCode, DataKind, DeflateParams, Encoder, Incoming, ProtocolError, Role,
};
use actix_meta_websocket::*;
use common::reliability::record;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn limited(max_frame: usize, max_message: usize) -> (HandlerOptions, Events) {
    let (worker, rx) = recorder("w", false);
    let mut opts = options(worker);
    opts.settings.limits.max_frame_size = max_frame;
    opts.settings.limits.max_message_size = max_message;
    (opts, rx)
}

#[actix_web::test]
async fn slow_headers_are_cut_by_the_handshake_timeout() {
    let (worker, _rx) = recorder("w", false);
    let handler = WsHandler::new(options(worker).handshake_timeout(Duration::from_millis(500))).unwrap();
    let srv = serve(handler);
    let mut tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let request = upgrade_request(srv.addr, "");
    let started = Instant::now();
    let mut sent = 0;
    // One byte every 50 ms: the whole head would take ~9 s.
    for b in request.bytes() {
        if tcp.write_all(&[b]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(sent < request.len(), "the whole head went through");
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    record(
        "slow_headers",
        "request head sent one byte per 50 ms; handshake timeout 500 ms",
        &[
            ("bytes_sent_before_cut", sent.to_string()),
            ("answer", text.lines().next().unwrap_or("EOF").into()),
        ],
    );
}

#[actix_web::test]
async fn garbage_and_oversized_requests_get_4xx() {
    let (worker, _rx) = recorder("w", false);
    let srv = serve(WsHandler::new(options(worker)).unwrap());
    let (status, ..) = http_request(srv.addr, "\x16\x03\x01garbage\r\n\r\n").await;
    assert_eq!(status, 400);
    // A 1 MiB header: actix-web refuses heads past its buffer limit.
    let huge = format!("X-Big: {}\r\n", "a".repeat(1 << 20));
    let (status, ..) = http_request(srv.addr, &upgrade_request(srv.addr, &huge)).await;
    assert!(status == 431 || status == 400, "{status}");
    // Hundreds of headers: more than the parser takes.
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (many_status, ..) = http_request(srv.addr, &upgrade_request(srv.addr, &many)).await;
    assert!(many_status == 431 || many_status == 400, "{many_status}");
    record(
        "garbage_requests",
        "TLS bytes as a request line; a 1 MiB header; 500 headers",
        &[
            ("oversized_header_status", status.to_string()),
            ("too_many_headers_status", many_status.to_string()),
        ],
    );
}

#[actix_web::test]
async fn a_2_pow_63_frame_is_refused_from_its_header() {
    let (opts, mut rx) = limited(1 << 20, 4 << 20);
    let srv = serve(WsHandler::new(opts).unwrap());
    let (mut raw, _) = RawClient::connect(srv.addr, "").await;
    raw.send_raw(&[0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4]).await;
    assert_eq!(raw.expect_close().await, 1009);
    let d = next_disconnect(&mut rx).await;
    assert!(
        matches!(d.reason, DisconnectReason::Protocol { error: ProtocolError::FrameTooLarge { .. }, .. }),
        "{:?}",
        d.reason
    );
    record("frame_2_pow_63", "header announcing 2^63-1 bytes", &[("close", "1009".into())]);
}

#[actix_web::test]
async fn a_huge_message_in_small_fragments_stops_at_the_limit() {
    let limit = 1 << 20;
    let (opts, mut rx) = limited(64 * 1024, limit);
    let srv = serve(WsHandler::new(opts).unwrap());
    let (raw, _) = RawClient::connect(srv.addr, "").await;
    let (mut rd, mut wr) = raw.stream.into_split();
    // Up to 1 GiB in 1 KiB fragments; the server must close long before.
    let writer = actix_rt::spawn(async move {
        let mut sent = 0usize;
        let first = client_frame(false, 0, 2, &[0u8; 1024]);
        let next = client_frame(false, 0, 0, &[0u8; 1024]);
        while sent < 1 << 30 {
            let f = if sent == 0 { &first } else { &next };
            if wr.write_all(f).await.is_err() {
                break;
            }
            sent += 1024;
        }
        sent
    });
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut seen)).await;
    assert!(
        seen.windows(4).any(|w| w == [0x88, 0x02, 0x03, 0xf1]) || seen.windows(2).any(|w| w == [0x03, 0xf1]),
        "no 1009 close"
    );
    let sent = writer.await.unwrap();
    assert!(sent < 64 << 20, "the peer could send {sent} bytes");
    let d = next_disconnect(&mut rx).await;
    assert!(
        matches!(d.reason, DisconnectReason::Protocol { error: ProtocolError::MessageTooLarge { .. }, .. }),
        "{:?}",
        d.reason
    );
    record(
        "huge_fragmented_message",
        "1 GiB offered in 1 KiB fragments; message limit 1 MiB",
        &[("bytes_the_peer_could_write", sent.to_string())],
    );
}

#[actix_web::test]
async fn a_deflate_bomb_is_stopped_at_the_inflated_limit() {
    let (worker, mut rx) = recorder("w", false);
    let mut opts = options(worker).compression(true);
    opts.settings.limits.max_message_size = 1 << 20;
    let srv = serve(WsHandler::new(opts).unwrap());
    let (mut raw, _) = RawClient::connect(srv.addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    let mut enc = Encoder::new(Role::Client, Some(&DeflateParams::default()), 9, 0);
    let mut bomb = bytes::BytesMut::new();
    enc.encode_message(DataKind::Binary, &vec![0u8; 256 << 20], &mut bomb).unwrap();
    let wire = bomb.len();
    raw.send_raw(&bomb).await;
    assert_eq!(raw.expect_close().await, 1009);
    let d = next_disconnect(&mut rx).await;
    assert!(
        matches!(d.reason, DisconnectReason::Protocol { error: ProtocolError::MessageTooLarge { .. }, .. }),
        "{:?}",
        d.reason
    );
    assert!(c.id.stats().await.is_err(), "the connection is gone");
    record(
        "deflate_bomb",
        "256 MiB of zeros compressed; inflated-size limit 1 MiB",
        &[
            ("bytes_on_the_wire", wire.to_string()),
            ("inflated_before_refusal_at_most", (1 << 20).to_string()),
        ],
    );
}

#[actix_web::test]
async fn bad_utf8_split_across_fragments_fails_fast() {
    let (worker, mut rx) = recorder("w", false);
    let srv = serve(WsHandler::new(options(worker)).unwrap());
    let (mut raw, _) = RawClient::connect(srv.addr, "").await;
    // "κ" split, then an invalid continuation; the message is never finished.
    raw.send_raw(&client_frame(false, 0, 1, b"ok \xce")).await;
    raw.send_raw(&client_frame(false, 0, 0, b"\x41")).await;
    assert_eq!(raw.expect_close().await, 1007);
    let d = next_disconnect(&mut rx).await;
    assert_eq!(d.reason.code(), CloseCode::INVALID_PAYLOAD);
    record(
        "utf8_across_fragments",
        "invalid sequence split over two fragments of an unfinished message",
        &[("close", "1007".into())],
    );
}

#[actix_web::test]
async fn a_ping_flood_without_reading_stays_bounded() {
    let (worker, mut rx) = recorder("w", false);
    let mut opts = options(worker);
    opts.settings.max_write_buffer = 64 * 1024;
    let srv = serve(WsHandler::new(opts).unwrap());
    let (raw, _) = RawClient::connect(srv.addr, "").await;
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    let (_rd, mut wr) = raw.stream.into_split(); // never read: pongs pile up at the server
    let ping = client_frame(true, 0, 9, &[7u8; 125]);
    let mut batch = Vec::new();
    for _ in 0..1000 {
        batch.extend_from_slice(&ping);
    }
    let mut sent = 0usize;
    for _ in 0..1000 {
        match tokio::time::timeout(Duration::from_millis(500), wr.write_all(&batch)).await {
            Ok(Ok(())) => sent += 1000,
            _ => break, // the server stopped reading: TCP pushes back
        }
    }
    let stats = c.id.stats().await.unwrap();
    assert!(sent < 1_000_000, "a million pings went through without pushback");
    assert!(stats.buffers.outgoing <= 64 * 1024 + 64 * 1024 + 200, "{stats:?}");
    record(
        "ping_flood",
        "125-byte pings sent without ever reading the pongs; outgoing bound 64 KiB",
        &[
            ("pings_accepted_before_pushback", sent.to_string()),
            ("server_buffered_out_bytes", stats.buffers.outgoing.to_string()),
        ],
    );
}

#[actix_web::test]
async fn a_vanished_peer_is_noticed() {
    let (worker, mut rx) = recorder("w", false);
    let srv = serve(WsHandler::new(options(worker)).unwrap());
    let (raw, _) = RawClient::connect(srv.addr, "").await;
    let Event::Connect(_) = next(&mut rx).await.1 else { panic!() };
    // An RST instead of a close: linger 0 then drop.
    let std_stream = raw.stream.into_std().unwrap();
    socket_linger_zero(&std_stream);
    let started = Instant::now();
    drop(std_stream);
    let d = next_disconnect(&mut rx).await;
    assert!(matches!(d.reason, DisconnectReason::ConnectionLost(_)), "{:?}", d.reason);
    assert_eq!(d.reason.code(), CloseCode::ABNORMAL);
    record(
        "peer_reset",
        "peer socket reset without a close frame",
        &[("detected_after_ms", started.elapsed().as_millis().to_string())],
    );
}

/// A worker that stops when told; under a Supervisor it is restarted at the same address.
struct Fragile {
    tx: tokio::sync::mpsc::UnboundedSender<(&'static str, Event)>,
}
impl actix::Actor for Fragile {
    type Context = actix::Context<Self>;
}
impl actix::Supervised for Fragile {}
impl actix::Handler<MessageConnect> for Fragile {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut actix::Context<Self>) {
        let _ = self.tx.send(("fragile", Event::Connect(m)));
    }
}
impl actix::Handler<WsMessage> for Fragile {
    type Result = ();
    fn handle(&mut self, m: WsMessage, ctx: &mut actix::Context<Self>) {
        if m.as_text() == Some("crash") {
            actix::ActorContext::stop(ctx);
        }
        let _ = self.tx.send(("fragile", Event::Message(m)));
    }
}
impl actix::Handler<MessageDisconnect> for Fragile {
    type Result = ();
    fn handle(&mut self, m: MessageDisconnect, _: &mut actix::Context<Self>) {
        let _ = self.tx.send(("fragile", Event::Disconnect(m)));
    }
}

#[actix_web::test]
async fn a_supervised_worker_restarts_and_keeps_serving_its_connections() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = actix::Supervisor::start(move |_| Fragile { tx });
    let srv = serve(WsHandler::new(HandlerOptions::new(Target::from_addr(worker))).unwrap());
    let (mut raw, _) = RawClient::connect(srv.addr, "").await;
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    raw.send_raw(&client_frame(true, 0, 1, b"crash")).await;
    let Event::Message(m) = next(&mut rx).await.1 else { panic!() };
    assert_eq!(m.as_text(), Some("crash"));
    raw.send_raw(&client_frame(true, 0, 1, b"still here")).await;
    let Event::Message(m) = next(&mut rx).await.1 else { panic!() };
    assert_eq!((m.as_text(), &m.id), (Some("still here"), &c.id));
    record(
        "supervised_restart",
        "worker stops mid-stream under actix::Supervisor",
        &[("connection_kept", "yes".into())],
    );
}

/// Writes numbered messages with `send_wait` until refused; how many were accepted.
async fn write_numbers(id: ConnectionId) -> u64 {
    let mut acked = 0u64;
    loop {
        match id.send_wait(Outgoing::text(format!("{acked}"))).await {
            Ok(()) => acked += 1,
            Err(_) => return acked,
        }
        if acked.is_multiple_of(64) {
            actix_rt::task::yield_now().await;
        }
    }
}

/// Reads the numbers in order until the close; how many came, and the close's code.
async fn read_numbers(mut c: RawClient) -> (u64, Option<u16>) {
    let mut got = 0u64;
    loop {
        match c.recv().await {
            Some(Incoming::Text(t)) => {
                assert_eq!(t, got.to_string(), "messages arrive in order, none skipped");
                got += 1;
            }
            Some(Incoming::Close(f)) => return (got, f.map(|f| f.code.0)),
            Some(_) => {}
            None => return (got, None),
        }
    }
}

#[actix_web::test]
async fn shutdown_under_load_writes_everything_it_acknowledged() {
    let (worker, mut rx) = recorder("w", false);
    let handler = WsHandler::new(options(worker)).unwrap();
    let srv = serve(handler.clone());
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..10 {
        clients.push(RawClient::connect(srv.addr, "").await.0);
        let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
        ids.push(c.id);
    }
    // Writers count the accepted writes; readers what arrives before the 1001.
    let writers: Vec<_> = ids.into_iter().map(|id| actix_rt::spawn(write_numbers(id))).collect();
    let readers: Vec<_> = clients.into_iter().map(|c| actix_rt::spawn(read_numbers(c))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await; // let traffic build up: this is the load
    handler.shutdown().await;
    let mut total_acked = 0;
    let mut total_got = 0;
    for (w, r) in writers.into_iter().zip(readers) {
        let acked = w.await.unwrap();
        let (got, code) = r.await.unwrap();
        assert_eq!(code, Some(1001));
        assert!(got >= acked, "acknowledged {acked} but the peer got {got}");
        total_acked += acked;
        total_got += got;
    }
    for _ in 0..10 {
        assert_eq!(next_disconnect(&mut rx).await.reason, DisconnectReason::Shutdown);
    }
    assert!(total_acked > 0);
    record(
        "shutdown_under_load",
        "10 connections written with send_wait while the handler shuts down",
        &[("acknowledged", total_acked.to_string()), ("received_by_peers", total_got.to_string())],
    );
}
