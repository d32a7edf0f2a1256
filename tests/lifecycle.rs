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
use common::reliability;
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

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::OneActor => "one actor",
            Kind::ThreeActors => "three actors",
        }
    }
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
            raw.read_to_end().await;
            None
        }
        Ending::Eof => {
            raw.stream.shutdown().await.unwrap();
            raw.read_to_end().await;
            None
        }
        Ending::Violation => {
            raw.send_raw(&client_frame(true, 0, 3, b"")).await;
            raw.read_to_end().await;
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
async fn run(ending: Ending, kind: Kind, slow: bool) -> reliability::LostRow {
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
    let cases = start_cases(ending, &t, srv.addr, synced_tx);
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
    reliability::LostRow {
        ending: ending.name(),
        role: if ending == Ending::ResetWhileWriting { "client" } else { "server" },
        target: format!("{}, {}", kind.name(), if slow { "slow" } else { "fast" }),
        sent: COUNTS.iter().sum(),
        delivered: delivered.iter().sum(),
        disconnects: got.values().map(|s| s.disconnects).sum(),
        connections: COUNTS.len(),
    }
}

/// One connection for each count, each ending its way; their tasks give back what must
/// stay open until the target has seen the end.
fn start_cases(
    ending: Ending,
    t: &TargetUnderTest,
    addr: std::net::SocketAddr,
    synced: mpsc::UnboundedSender<()>,
) -> Vec<actix_rt::task::JoinHandle<Option<RawClient>>> {
    let mut cases = Vec::new();
    for (i, n) in COUNTS.into_iter().enumerate() {
        let case = format!("case={i}");
        let id = t.expect_id(&case);
        if ending == Ending::ResetWhileWriting {
            let target = t.target.clone();
            cases.push(actix_rt::spawn(async move {
                dialled_case(target, case, n).await;
                None
            }));
        } else {
            cases.push(actix_rt::spawn(server_case(ending, addr, case, n, id, synced.clone())));
        }
    }
    cases
}

/// Every target kind and speed for `ending`; records the rows for RELIABILITY.md.
async fn every_target(ending: Ending) {
    let mut rows = Vec::new();
    for kind in [Kind::OneActor, Kind::ThreeActors] {
        for slow in [false, true] {
            rows.push(run(ending, kind, slow).await);
        }
    }
    reliability::record_lost(&ending.file(), &rows);
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
