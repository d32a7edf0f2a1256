//! Every connection ends: a dialled connection drops TCP when the server keeps it open,
//! upgrades racing shutdown are closed and waited for, and a connection that ends before
//! its target has handled `MessageConnect` (or that the target never answers) still
//! ends, with `MessageConnect` first and one `MessageDisconnect` last.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_meta_websocket::protocol::{Incoming, Role};
use actix_meta_websocket::{
    connect, DialOptions, DisconnectReason, HandlerOptions, MessageConnect, MessageDisconnect, Target,
    WsHandler, WsMessage,
};
use common::*;
use tokio::io::AsyncWriteExt;

#[actix_web::test]
async fn a_dialled_connection_drops_tcp_when_the_server_keeps_it_open() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("ws://{}/ws", listener.local_addr().unwrap())).unwrap();
    let (worker, mut rx) = recorder("client", false);
    let config = actix_meta_websocket::ConnectionSettings {
        close_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let server = actix_rt::spawn(async move {
        let (mut tcp, buf) = accept_raw(&listener).await;
        tcp.write_all(&server_frame(true, 8, &1000u16.to_be_bytes())).await.unwrap();
        let mut raw = RawClient::over(tcp, buf, Role::Server);
        // The client answers the close, then, as the server never closes TCP, drops it
        // itself after its close timeout: EOF, not the 10 s of `recv`'s patience.
        let answer = raw.recv().await;
        let after = raw.recv().await;
        (answer, after)
    });
    connect(DialOptions::new(url, Target::from_addr(worker)).settings(config)).await.unwrap();
    let (answer, after) = server.await.unwrap();
    assert!(matches!(&answer, Some(Incoming::Close(Some(f))) if f.code.0 == 1000), "{answer:?}");
    assert_eq!(after, None, "TCP dropped by the client");
    let d = next_disconnect(&mut rx).await;
    assert!(matches!(d.reason, DisconnectReason::Closed { code, .. } if code.0 == 1000), "{:?}", d.reason);
}

#[actix_web::test]
async fn upgrades_racing_shutdown_are_closed_and_waited_for() {
    for round in 0..40 {
        let (worker, mut rx) = recorder("w", false);
        let mut opts = options(worker);
        opts.settings.close_timeout = Duration::from_millis(200);
        let handler = WsHandler::new(opts).unwrap();
        let srv = serve(handler.clone());
        let clients: Vec<_> = (0..12)
            .map(|_| {
                actix_rt::spawn(async move {
                    let (status, _, stream, buf) =
                        http_request(srv.addr, &upgrade_request(srv.addr, "")).await;
                    if status != 101 {
                        assert_eq!(status, 503);
                        return false;
                    }
                    let mut raw = RawClient::over(stream, buf, Role::Client);
                    assert_eq!(raw.expect_close().await, 1001, "an accepted connection is shut down");
                    true
                })
            })
            .collect();
        // Let some upgrades through first, a different number each round.
        for _ in 0..round % 8 {
            actix_rt::task::yield_now().await;
        }
        tokio::time::timeout(Duration::from_secs(20), handler.shutdown()).await.expect("shutdown ended");
        assert_eq!(
            handler.connections(),
            0,
            "round {round}: shutdown returned before every connection ended"
        );
        let mut accepted = 0;
        for c in clients {
            accepted += usize::from(c.await.expect("client"));
        }
        let (mut connects, mut disconnects) = (0, 0);
        while disconnects < accepted {
            match next(&mut rx).await.1 {
                Event::Connect(_) => connects += 1,
                Event::Disconnect(d) => {
                    assert_eq!(d.reason, DisconnectReason::Shutdown);
                    disconnects += 1;
                }
                Event::Message(m) => panic!("{m:?}"),
            }
        }
        assert_eq!(connects, accepted, "round {round}");
        srv.handle.stop(false).await;
    }
}

/// A target of three actors whose `MessageConnect` handler is held by the test.
struct HeldConnect {
    log: Arc<Mutex<Vec<String>>>,
    /// The answer waits for this, without blocking the thread.
    hold: Option<Arc<tokio::sync::Notify>>,
}

/// Blocks the actor's thread until the test sends on (or drops) the other end, so that
/// what is sent to it meanwhile waits in its mailbox.
#[derive(actix::Message)]
#[rtype(result = "()")]
struct Block(std::sync::mpsc::Receiver<()>);

impl actix::Handler<Block> for HeldConnect {
    type Result = ();
    fn handle(&mut self, Block(until): Block, _: &mut Context<Self>) {
        let _ = until.recv();
    }
}

impl Actor for HeldConnect {
    type Context = Context<Self>;
}

impl actix::Handler<MessageConnect> for HeldConnect {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) -> Self::Result {
        let (log, hold) = (self.log.clone(), self.hold.clone());
        Box::pin(async move {
            if let Some(hold) = hold {
                hold.notified().await;
            }
            log.lock().unwrap().push("connect".into());
        })
    }
}

impl actix::Handler<WsMessage> for HeldConnect {
    type Result = ();
    fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {
        self.log.lock().unwrap().push("message".into());
    }
}

impl actix::Handler<MessageDisconnect> for HeldConnect {
    type Result = ();
    fn handle(&mut self, m: MessageDisconnect, _: &mut Context<Self>) {
        self.log.lock().unwrap().push(format!("disconnect: {}", m.reason));
    }
}

/// A connection to a target whose connect handler is `connect`, with `opts` applied; the
/// disconnect goes to a recorder, so the test can await it.
async fn held_target(
    connect: HeldConnect,
    block: Option<std::sync::mpsc::Receiver<()>>,
    opts: impl FnOnce(&mut HandlerOptions),
) -> (WsHandler, RawClient, Events, ArbiterHandle) {
    let arbiter = Arbiter::new().handle();
    let held = HeldConnect::start_in_arbiter(&arbiter, move |_| connect);
    if let Some(block) = block {
        held.do_send(Block(block));
    }
    let (recorder, rx) = recorder("disconnects", false);
    let target = Target::from_recipients(held.clone().recipient(), held.recipient(), recorder.recipient());
    let mut options = HandlerOptions::new(target);
    opts(&mut options);
    let handler = WsHandler::new(options).unwrap();
    let srv = serve(handler.clone());
    let (raw, _) = RawClient::connect(srv.addr, "").await;
    (handler, raw, rx, arbiter)
}

#[actix_web::test]
async fn message_connect_is_not_skipped_when_the_connection_ends_before_it_is_handled() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (unblock, block) = std::sync::mpsc::channel();
    let connect = HeldConnect { log: log.clone(), hold: None };
    let (handler, mut raw, mut rx, _arbiter) = held_target(connect, Some(block), |o| {
        o.settings.close_timeout = Duration::from_millis(100);
    })
    .await;
    // Ends while MessageConnect waits: shutdown, unanswered by a peer that cannot be read.
    tokio::time::timeout(Duration::from_secs(20), handler.shutdown()).await.expect("shutdown ended");
    raw.read_to_end().await;
    unblock.send(()).unwrap();
    let d = next_disconnect(&mut rx).await;
    assert_eq!(d.reason, DisconnectReason::Shutdown);
    // The recorder got the disconnect only after the connect handler had run.
    assert_eq!(*log.lock().unwrap(), ["connect"]);
}

#[actix_web::test]
async fn a_message_connect_that_is_never_answered_ends_the_connection_at_the_idle_timeout() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let hold = Arc::new(tokio::sync::Notify::new());
    let connect = HeldConnect { log: log.clone(), hold: Some(hold.clone()) };
    let (_handler, mut raw, mut rx, _arbiter) = held_target(connect, None, |o| {
        o.settings.idle_timeout = Some(Duration::from_millis(300));
        o.settings.close_timeout = Duration::from_millis(100);
    })
    .await;
    raw.send_raw(&client_frame(true, 0, 1, b"anyone?")).await;
    assert_eq!(raw.expect_close().await, 1011, "closed, and TCP dropped");
    // Released late, the answer comes, and only then the disconnect.
    hold.notify_one();
    let d = next_disconnect(&mut rx).await;
    assert_eq!(d.reason, DisconnectReason::TargetTimeout);
    assert_eq!(*log.lock().unwrap(), ["connect"], "no message was handed over");
}
