//! Group history on one node, over real sockets: clients that drop and reconnect since
//! the last position they saw get every broadcast once and in order while broadcasts keep
//! coming; a position history cannot cover is refused before anything is delivered; every
//! limit and kind of position does what it says; a member whose thread falls too far
//! behind is closed (1013) before the broadcast it missed.

mod common;

use std::time::Duration;

use actix::prelude::*;
use actix_meta_websocket::*;
use actix_meta_websocket::{
    client::{Backoff, Resume},
    groups::{HistoryError, HistoryLimits, Position, Recovered, RecoveryError, Since, Unrecoverable},
};
use common::history::{assert_whole, follow, publish, Room};
use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message as TMessage;

fn room_server(groups: &Groups) -> TestServer {
    let groups = groups.clone();
    serve_each(2, None, move || {
        let room = Room { groups: groups.clone(), group: "room" }.start();
        WsHandler::new(HandlerOptions::new(Target::from_addr(room))).unwrap()
    })
}

#[actix_web::test]
async fn reconnecting_clients_get_every_broadcast_once_and_in_order_under_load() {
    let groups = Groups::new();
    let limits = HistoryLimits::default().max_messages(10_000).max_replay(10_000).max_bytes(64 << 20);
    groups.keep_history("room", limits);
    let srv = room_server(&groups);
    const N: usize = 4000;
    // Where history stands before the load: the last position every client ends on.
    let last = Position {
        epoch: groups.publish("room", |at| at.to_string()).await.unwrap().position.epoch,
        offset: N as u64 + 1,
    };
    let urls = vec![srv.url()];
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let urls = urls.clone();
            let first = if i % 2 == 0 { Since::Now } else { Since::Start };
            actix_rt::spawn(async move { follow(&urls, last, first).await })
        })
        .collect();
    let made = publish(&groups, "room", N).await;
    assert_eq!(made.last(), Some(&last));
    for c in clients {
        let seen = c.await.unwrap();
        assert_whole(&seen, last);
        assert!(seen.len() > 100, "each client saw the load: {}", seen.len());
    }
    srv.handle.stop(false).await;
}

/// The first text of a client of `url`.
async fn first_text(url: &str) -> String {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("handshake");
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
    let Ok(Some(Ok(TMessage::Text(t)))) = msg else { panic!("{msg:?}") };
    t.as_str().to_owned()
}

#[actix_web::test]
async fn a_position_history_no_longer_holds_is_refused_and_nothing_is_delivered() {
    let groups = Groups::new();
    groups.keep_history("room", HistoryLimits::default().max_messages(5));
    let srv = room_server(&groups);
    let mut last = None;
    for _ in 0..20 {
        last = Some(groups.publish("room", |at| at.to_string()).await.unwrap().position);
    }
    let last = last.unwrap();
    let old = Position { offset: 3, ..last };
    let answer = first_text(&format!("{}?since={old}", srv.url())).await;
    assert_eq!(answer, format!("unrecoverable TooOld {last}"));
    assert_eq!(groups.count("room"), 0, "not joined");
    // From where history stands, the client starts again and gets the next broadcast.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}?since={last}", srv.url())).await.unwrap();
    while groups.count("room") == 0 {
        tokio::task::yield_now().await; // the join is made on the server's worker thread
    }
    let next = groups.publish("room", |at| at.to_string()).await.unwrap().position;
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
    assert!(matches!(msg, Ok(Some(Ok(TMessage::Text(t)))) if t.as_str() == next.to_string()));
    srv.handle.stop(false).await;
}

#[actix_web::test]
async fn each_kind_of_position_gets_what_it_asks_for() {
    let groups = Groups::new();
    groups.keep_history("room:*", HistoryLimits::default().max_replay(3));
    let (worker, mut rx) = recorder("w", false);
    let srv = serve(WsHandler::new(options(worker)).unwrap());
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(tungstenite(&srv.url()).await);
        let Event::Connect(c) = next(&mut rx).await.1 else { panic!("connect") };
        ids.push(c.id);
    }
    assert_eq!(groups.join_since("other", &ids[0], "", Since::Now).await, Err(RecoveryError::NoHistory));
    for i in 1..=5 {
        assert_eq!(groups.publish("room:a", move |_| format!("m{i}")).await.unwrap().position.offset, i);
    }
    let at = groups.position("room:a").unwrap();
    let unrecoverable = |reason| Err(RecoveryError::Unrecoverable { reason, current: Some(at) });
    let other = Position { epoch: at.epoch.wrapping_add(1), offset: 1 };
    assert_eq!(
        groups.join_since("room:a", &ids[0], "", Since::After(other)).await,
        unrecoverable(Unrecoverable::OtherEpoch)
    );
    let ahead = Position { offset: 9, ..at };
    assert_eq!(
        groups.join_since("room:a", &ids[0], "", Since::After(ahead)).await,
        unrecoverable(Unrecoverable::Ahead)
    );
    let behind = Position { offset: 1, ..at };
    assert_eq!(
        groups.join_since("room:a", &ids[0], "", Since::After(behind)).await,
        unrecoverable(Unrecoverable::TooFarBehind)
    );
    assert_eq!(groups.count("room:a"), 0, "none of them joined");
    // The last 2, the latest 3 (max_replay), nothing: each then live.
    let two = Position { offset: 3, ..at };
    let got = groups.join_since("room:a", &ids[1], "", Since::After(two)).await;
    assert_eq!(got, Ok(Recovered { replayed: 2, position: at }));
    assert_eq!(groups.join_since("room:a", &ids[2], "", Since::Start).await.map(|r| r.replayed), Ok(3));
    assert_eq!(groups.join_since("room:a", &ids[3], "", Since::Now).await.map(|r| r.replayed), Ok(0));
    // A member already in joins again: nothing replayed, nothing doubled.
    assert_eq!(groups.join_since("room:a", &ids[3], "again", Since::Start).await.map(|r| r.replayed), Ok(0));
    groups.broadcast("room:a", "m6");
    let texts = |n| async move {
        let mut ws: tokio_tungstenite::WebSocketStream<_> = n;
        let mut out = Vec::new();
        while out.last().map(String::as_str) != Some("m6") {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
            let Ok(Some(Ok(TMessage::Text(t)))) = msg else { panic!("{msg:?}") };
            out.push(t.as_str().to_owned());
        }
        out
    };
    let mut clients = clients.into_iter();
    let _first = clients.next();
    assert_eq!(texts(clients.next().unwrap()).await, ["m4", "m5", "m6"]);
    assert_eq!(texts(clients.next().unwrap()).await, ["m3", "m4", "m5", "m6"]);
    assert_eq!(texts(clients.next().unwrap()).await, ["m6"]);
    srv.handle.stop(false).await;
}

#[actix_web::test]
async fn history_keeps_a_group_with_no_member_and_a_new_group_starts_a_new_epoch() {
    let groups = Groups::new();
    groups.keep_history("news", HistoryLimits::default().max_age(Duration::from_secs(60)));
    let first = groups.publish("news", |_| "one").await.unwrap().position;
    assert_eq!(first.offset, 1);
    assert_eq!(groups.names(), ["news".into()] as [std::sync::Arc<str>; 1], "kept with nobody in it");
    let again = groups.publish("news", |_| "two").await.unwrap().position;
    assert_eq!((again.epoch, again.offset), (first.epoch, 2));
    // Without a rule: no history, and a publish says so.
    assert_eq!(groups.publish("plain", |_| "x").await, Err(HistoryError::NoHistory));
    // Another `Groups`: another history, another epoch.
    let other = Groups::new();
    other.keep_history("news", HistoryLimits::default());
    let p = other.publish("news", |_| "one").await.unwrap().position;
    assert_ne!(p.epoch, first.epoch);
}

/// A client's target that notes each position it sees (broadcasts are positions).
struct Follower {
    resume: Resume,
    seen: tokio::sync::mpsc::UnboundedSender<Position>,
}

impl Actor for Follower {
    type Context = Context<Self>;
}

impl Handler<MessageConnect> for Follower {
    type Result = ();
    fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {}
}

impl Handler<WsMessage> for Follower {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        let at: Position = m.as_text().and_then(|t| t.parse().ok()).expect("a position");
        self.resume.seen(at);
        let _ = self.seen.send(at);
    }
}

impl Handler<MessageDisconnect> for Follower {
    type Result = ();
    fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {}
}

#[actix_web::test]
async fn the_crates_reconnecting_client_resumes_after_the_last_position_it_saw() {
    let groups = Groups::new();
    groups.keep_history("room", HistoryLimits::default().max_messages(10_000).max_replay(10_000));
    let srv = room_server(&groups);
    let first = groups.publish("room", |at| at.to_string()).await.unwrap().position;
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let resume = Resume::new("since");
    resume.seen(first);
    let follower = Follower { resume: resume.clone(), seen: tx }.start();
    let options = DialOptions::new(srv.url(), Target::from_addr(follower)).resume(resume.clone());
    let backoff = Backoff { initial: Duration::from_millis(10), ..Backoff::default() };
    let client = reconnect(options, backoff, None);
    client.connected().await.expect("connected");
    while groups.count("room") == 0 {
        tokio::task::yield_now().await;
    }
    let g = groups.clone();
    let publisher = actix_rt::spawn(async move { publish(&g, "room", 2000).await });
    // The server drops its members four times meanwhile; the client dials again each time.
    let mut drops = 0;
    let mut got = vec![first];
    let last = Position { offset: first.offset + 2000, ..first };
    while got.last() != Some(&last) {
        let at = tokio::time::timeout(Duration::from_secs(10), seen.recv()).await.expect("in time").unwrap();
        got.push(at);
        if drops < 4 && got.len() % 300 == 0 {
            drops += 1;
            for m in groups.members("room") {
                let _ = m.id.close(1012, "restarting");
            }
        }
    }
    publisher.await.unwrap();
    assert_eq!(drops, 4);
    assert_whole(&got, last);
    assert_eq!(resume.last(), Some(last));
    client.stop();
    srv.handle.stop(false).await;
}

/// Joins each connection since its URL's position, refusing by the crate's convention.
struct Refusing(Groups);
impl Actor for Refusing {
    type Context = Context<Self>;
}
impl Handler<MessageConnect> for Refusing {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        let since = Since::from_query(m.query(), "since").unwrap().unwrap_or(Since::Now);
        // On one node the outcome is there at once: no task needed.
        let joined = self.0.join_since("room", &m.id, "", since).now().expect("there at once");
        if let Err(RecoveryError::Unrecoverable { reason, .. }) = joined {
            reason.refuse(&m.id);
        }
    }
}
impl Handler<WsMessage> for Refusing {
    type Result = ();
    fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {}
}
impl Handler<MessageDisconnect> for Refusing {
    type Result = ();
    fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {}
}

#[actix_web::test]
async fn a_refusal_closes_with_the_conventions_code_and_the_crates_client_starts_over() {
    let groups = Groups::new();
    groups.keep_history("room", HistoryLimits::default().max_messages(5));
    let g = groups.clone();
    let srv = serve_each(1, None, move || {
        WsHandler::new(HandlerOptions::new(Target::from_addr(Refusing(g.clone()).start()))).unwrap()
    });
    let mut last = None;
    for _ in 0..20 {
        last = Some(groups.publish("room", |at| at.to_string()).now().unwrap().unwrap().position);
    }
    let last = last.unwrap();
    let cases = [
        (Position { offset: 3, ..last }, Unrecoverable::TooOld),
        (Position { epoch: last.epoch ^ 1, ..last }, Unrecoverable::OtherEpoch),
        (Position { offset: 99, ..last }, Unrecoverable::Ahead),
    ];
    for (since, reason) in cases {
        // The crate's client, resuming since a position history no longer holds.
        let resume = Resume::new("since");
        resume.seen(since);
        let (worker, mut rx) = recorder("client", false);
        let opts = DialOptions::new(srv.url(), Target::from_addr(worker)).resume(resume.clone());
        connect(opts).await.expect("upgraded, then refused");
        let d = next_disconnect(&mut rx).await;
        assert_eq!(d.reason.code(), reason.close_code(), "{}", d.reason);
        assert!(d.reason.to_string().ends_with(&reason.to_string()), "{}", d.reason);
        assert_eq!(resume.closed(&d.reason), Some(reason));
        assert_eq!(resume.last(), None, "starts over");
    }
}

/// Joins each connection since `?since=` (as `Room`) and says "joined"; on "stall", blocks
/// its worker thread for a while, after saying so on `stalling`: the thread's connections
/// then fall behind the group's broadcasts.
struct StallingRoom {
    groups: Groups,
    stalling: std::sync::mpsc::Sender<()>,
}

impl Actor for StallingRoom {
    type Context = Context<Self>;
}

impl Handler<MessageConnect> for StallingRoom {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        let joining = self.groups.join_since("room", &m.id, "", common::history::since_of(&m.uri));
        actix::spawn(async move {
            joining.await.expect("joined");
            m.id.send("joined");
        });
    }
}

impl Handler<WsMessage> for StallingRoom {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        if m.as_text() == Some("stall") {
            let _ = self.stalling.send(());
            std::thread::sleep(Duration::from_secs(2)); // the whole worker thread stops
        }
    }
}

impl Handler<MessageDisconnect> for StallingRoom {
    type Result = ();
    fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {}
}

#[actix_web::test]
async fn a_member_whose_thread_falls_too_far_behind_is_closed_before_the_broadcast_it_missed() {
    const SIZE: usize = 64 * 1024;
    let groups = Groups::new().with_thread_backlog(4 * SIZE);
    groups.keep_history("room", HistoryLimits::default().max_bytes(64 << 20));
    let (stalling, stalled) = std::sync::mpsc::channel();
    let stalled = std::sync::Arc::new(std::sync::Mutex::new(stalled));
    let g = groups.clone();
    let srv = serve_each(1, None, move || {
        let room = StallingRoom { groups: g.clone(), stalling: stalling.clone() }.start();
        WsHandler::new(HandlerOptions::new(Target::from_addr(room))).unwrap()
    });
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}?since=now", srv.url())).await.expect("handshake");
    let joined = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("joined in time");
    assert!(matches!(joined, Some(Ok(TMessage::Text(ref t))) if t.as_str() == "joined"), "{joined:?}");
    futures_util::SinkExt::send(&mut ws, TMessage::text("stall")).await.unwrap();
    let rx = stalled.clone();
    tokio::task::spawn_blocking(move || rx.lock().unwrap().recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the worker thread stalls");
    // Past the thread's backlog bound while it stalls: the member there is closed rather
    // than left with a gap it would not know of.
    let mut made = Vec::new();
    for _ in 0..10 {
        let p = groups.publish("room", |at| format!("{at} {}", "x".repeat(SIZE))).await.expect("published");
        made.push(p.position);
    }
    let mut seen = Vec::new();
    let code = loop {
        let msg =
            tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a message or the close");
        match msg {
            Some(Ok(TMessage::Text(t))) => {
                seen.push(t.split(' ').next().unwrap().parse::<Position>().unwrap())
            }
            Some(Ok(TMessage::Close(Some(f)))) => break u16::from(f.code),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, 1013, "closed so that it recovers from history");
    assert_eq!(seen, made[..seen.len()], "what it got ends before the broadcast it missed");
    assert!(seen.len() < made.len());
    srv.handle.stop(false).await;
}
