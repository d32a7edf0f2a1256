//! The server under pressure, over real loopback sockets: protocol violations and the
//! answers that go out before them, idle and heartbeat timers, a slow target, a stuck
//! peer and a burst, a stopped target, shutdown, pipelined messages.

mod common;

use std::time::Duration;

use actix::{Actor, Context, ResponseFuture};
use actix_meta_websocket::protocol::{CloseCode, Incoming, ProtocolError};
use actix_meta_websocket::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as TMessage;

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
