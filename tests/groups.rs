//! Groups over real sockets: broadcasts reach every member once and in order, across two
//! worker threads; members leave by hand, by disconnecting and by crashing; presence
//! lists and events follow; a stuck member meets its slow-consumer policy alone.

mod common;

use std::collections::HashSet;
use std::thread::ThreadId;
use std::time::Duration;

use actix::prelude::*;
use actix_meta_websocket::groups::{PresenceChange, PresenceEvent};
use actix_meta_websocket::protocol::Incoming;
use actix_meta_websocket::*;
use common::*;
use tokio::sync::mpsc;

const ROOM: &str = "room";

/// What the lobby saw.
#[derive(Debug)]
enum Seen {
    /// A connection joined `ROOM` (with its query string as metadata) on `thread`.
    Joined(ConnectionId, ThreadId),
    /// A connection ended; whether it was still in `ROOM` when its `MessageDisconnect` came.
    Ended(MessageDisconnect, bool),
}

/// One per worker thread: joins every connection to `ROOM`, broadcasts `say <text>` to
/// the others.
struct Lobby {
    groups: Groups,
    tx: mpsc::UnboundedSender<Seen>,
}

impl Actor for Lobby {
    type Context = Context<Self>;
}

impl Handler<MessageConnect> for Lobby {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        let meta = m.uri.split_once('?').map_or("", |(_, q)| q).to_owned();
        assert_eq!(self.groups.join_with(ROOM, &m.id, meta), Ok(true));
        let _ = self.tx.send(Seen::Joined(m.id, std::thread::current().id()));
    }
}

impl Handler<WsMessage> for Lobby {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        if let Some(text) = m.as_text().and_then(|t| t.strip_prefix("say ")) {
            self.groups.broadcast_except(ROOM, text.to_owned(), &m.id);
        }
    }
}

impl Handler<MessageDisconnect> for Lobby {
    type Result = ();
    fn handle(&mut self, m: MessageDisconnect, _: &mut Context<Self>) {
        let member = self.groups.contains(ROOM, &m.id);
        let _ = self.tx.send(Seen::Ended(m, member));
    }
}

/// Records presence events.
struct Watcher(mpsc::UnboundedSender<PresenceEvent>);
impl Actor for Watcher {
    type Context = Context<Self>;
}
impl Handler<PresenceEvent> for Watcher {
    type Result = ();
    fn handle(&mut self, e: PresenceEvent, _: &mut Context<Self>) {
        let _ = self.0.send(e);
    }
}

/// A server on 127.0.0.1 with `workers` threads, each with its own lobby.
fn serve_lobby(
    workers: usize,
    settings: impl Fn(&mut ConnectionSettings) + Clone + Send + 'static,
) -> (TestServer, Groups, mpsc::UnboundedReceiver<Seen>) {
    let groups = Groups::new();
    let (tx, rx) = mpsc::unbounded_channel();
    let g = groups.clone();
    let server = serve_each(workers, None, move || {
        let lobby = Lobby { groups: g.clone(), tx: tx.clone() }.start();
        let mut opts = HandlerOptions::new(Target::from_addr(lobby)).compression(true);
        settings(&mut opts.settings);
        WsHandler::new(opts).expect("valid settings")
    });
    (server, groups, rx)
}

async fn seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("timed out").expect("lobby gone")
}

async fn joined(rx: &mut mpsc::UnboundedReceiver<Seen>) -> (ConnectionId, ThreadId) {
    match seen(rx).await {
        Seen::Joined(id, thread) => (id, thread),
        other => panic!("expected a join, got {other:?}"),
    }
}

async fn ended(rx: &mut mpsc::UnboundedReceiver<Seen>) -> (MessageDisconnect, bool) {
    loop {
        if let Seen::Ended(d, member) = seen(rx).await {
            return (d, member);
        }
    }
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<PresenceEvent>) -> PresenceEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("timed out").expect("watcher")
}

async fn text(raw: &mut RawClient) -> String {
    match tokio::time::timeout(Duration::from_secs(10), raw.recv()).await.expect("timed out") {
        Some(Incoming::Text(b)) => String::from_utf8(b.to_vec()).expect("UTF-8"),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Raw members with queries `m0`, `m1`..., their server-side ids in the same order, and the
/// threads they run on.
async fn members(
    srv: &TestServer,
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    n: usize,
) -> (Vec<RawClient>, Vec<ConnectionId>, HashSet<ThreadId>) {
    let (mut raws, mut ids, mut threads) = (Vec::new(), Vec::new(), HashSet::new());
    for i in 0..n {
        raws.push(RawClient::connect_path(srv.addr, &format!("/ws?m{i}")).await.0);
        let (id, thread) = joined(rx).await;
        ids.push(id);
        threads.insert(thread);
    }
    (raws, ids, threads)
}

/// `n` compressed members of our own, dialled; their targets' events.
async fn dial_compressed(srv: &TestServer, rx: &mut mpsc::UnboundedReceiver<Seen>, n: usize) -> Vec<Events> {
    let mut dialled = Vec::new();
    for _ in 0..n {
        let (w, mut wrx) = recorder("client", false);
        connect(DialOptions::new(srv.url(), Target::from_addr(w)).compression(true)).await.unwrap();
        let Event::Connect(c) = next(&mut wrx).await.1 else { panic!("connect") };
        assert!(c.compressed);
        dialled.push(wrx);
        joined(rx).await;
    }
    dialled
}

/// Reads until `a` messages of publisher a and `b` of publisher b (whose texts start
/// with `b`) have come; each publisher's, in order.
async fn by_publisher(raw: &mut RawClient, a: usize, b: usize) -> (Vec<String>, Vec<String>) {
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    while got_a.len() < a || got_b.len() < b {
        let t = text(raw).await;
        if t.starts_with('b') {
            got_b.push(t);
        } else {
            got_a.push(t);
        }
    }
    (got_a, got_b)
}

/// Every member on both worker threads gets every broadcast exactly once, in the order
/// each publisher made them; compressed and plain members alike; `except` is skipped.
#[actix_web::test]
async fn broadcasts_reach_every_member_once_in_order_across_two_threads() {
    let (srv, groups, mut rx) = serve_lobby(2, |_| {});
    let (mut raws, ids, threads) = members(&srv, &mut rx, 6).await;
    assert_eq!(threads.len(), 2, "members on both worker threads");
    let mut dialled = dial_compressed(&srv, &mut rx, 2).await;
    assert_eq!(groups.count(ROOM), 8);

    // Two publishers, interleaved: this task and a connection saying things.
    const N: usize = 200;
    let long = "x".repeat(600); // over the compression threshold
    for i in 0..N {
        assert_eq!(groups.broadcast(ROOM, format!("a{i} {long}")), 8);
        if i % 10 == 0 {
            raws[0].send_raw(&client_frame(true, 0, 1, format!("say b{i}").as_bytes())).await;
        }
    }
    assert_eq!(groups.broadcast_except(ROOM, "last", &ids[1]), 7);
    let expect_from = |member: usize| {
        let mut a: Vec<String> = (0..N).map(|i| format!("a{i} {long}")).collect();
        a.push("last".into());
        if member == 1 {
            a.pop();
        }
        let b: Vec<String> = (0..N).step_by(10).map(|i| format!("b{i}")).collect();
        (a, if member == 0 { Vec::new() } else { b })
    };
    for (m, raw) in raws.iter_mut().enumerate() {
        let (want_a, want_b) = expect_from(m);
        let (got_a, got_b) = by_publisher(raw, want_a.len(), want_b.len()).await;
        assert_eq!(got_a, want_a, "member {m}: publisher a");
        assert_eq!(got_b, want_b, "member {m}: publisher b");
    }
    for wrx in &mut dialled {
        let mut got_a = Vec::new();
        while got_a.len() < N + 1 {
            let Event::Message(m) = next(wrx).await.1 else { panic!("message") };
            let t = m.as_text().expect("text").to_owned();
            if !t.starts_with('b') {
                got_a.push(t);
            }
        }
        assert_eq!(got_a, expect_from(2).0);
    }
    // Exactly once: one more broadcast is the next thing each member reads.
    groups.broadcast(ROOM, "end");
    for raw in &mut raws[2..] {
        assert_eq!(text(raw).await, "end");
    }
}

/// A member that vanishes (TCP reset) while broadcasts flow: the others get all of them,
/// and it has left the group before its `MessageDisconnect`.
#[actix_web::test]
async fn a_member_that_vanishes_mid_broadcast_does_not_stop_the_others() {
    let (srv, groups, mut rx) = serve_lobby(2, |_| {});
    let (mut raws, ids, _) = members(&srv, &mut rx, 4).await;
    let mut gone = Some(raws.remove(1));
    const N: usize = 500;
    for i in 0..N {
        if i == N / 2 {
            reset(gone.take().expect("once").stream);
            // Let its thread see the reset while the broadcasts go on.
            tokio::task::yield_now().await;
        }
        groups.broadcast(ROOM, format!("{i}"));
    }
    let (d, still_member) = ended(&mut rx).await;
    assert_eq!(d.id, ids[1]);
    assert!(!still_member, "it left before its MessageDisconnect");
    assert_eq!(groups.count(ROOM), 3);
    assert_eq!(groups.broadcast(ROOM, "after"), 3);
    for raw in &mut raws {
        for i in 0..N {
            assert_eq!(text(raw).await, i.to_string());
        }
        assert_eq!(text(raw).await, "after");
    }
}

/// Members, their metadata and the watchers' events after joins, a leave, a clean close
/// and a crash.
#[actix_web::test]
async fn presence_follows_joins_leaves_and_crashes() {
    let (srv, groups, mut rx) = serve_lobby(2, |_| {});
    let (etx, mut events) = mpsc::unbounded_channel();
    groups.watch(ROOM, Watcher(etx).start().recipient());
    let mut raws = Vec::new();
    let mut ids = Vec::new();
    for name in ["ada", "bob", "cy", "dee"] {
        let (stream, _) = RawClient::connect_path(srv.addr, &format!("/ws?{name}")).await;
        raws.push(stream);
        ids.push(joined(&mut rx).await.0);
    }
    for (id, name) in ids.iter().zip(["ada", "bob", "cy", "dee"]) {
        let e = next_event(&mut events).await;
        assert_eq!((e.change, &e.member.id, &*e.member.meta), (PresenceChange::Joined, id, name));
    }
    let names = |groups: &Groups| groups.members(ROOM).iter().map(|m| m.meta.to_string()).collect::<Vec<_>>();
    assert_eq!(names(&groups), ["ada", "bob", "cy", "dee"]);

    // A leave by hand.
    assert!(groups.leave(ROOM, &ids[1]));
    assert!(!groups.leave(ROOM, &ids[1]));
    assert_eq!(names(&groups), ["ada", "cy", "dee"]);
    let e = next_event(&mut events).await;
    assert_eq!((e.change, &e.member.id), (PresenceChange::Left, &ids[1]));
    assert!(groups.groups_of(&ids[1]).is_empty());
    // New metadata.
    assert_eq!(groups.join_with(ROOM, &ids[0], "ada (away)"), Ok(false));
    let e = next_event(&mut events).await;
    assert_eq!((e.change, &*e.member.meta), (PresenceChange::Updated, "ada (away)"));

    // A clean close by the peer, then a crash.
    raws[2].send_raw(&client_frame(true, 0, 8, &1000u16.to_be_bytes())).await;
    let (d, member) = ended(&mut rx).await;
    assert_eq!((&d.id, member), (&ids[2], false));
    let e = next_event(&mut events).await;
    assert_eq!((e.change, &e.member.id), (PresenceChange::Disconnected, &ids[2]));
    let crashed = raws.remove(3);
    reset(crashed.stream);
    let (d, member) = ended(&mut rx).await;
    assert_eq!((&d.id, member), (&ids[3], false));
    let e = next_event(&mut events).await;
    assert_eq!((e.change, &e.member.id), (PresenceChange::Disconnected, &ids[3]));
    assert_eq!(names(&groups), ["ada (away)"]);
    assert_eq!(groups.count(ROOM), 1);
    // An ended connection joins nothing.
    assert_eq!(groups.join(ROOM, &ids[3]), Err(WriteError::Closed));
    // The one who left by hand can join again, and gets broadcasts again.
    assert_eq!(groups.join(ROOM, &ids[1]), Ok(true));
    assert_eq!(groups.broadcast(ROOM, "back"), 2);
    assert_eq!(text(&mut raws[1]).await, "back");
    assert_eq!(text(&mut raws[0]).await, "back");
}

/// A member whose peer stops reading is closed by its write timeout, while the others
/// keep receiving every broadcast.
#[actix_web::test]
async fn a_stuck_member_is_closed_by_policy_while_the_others_keep_receiving() {
    let write_timeout = Duration::from_millis(400);
    let (srv, groups, mut rx) = serve_lobby(2, move |c| {
        c.write_timeout = write_timeout;
        c.max_write_buffer = 256 * 1024;
        c.max_write_queue = 64 << 20;
        c.close_timeout = Duration::from_millis(200);
    });
    let (mut raws, ids, _) = members(&srv, &mut rx, 3).await;
    let stuck = raws.remove(0);
    let readers = raws.len();
    // 12.5 MiB: far more than loopback buffers hold. The readers take it as it comes.
    const N: usize = 200;
    let chunk = "y".repeat(64 * 1024);
    let reading: Vec<_> = raws
        .into_iter()
        .map(|mut raw| {
            let len = chunk.len();
            tokio::spawn(async move {
                for _ in 0..N {
                    assert_eq!(text(&mut raw).await.len(), len);
                }
                raw
            })
        })
        .collect();
    let mut sent = 0;
    for _ in 0..N {
        sent += groups.broadcast(ROOM, chunk.clone());
    }
    assert_eq!(sent, N * 3);
    let mut readers_raws = Vec::new();
    for r in reading {
        readers_raws.push(r.await.expect("reader"));
    }
    let (d, member) = ended(&mut rx).await;
    assert_eq!((&d.id, &d.reason, member), (&ids[0], &DisconnectReason::SlowConsumer, false));
    assert_eq!(groups.count(ROOM), readers);
    assert_eq!(groups.broadcast(ROOM, "after"), readers);
    for raw in &mut readers_raws {
        assert_eq!(text(raw).await, "after");
    }
    drop(stuck);
}

/// `send_to` reaches the listed connections only, across threads, in order with
/// broadcasts.
#[actix_web::test]
async fn send_to_reaches_the_listed_connections_in_order_with_broadcasts() {
    let (srv, groups, mut rx) = serve_lobby(2, |_| {});
    let (mut raws, ids, _) = members(&srv, &mut rx, 4).await;
    groups.broadcast(ROOM, "one");
    assert_eq!(groups.send_to([&ids[0], &ids[3]], "two"), 2);
    groups.broadcast(ROOM, "three");
    for (i, raw) in raws.iter_mut().enumerate() {
        assert_eq!(text(raw).await, "one");
        if i == 0 || i == 3 {
            assert_eq!(text(raw).await, "two");
        }
        assert_eq!(text(raw).await, "three");
    }
    assert_eq!(groups.broadcast("nobody", "x"), 0);
    assert!(groups.members("nobody").is_empty());
}
