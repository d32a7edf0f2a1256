//! Nothing read is lost, and every connection ends: for each way a connection can end,
//! with 1, 31, 32, 33 and 500 messages, fast and slow targets, one actor or three, the
//! target must get every message the connection decoded, `MessageConnect` first and
//! exactly one `MessageDisconnect` last. Each ending records what it saw in
//! target/reliability/lost/ for RELIABILITY.md.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_meta_websocket::protocol::{Incoming, Role};
use actix_meta_websocket::{
    connect, ConnectionId, DialOptions, DisconnectReason, HandlerOptions, MessageConnect, MessageDisconnect,
    Outgoing, Target, WsHandler, WsMessage,
};
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

const COUNTS: [usize; 5] = [1, 31, 32, 33, 500];
/// Handling time per message of a slow target (on a thread of its own).
const SLOW: Duration = Duration::from_millis(3);
/// Short enough that a slow target still holds messages when it runs out.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(50);

/// What a target saw of one connection.
#[derive(Debug, Default, Clone)]
struct Seen {
    connected: bool,
    messages: usize,
    disconnects: usize,
    reason: Option<DisconnectReason>,
    /// Order violations: a message before `MessageConnect` or after `MessageDisconnect`.
    errors: Vec<String>,
}

/// State shared by the actors of one target (one actor, or three for `from_recipients`).
struct Shared {
    seen: Mutex<HashMap<u64, Seen>>,
    /// Who waits for the id of the connection with this URI.
    ids: Mutex<HashMap<String, oneshot::Sender<ConnectionId>>>,
    /// Every `MessageDisconnect`, with what was seen of its connection by then.
    reports: mpsc::UnboundedSender<(u64, Seen)>,
}

impl Shared {
    fn with<R>(&self, seq: u64, f: impl FnOnce(&mut Seen) -> R) -> R {
        f(self.seen.lock().unwrap().entry(seq).or_default())
    }
}

struct Ledger {
    shared: Arc<Shared>,
    delay: Duration,
    echo: bool,
}

impl Actor for Ledger {
    type Context = Context<Self>;
}

impl actix::Handler<MessageConnect> for Ledger {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        std::thread::sleep(self.delay * 5);
        self.shared.with(m.id.seq(), |s| {
            if s.messages > 0 || s.disconnects > 0 {
                s.errors.push("MessageConnect after other messages".into());
            }
            s.connected = true;
        });
        let uri = m.uri.split('?').nth(1).unwrap_or_default().to_owned();
        if let Some(tx) = self.shared.ids.lock().unwrap().remove(&uri) {
            let _ = tx.send(m.id);
        }
    }
}

impl actix::Handler<WsMessage> for Ledger {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        std::thread::sleep(self.delay);
        let id = m.id.clone();
        self.shared.with(id.seq(), |s| {
            if !s.connected || s.disconnects > 0 {
                s.errors.push(format!("message {} outside connect..disconnect", s.messages));
            }
            s.messages += 1;
        });
        if self.echo {
            id.send(Outgoing::from(m));
        }
    }
}

impl actix::Handler<MessageDisconnect> for Ledger {
    type Result = ();
    fn handle(&mut self, m: MessageDisconnect, _: &mut Context<Self>) {
        let seen = self.shared.with(m.id.seq(), |s| {
            if !s.connected {
                s.errors.push("MessageDisconnect without MessageConnect".into());
            }
            s.disconnects += 1;
            s.reason = Some(m.reason.clone());
            s.clone()
        });
        let _ = self.shared.reports.send((m.id.seq(), seen));
    }
}

/// A message to wait on: once a ledger answers it, it has handled everything queued before.
#[derive(actix::Message)]
#[rtype(result = "()")]
struct Flush;

impl actix::Handler<Flush> for Ledger {
    type Result = ();
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) {}
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// `Target::from_addr`: one mailbox.
    OneActor,
    /// `Target::from_recipients` with three actors on three threads.
    ThreeActors,
}

/// A target of `kind` whose actors run on threads of their own, and what it saw.
struct TargetUnderTest {
    target: Target,
    shared: Arc<Shared>,
    reports: mpsc::UnboundedReceiver<(u64, Seen)>,
    actors: Vec<Addr<Ledger>>,
    _arbiters: Vec<ArbiterHandle>,
}

fn target(kind: Kind, slow: bool, echo: bool) -> TargetUnderTest {
    let (tx, reports) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared { seen: Mutex::default(), ids: Mutex::default(), reports: tx });
    let delay = if slow { SLOW } else { Duration::ZERO };
    let spawn = |delay: Duration| {
        let arbiter = Arbiter::new().handle();
        let shared = shared.clone();
        let addr = Ledger::start_in_arbiter(&arbiter, move |_| Ledger { shared, delay, echo });
        (addr, arbiter)
    };
    match kind {
        Kind::OneActor => {
            let (addr, arbiter) = spawn(delay);
            TargetUnderTest {
                target: Target::from_addr(addr.clone()),
                shared,
                reports,
                actors: vec![addr],
                _arbiters: vec![arbiter],
            }
        }
        Kind::ThreeActors => {
            // The connect handler and the message handler are slow, the disconnect handler
            // fast: a disconnect sent too early would overtake them.
            let (a, aa) = spawn(delay);
            let (b, ba) = spawn(delay);
            let (c, ca) = spawn(Duration::ZERO);
            TargetUnderTest {
                target: Target::from_recipients(
                    a.clone().recipient(),
                    b.clone().recipient(),
                    c.clone().recipient(),
                ),
                shared,
                reports,
                actors: vec![a, b, c],
                _arbiters: vec![aa, ba, ca],
            }
        }
    }
}

impl TargetUnderTest {
    /// Waits for the id of the connection whose URI query is `case`.
    fn expect_id(&self, case: &str) -> oneshot::Receiver<ConnectionId> {
        let (tx, rx) = oneshot::channel();
        self.shared.ids.lock().unwrap().insert(case.to_owned(), tx);
        rx
    }

    /// Collects `n` disconnect reports, then checks no violation was seen meanwhile.
    async fn disconnects(&mut self, n: usize) -> HashMap<u64, Seen> {
        let mut got = HashMap::new();
        while got.len() < n {
            let (seq, seen) = tokio::time::timeout(Duration::from_secs(20), self.reports.recv())
                .await
                .expect("a MessageDisconnect is missing")
                .expect("reports closed");
            assert!(got.insert(seq, seen).is_none(), "connection {seq}: a second MessageDisconnect");
        }
        // Anything queued behind the disconnects has been handled once every actor answers.
        for a in &self.actors {
            a.send(Flush).await.unwrap();
        }
        let seen = self.shared.seen.lock().unwrap();
        for (seq, s) in seen.iter() {
            assert!(s.errors.is_empty(), "connection {seq}: {:?}", s.errors);
            assert_eq!(s.disconnects, 1, "connection {seq}: {s:?}");
        }
        got
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    PeerClose,
    Eof,
    Reset,
    Violation,
    CloseTimeout,
    IdleTimeout,
    Shutdown,
    /// A dialled connection whose server resets TCP while echoes are being written.
    ResetWhileWriting,
}

impl Ending {
    fn name(self) -> &'static str {
        match self {
            Ending::PeerClose => "peer close frame",
            Ending::Eof => "EOF without close frame",
            Ending::Reset => "TCP reset",
            Ending::Violation => "protocol violation after the messages",
            Ending::CloseTimeout => "close timeout (our close unanswered)",
            Ending::IdleTimeout => "idle timeout",
            Ending::Shutdown => "shutdown 1001, unanswered",
            Ending::ResetWhileWriting => "TCP reset while writing (dialled)",
        }
    }

    fn file(self) -> String {
        format!("{self:?}").to_lowercase()
    }

    fn reason_fits(self, reason: &DisconnectReason) -> bool {
        use DisconnectReason as R;
        match self {
            Ending::PeerClose => matches!(reason, R::Closed { code, .. } if code.0 == 1000),
            // Said in plain words, not as the HTTP layer's error.
            Ending::Eof => {
                matches!(reason, R::ConnectionLost(t) if t == "the peer closed the TCP connection without a close frame")
            }
            Ending::Reset | Ending::ResetWhileWriting => {
                matches!(reason, R::ConnectionLost(t) if t.starts_with("the peer") && !t.contains("payload"))
            }
            Ending::Violation => matches!(reason, R::Protocol { code, .. } if code.0 == 1002),
            Ending::CloseTimeout => matches!(reason, R::Closed { code, .. } if code.0 == 4000),
            Ending::IdleTimeout => matches!(reason, R::IdleTimeout),
            Ending::Shutdown => matches!(reason, R::Shutdown),
        }
    }
}

fn frames(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| client_frame(true, 0, 1, format!("message {i}").as_bytes())).collect()
}

async fn raw_connect(addr: std::net::SocketAddr, case: &str) -> RawClient {
    let request = upgrade_request(addr, "").replacen("/ws?room=1", &format!("/ws?{case}"), 1);
    let (status, head, stream, buf) = http_request(addr, &request).await;
    assert_eq!(status, 101, "{head}");
    RawClient::over(stream, buf, Role::Client)
}

/// Sends a ping after the messages and waits for its pong: the server has decoded them all.
async fn sync(raw: &mut RawClient) {
    raw.send_raw(&client_frame(true, 0, 9, b"sync")).await;
    loop {
        match raw.recv().await {
            Some(Incoming::Pong(p)) if &p[..] == b"sync" => return,
            Some(_) => {}
            None => panic!("EOF before the pong"),
        }
    }
}

async fn read_to_end(raw: &mut RawClient) {
    while raw.recv().await.is_some() {}
}

/// One server-side connection: `n` messages, then `ending`. Returns the socket when the
/// ending needs it kept open until the disconnect.
async fn server_case(
    ending: Ending,
    addr: std::net::SocketAddr,
    case: String,
    n: usize,
    id: oneshot::Receiver<ConnectionId>,
    synced: mpsc::UnboundedSender<()>,
) -> Option<RawClient> {
    let mut raw = raw_connect(addr, &case).await;
    let id = tokio::time::timeout(Duration::from_secs(20), id).await.expect("MessageConnect").unwrap();
    raw.send_raw(&frames(n)).await;
    match ending {
        Ending::PeerClose => {
            raw.send_raw(&client_frame(true, 0, 8, &1000u16.to_be_bytes())).await;
            read_to_end(&mut raw).await;
            None
        }
        Ending::Eof => {
            raw.stream.shutdown().await.unwrap();
            read_to_end(&mut raw).await;
            None
        }
        Ending::Violation => {
            raw.send_raw(&client_frame(true, 0, 3, b"")).await;
            read_to_end(&mut raw).await;
            None
        }
        Ending::Reset => {
            sync(&mut raw).await;
            reset(raw.stream);
            None
        }
        Ending::CloseTimeout => {
            sync(&mut raw).await;
            id.close(4000, "bye").unwrap();
            Some(raw)
        }
        Ending::IdleTimeout => {
            sync(&mut raw).await;
            Some(raw)
        }
        Ending::Shutdown => {
            sync(&mut raw).await;
            synced.send(()).unwrap();
            Some(raw)
        }
        Ending::ResetWhileWriting => unreachable!("a dialled ending"),
    }
}

/// One dialled connection: a raw server sends `n` messages and a ping, waits for the pong,
/// and resets TCP while the echoes of a slow target are still being written.
async fn dialled_case(target: Target, case: String, n: usize) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("ws://{}/ws?{case}", listener.local_addr().unwrap())).unwrap();
    let server = actix_rt::spawn(async move {
        let (mut tcp, buf) = accept_raw(&listener).await;
        let mut all: Vec<u8> =
            (0..n).flat_map(|i| server_frame(true, 1, format!("message {i}").as_bytes())).collect();
        all.extend(server_frame(true, 9, b"sync"));
        tcp.write_all(&all).await.unwrap();
        let mut raw = RawClient::over(tcp, buf, Role::Server);
        loop {
            match raw.recv().await {
                Some(Incoming::Pong(p)) if &p[..] == b"sync" => break,
                Some(_) => {}
                None => panic!("the client left before its pong"),
            }
        }
        reset(raw.stream);
    });
    let config =
        actix_meta_websocket::ConnectionSettings { close_timeout: CLOSE_TIMEOUT, ..Default::default() };
    connect(DialOptions::new(url, target).settings(config)).await.expect("dial");
    server.await.unwrap();
}

/// Runs every count against one target, in parallel, and checks what the target got.
async fn run(ending: Ending, kind: Kind, slow: bool) -> serde_like::Row {
    let echo = ending == Ending::ResetWhileWriting;
    let mut t = target(kind, slow, echo);
    let mut opts = HandlerOptions::new(t.target.clone());
    opts.settings.close_timeout = CLOSE_TIMEOUT;
    if ending == Ending::IdleTimeout {
        opts.settings.idle_timeout = Some(Duration::from_millis(300));
        opts.settings.heartbeat = None;
    }
    let handler = WsHandler::new(opts).unwrap();
    let srv = serve(handler.clone());
    let (synced_tx, mut synced) = mpsc::unbounded_channel();
    let mut cases = Vec::new();
    let mut sent_by_uri = HashMap::new();
    for (i, n) in COUNTS.into_iter().enumerate() {
        let case = format!("case={i}");
        sent_by_uri.insert(case.clone(), n);
        let id = t.expect_id(&case);
        if ending == Ending::ResetWhileWriting {
            let target = t.target.clone();
            cases.push(actix_rt::spawn(async move {
                dialled_case(target, case, n).await;
                None
            }));
        } else {
            cases.push(actix_rt::spawn(server_case(ending, srv.addr, case, n, id, synced_tx.clone())));
        }
    }
    if ending == Ending::Shutdown {
        for _ in COUNTS {
            synced.recv().await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(20), handler.shutdown()).await.expect("shutdown ended");
    }
    let mut held = Vec::new();
    for c in cases {
        held.push(c.await.unwrap());
    }
    let got = t.disconnects(COUNTS.len()).await;
    drop(held);
    let mut delivered: Vec<usize> = got.values().map(|s| s.messages).collect();
    delivered.sort_unstable();
    let who = format!("{ending:?}, {kind:?}, slow={slow}");
    assert_eq!(delivered, COUNTS.to_vec(), "{who}: messages delivered per connection");
    for s in got.values() {
        let reason = s.reason.as_ref().unwrap();
        assert!(ending.reason_fits(reason), "{who}: {reason:?}");
    }
    serde_like::Row {
        ending: ending.name(),
        role: if ending == Ending::ResetWhileWriting { "client" } else { "server" },
        target: format!(
            "{}, {}",
            if kind == Kind::OneActor { "one actor" } else { "three actors" },
            if slow { "slow" } else { "fast" }
        ),
        sent: COUNTS.iter().sum(),
        delivered: delivered.iter().sum(),
        disconnects: got.values().map(|s| s.disconnects).sum(),
        connections: COUNTS.len(),
    }
}

/// Every target kind and speed for `ending`; records the rows for RELIABILITY.md.
async fn every_target(ending: Ending) {
    let mut rows = Vec::new();
    for kind in [Kind::OneActor, Kind::ThreeActors] {
        for slow in [false, true] {
            rows.push(run(ending, kind, slow).await);
        }
    }
    serde_like::record(&ending.file(), &rows);
}

/// Writes the rows as JSON without a JSON dependency.
mod serde_like {
    pub struct Row {
        pub ending: &'static str,
        pub role: &'static str,
        pub target: String,
        pub sent: usize,
        pub delivered: usize,
        pub disconnects: usize,
        pub connections: usize,
    }

    pub fn record(file: &str, rows: &[Row]) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/reliability/lost");
        let _ = std::fs::create_dir_all(&dir);
        let rows: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"ending\": {:?}, \"role\": {:?}, \"target\": {:?}, \"sent\": {}, \"delivered\": {}, \"disconnects\": {}, \"connections\": {}}}",
                    r.ending, r.role, r.target, r.sent, r.delivered, r.disconnects, r.connections
                )
            })
            .collect();
        let _ = std::fs::write(dir.join(format!("{file}.json")), format!("[{}]\n", rows.join(",\n")));
    }
}

#[actix_web::test]
async fn nothing_lost_when_the_peer_closes() {
    every_target(Ending::PeerClose).await;
}

#[actix_web::test]
async fn nothing_lost_on_eof_without_a_close_frame() {
    every_target(Ending::Eof).await;
}

#[actix_web::test]
async fn nothing_lost_on_a_tcp_reset() {
    every_target(Ending::Reset).await;
}

#[actix_web::test]
async fn nothing_lost_before_a_protocol_violation() {
    every_target(Ending::Violation).await;
}

#[actix_web::test]
async fn nothing_lost_when_our_close_times_out() {
    every_target(Ending::CloseTimeout).await;
}

#[actix_web::test]
async fn nothing_lost_at_the_idle_timeout() {
    every_target(Ending::IdleTimeout).await;
}

#[actix_web::test]
async fn nothing_lost_at_shutdown() {
    every_target(Ending::Shutdown).await;
}

#[actix_web::test]
async fn nothing_lost_when_a_dialled_connection_fails_while_writing() {
    every_target(Ending::ResetWhileWriting).await;
}

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
    read_to_end(&mut raw).await;
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
