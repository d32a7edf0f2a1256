//! The outgoing policy over real sockets: a burst reaches a reading peer whole, however it
//! compares with the buffer; a peer that stops reading is closed with 1008 within the
//! write timeout, with the memory the policy documents; `try_send` says "full" instead;
//! writes by id from other threads keep each writer's order.

mod common;

use std::time::{Duration, Instant};

use actix::{Actor, Context};
use actix_meta_websocket::*;
use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message as TMessage;

/// On "burst N SIZE", writes N binary messages of SIZE bytes with `send`, in one handler.
struct Burster {
    tx: tokio::sync::mpsc::UnboundedSender<(&'static str, Event)>,
}

impl Actor for Burster {
    type Context = Context<Self>;
}

impl actix::Handler<MessageConnect> for Burster {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        let _ = self.tx.send(("burster", Event::Connect(m)));
    }
}

impl actix::Handler<WsMessage> for Burster {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        let id = m.id.clone();
        if let Some(args) = m.as_text().and_then(|t| t.strip_prefix("burst ")) {
            let (n, size) = args.split_once(' ').expect("burst N SIZE");
            let (n, size): (u32, usize) = (n.parse().unwrap(), size.parse().unwrap());
            for i in 0..n {
                let mut body = vec![(i % 251) as u8; size];
                body[..4].copy_from_slice(&i.to_be_bytes());
                id.send(Outgoing::binary(body));
            }
        }
        let _ = self.tx.send(("burster", Event::Message(m)));
    }
}

impl actix::Handler<MessageDisconnect> for Burster {
    type Result = ();
    fn handle(&mut self, m: MessageDisconnect, _: &mut Context<Self>) {
        let _ = self.tx.send(("burster", Event::Disconnect(m)));
    }
}

fn burster(opts: impl FnOnce(&mut ConnectionSettings)) -> (TestServer, Events) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut options = HandlerOptions::new(Target::from_addr(Burster { tx }.start()));
    opts(&mut options.settings);
    (serve(WsHandler::new(options).unwrap()), rx)
}

#[actix_web::test]
async fn a_burst_of_fire_and_forget_writes_reaches_a_reading_peer_whole() {
    // 6.25 MiB and 20 MiB written in one handler: far past the 1 MiB buffer, inside one
    // drain of the connection's mailbox, to a peer that reads as fast as loopback allows.
    for (n, size) in [(100u32, 64 * 1024), (20_000, 1024)] {
        let (srv, mut rx) = burster(|_| {});
        let (mut ws, _) = tokio_tungstenite::connect_async(srv.url()).await.expect("handshake");
        let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
        futures_util::SinkExt::send(&mut ws, TMessage::text(format!("burst {n} {size}"))).await.unwrap();
        for i in 0..n {
            let got = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("the burst stalled")
                .expect("the connection ended")
                .expect("read");
            match got {
                TMessage::Binary(b) => {
                    assert_eq!(b.len(), size);
                    assert_eq!(u32::from_be_bytes(b[..4].try_into().unwrap()), i, "in order");
                }
                other => panic!("message {i} of {n}: {other:?}"),
            }
        }
        assert!(c.id.is_connected(), "a reading peer is not closed for a burst");
        let stats = c.id.stats().await.unwrap();
        assert_eq!(stats.traffic.messages_out, u64::from(n));
        assert_eq!(stats.traffic.message_bytes_out, u64::from(n) * size as u64);
    }
}

#[actix_web::test]
async fn a_peer_that_stops_reading_is_closed_within_the_write_timeout() {
    let write_timeout = Duration::from_millis(400);
    let (max_buffer, max_queue) = (256 * 1024, 16 << 20);
    let (srv, mut rx) = burster(|c| {
        c.write_timeout = write_timeout;
        c.max_write_buffer = max_buffer;
        c.max_write_queue = max_queue;
        c.close_timeout = Duration::from_millis(200);
    });
    let (mut raw, _) = RawClient::connect(srv.addr, "").await;
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    // 12 MiB: under the queue bound, far over what loopback buffers hold.
    raw.send_raw(&client_frame(true, 0, 1, b"burst 192 65536")).await;
    let Event::Message(_) = next(&mut rx).await.1 else { panic!() };
    let burst_at = Instant::now();
    // While it waits, the connection holds what the policy says, no more.
    let stats = c.id.stats().await.expect("still open");
    assert!(stats.buffers.outgoing <= max_buffer + 64 * 1024 + 64 * 1024 + 16, "{stats:?}");
    assert!(stats.buffers.queued <= max_queue + 64 * 1024, "{stats:?}");
    assert!(stats.buffers.queued > 0, "the burst waits in the queue: {stats:?}");
    let d = next_disconnect(&mut rx).await;
    let waited = burst_at.elapsed();
    assert_eq!(d.reason, DisconnectReason::SlowConsumer);
    assert!(waited >= write_timeout, "closed after {waited:?}, before the write timeout");
    // Found within 1.25 write timeouts; the rest is margin for a loaded machine.
    assert!(waited < write_timeout * 4, "closed only after {waited:?}");
    drop(raw);
}

#[actix_web::test]
async fn writes_past_the_queue_bound_close_the_connection_at_once() {
    let (srv, mut rx) = burster(|c| {
        c.max_write_buffer = 256 * 1024;
        c.max_write_queue = 1 << 20;
        c.write_timeout = Duration::from_secs(60);
        c.close_timeout = Duration::from_millis(200);
    });
    let (raw, _) = RawClient::connect(srv.addr, "").await;
    let Event::Connect(_) = next(&mut rx).await.1 else { panic!() };
    let mut raw = raw;
    // 64 MiB offered without waiting to a peer that never reads: not buffered, not lost
    // silently, and not left for the write timeout either.
    raw.send_raw(&client_frame(true, 0, 1, b"burst 1024 65536")).await;
    let started = Instant::now();
    assert_eq!(next_disconnect(&mut rx).await.reason, DisconnectReason::SlowConsumer);
    assert!(started.elapsed() < Duration::from_secs(30), "the queue bound, not the write timeout");
}

#[actix_web::test]
async fn try_send_answers_full_instead_of_closing() {
    let write_timeout = Duration::from_millis(500);
    let (worker, mut rx) = recorder("w", false);
    let mut opts = options(worker);
    opts.settings.max_write_buffer = 128 * 1024;
    opts.settings.write_timeout = write_timeout;
    opts.settings.close_timeout = Duration::from_millis(200);
    let srv = serve(WsHandler::new(opts).unwrap());
    let (raw, _) = RawClient::connect(srv.addr, "").await;
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    let chunk = bytes::Bytes::from(vec![5u8; 64 * 1024]);
    let mut accepted = 0;
    let full = loop {
        match c.id.try_send(Outgoing::binary(chunk.clone())) {
            Ok(()) => accepted += 1,
            Err(TrySendError::Full(m)) => break m,
            Err(e) => panic!("{e:?}"),
        }
        assert!(accepted < 10_000, "never full");
        // A round trip lets the connection write and publish its backlog.
        c.id.stats().await.unwrap();
    };
    assert_eq!(full.body.len(), chunk.len(), "the refused message comes back");
    assert!(c.id.backlog() >= 128 * 1024);
    assert!(c.id.is_connected(), "full is an answer, not a close");
    // The kernel may still take what the connection held. More than loopback buffers can
    // hold, to a peer that still reads nothing: the stall watch closes it.
    for _ in 0..192 {
        c.id.send(Outgoing::binary(chunk.clone()));
    }
    assert_eq!(next_disconnect(&mut rx).await.reason, DisconnectReason::SlowConsumer);
    assert!(matches!(c.id.try_send(Outgoing::text("late")), Err(TrySendError::Closed(_))));
    drop(raw);
}

#[actix_web::test]
async fn writes_by_id_from_other_threads_keep_each_writers_order_and_awaited_ones_hear_of_the_end() {
    let (target, mut rx) = recorder("target", false);
    let srv = serve(WsHandler::new(options(target)).unwrap());
    let mut ws = tungstenite(&srv.url()).await;
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!("connect first") };
    // Two threads that are not the connection's, each mixing every kind of write by id.
    const N: usize = 600;
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let id = c.id.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
                for i in 0..N {
                    let text = format!("{w}:{i}");
                    match i % 3 {
                        0 => id.send(Outgoing::text(text)),
                        1 => id.send_prepared(&PreparedMessage::text(text)),
                        _ => rt.block_on(id.send_wait(Outgoing::text(text))).expect("written"),
                    }
                }
            })
        })
        .collect();
    let mut next_of = [0usize; 2];
    for _ in 0..2 * N {
        let got = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the writes stalled")
            .expect("the connection ended")
            .expect("read");
        let TMessage::Text(t) = got else { panic!("{got:?}") };
        let (w, i) = t.split_once(':').expect("w:i");
        let (w, i): (usize, usize) = (w.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next_of[w], "writer {w}'s writes in the order it made them");
        next_of[w] += 1;
    }
    for w in writers {
        w.join().expect("writer");
    }
    futures_util::SinkExt::send(&mut ws, TMessage::Close(None)).await.unwrap();
    next_disconnect(&mut rx).await;
    c.id.closed().await;
    assert_eq!(c.id.send_wait("late").await, Err(WriteError::Closed), "an ended connection says so");
    match c.id.try_send("late") {
        Err(TrySendError::Closed(m)) => assert_eq!(m.as_text(), Some("late"), "the message comes back"),
        other => panic!("{other:?}"),
    }
}

/// On any message, writes three by id and asks for the connection's stats at once, from
/// the connection's own thread: the connection answers before its I/O loop runs again.
struct WritesThenAsks {
    tx: tokio::sync::mpsc::UnboundedSender<Stats>,
}

impl Actor for WritesThenAsks {
    type Context = Context<Self>;
}

impl actix::Handler<MessageConnect> for WritesThenAsks {
    type Result = ();
    fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {}
}

impl actix::Handler<WsMessage> for WritesThenAsks {
    type Result = ();
    fn handle(&mut self, m: WsMessage, ctx: &mut Context<Self>) {
        use actix::AsyncContext;
        for i in 0..3 {
            m.id.send(Outgoing::text(format!("{i}")));
        }
        let (id, tx) = (m.id.clone(), self.tx.clone());
        ctx.spawn(actix::fut::wrap_future(async move {
            let _ = tx.send(id.stats().await.expect("still open"));
        }));
    }
}

impl actix::Handler<MessageDisconnect> for WritesThenAsks {
    type Result = ();
    fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {}
}

#[actix_web::test]
async fn stats_count_the_writes_made_before_they_were_asked_for() {
    let (tx, mut stats) = tokio::sync::mpsc::unbounded_channel();
    let srv = serve_each(1, None, move || {
        let target = WritesThenAsks { tx: tx.clone() }.start();
        WsHandler::new(HandlerOptions::new(Target::from_addr(target))).unwrap()
    });
    let (mut ws, _) = tokio_tungstenite::connect_async(srv.url()).await.expect("connect");
    futures_util::SinkExt::send(&mut ws, TMessage::text("go")).await.unwrap();
    let s = tokio::time::timeout(Duration::from_secs(10), stats.recv()).await.expect("stats").unwrap();
    assert_eq!(s.traffic.messages_out, 3, "{s:?}");
    for i in 0..3 {
        let got = ws.next().await.expect("open").expect("read");
        assert_eq!(got, TMessage::text(i.to_string()));
    }
}
