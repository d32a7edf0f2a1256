//! Group history across nodes, on a real redis-server: clients that reconnect to any node
//! since their last position get every broadcast once and in order while two nodes
//! publish; a node whose subscription is cut repairs what it missed from the stream; a
//! position of a history Redis lost is refused as another epoch, and members that missed
//! what history lost are closed, not left with a silent gap.
#![cfg(feature = "cluster")]

mod common;

use std::time::Duration;

use actix::prelude::*;
use actix_meta_websocket::*;
use actix_meta_websocket::{
    client::{Backoff, Resume},
    cluster::ClusterEvent,
    groups::{HistoryError, HistoryLimits, Position, PresenceEvent, Since, Unrecoverable},
};
use common::cluster::{event, events, history_node, roomy, session, session_first};
use common::history::{assert_whole, follow, Room};
use common::redis::{redis_installed, Redis};
use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message as TMessage;

/// Publishes `n` broadcasts (each its position), trying again whatever was not published
/// (Redis away a moment); the positions of those that were.
async fn publish(groups: &Groups, n: usize) -> Vec<Position> {
    let mut made = Vec::with_capacity(n);
    while made.len() < n {
        match groups.publish("room", |at| at.to_string()).await {
            Ok(p) => made.push(p.position),
            Err(HistoryError::NoHistory) => panic!("no history"),
            // Not published, or maybe: either way a new broadcast at a new position.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
        if made.len() % 8 == 7 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    made
}

#[actix_web::test]
async fn clients_reconnecting_to_any_node_get_every_broadcast_once_and_in_order() {
    if !redis_installed() {
        return;
    }
    let redis = Redis::start(&[]);
    let (a, srv_a) = history_node(&redis, roomy()).await;
    let (b, srv_b) = history_node(&redis, roomy()).await;
    // Two publishers, one on each node; 3,000 broadcasts in all after this first one.
    let first = a.groups().publish("room", |at| at.to_string()).await.unwrap().position;
    let last = Position { offset: first.offset + 3000, ..first };
    let urls = vec![srv_a.url(), srv_b.url()];
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let mut urls = urls.clone();
            urls.rotate_left(i % 2);
            let first = if i < 3 { Since::Now } else { Since::Start };
            actix_rt::spawn(async move { follow(&urls, last, first).await })
        })
        .collect();
    let (ga, gb) = (a.groups().clone(), b.groups().clone());
    let pa = actix_rt::spawn(async move { publish(&ga, 1500).await });
    let pb = actix_rt::spawn(async move { publish(&gb, 1500).await });
    let (made_a, made_b) = (pa.await.unwrap(), pb.await.unwrap());
    // Each publisher's broadcasts keep its order.
    assert!(made_a.windows(2).all(|w| w[0].offset < w[1].offset));
    assert!(made_b.windows(2).all(|w| w[0].offset < w[1].offset));
    for c in clients {
        let seen = c.await.unwrap();
        assert_whole(&seen, last);
    }
    drop((srv_a, srv_b));
}

/// The ids of the subscription links Redis has now.
fn pubsub_ids(redis: &Redis) -> Vec<String> {
    let list = redis.cli(&["CLIENT", "LIST", "TYPE", "pubsub"]);
    list.lines().filter_map(|l| l.split(' ').next()?.strip_prefix("id=").map(str::to_owned)).collect()
}

#[actix_web::test]
async fn a_node_whose_subscription_is_cut_repairs_from_the_stream_without_a_gap() {
    if !redis_installed() {
        return;
    }
    let redis = Redis::start(&[]);
    let (a, _srv_a) = history_node(&redis, roomy()).await;
    let publishers_link = pubsub_ids(&redis);
    let (b, srv_b) = history_node(&redis, roomy()).await;
    let (watch, mut seen_events) = events();
    b.subscribe(watch);
    let first = a.groups().publish("room", |at| at.to_string()).await.unwrap().position;
    let last = Position { offset: first.offset + 2000, ..first };
    // One client on b for the whole run: it never reconnects, so what b delivers is all it gets.
    let listener = {
        let url = format!("{}?since={first}", srv_b.url());
        actix_rt::spawn(async move { session(&url, Some(last)).await })
    };
    while b.groups().count("room") == 0 {
        tokio::task::yield_now().await;
    }
    let ga = a.groups().clone();
    let publisher = actix_rt::spawn(async move { publish(&ga, 2000).await });
    // Cut b's subscription link (only b's: a publishes on), three times, while the
    // broadcasts go on: what b missed meanwhile is read back from the stream.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let bs: Vec<String> =
            pubsub_ids(&redis).into_iter().filter(|id| !publishers_link.contains(id)).collect();
        assert_eq!(bs.len(), 1, "b's subscription link");
        redis.cli(&["CLIENT", "KILL", "ID", &bs[0]]);
        event(&mut seen_events, |e| matches!(e, ClusterEvent::BrokerUp).then_some(())).await;
    }
    let made = publisher.await.unwrap();
    assert_eq!(made.len(), 2000, "a published throughout");
    let (texts, closed) = listener.await.unwrap();
    assert_eq!(closed, None);
    let seen: Vec<Position> = texts.iter().map(|t| t.parse().unwrap()).collect();
    assert_whole(&seen, last);
}

#[actix_web::test]
async fn history_lost_with_redis_is_another_epoch_and_its_members_are_closed_not_left_with_a_gap() {
    if !redis_installed() {
        return;
    }
    let mut redis = Redis::start(&[]);
    let (a, srv_a) = history_node(&redis, roomy()).await;
    let (watch, mut seen_events) = events();
    a.subscribe(watch);
    let mut old = None;
    for _ in 0..10 {
        old = Some(a.groups().publish("room", |at| at.to_string()).await.unwrap().position);
    }
    let old = old.unwrap();
    // A member on a, up to date.
    let url = format!("{}?since={old}", srv_a.url());
    let member = actix_rt::spawn(async move { session(&url, None).await });
    while a.groups().count("room") == 0 {
        tokio::task::yield_now().await;
    }
    // Redis restarts without persistence: history is gone.
    redis.kill();
    redis.restart();
    event(&mut seen_events, |e| matches!(e, ClusterEvent::BrokerUp).then_some(())).await;
    let gap = event(&mut seen_events, |e| match e {
        ClusterEvent::HistoryGap { group, reason, closed } => Some((group.to_string(), *reason, *closed)),
        _ => None,
    })
    .await;
    assert_eq!(gap, ("room".to_owned(), Unrecoverable::OtherEpoch, 1));
    let (texts, closed) = member.await.unwrap();
    assert_eq!(closed, Some(1012), "closed so that it starts over: {texts:?}");
    // The old position is refused; the new history starts in another epoch.
    let new = a.groups().publish("room", |at| at.to_string()).await.unwrap().position;
    assert_ne!(new.epoch, old.epoch);
    assert_eq!(new.offset, 1);
    let (text, _) = session_first(&format!("{}?since={old}", srv_a.url())).await;
    assert_eq!(text, format!("unrecoverable OtherEpoch {new}"));
}

#[actix_web::test]
async fn positions_history_no_longer_holds_are_refused_on_any_node() {
    if !redis_installed() {
        return;
    }
    let redis = Redis::start(&[]);
    let (a, _srv_a) = history_node(&redis, HistoryLimits::default().max_messages(5)).await;
    let (b, srv_b) = history_node(&redis, HistoryLimits::default().max_messages(5)).await;
    let mut last = None;
    for _ in 0..20 {
        last = Some(a.groups().publish("room", |at| at.to_string()).await.unwrap().position);
    }
    let last = last.unwrap();
    let old = Position { offset: 3, ..last };
    let (texts, _) = session_first(&format!("{}?since={old}", srv_b.url())).await;
    assert_eq!(texts, format!("unrecoverable TooOld {last}"));
    // Within history: the last three, then live.
    let recent = Position { offset: last.offset - 3, ..last };
    let url = format!("{}?since={recent}", srv_b.url());
    let next = Position { offset: last.offset + 1, ..last };
    // A watcher keeps b's group while no member is in it, so that its position stays known.
    b.groups().watch("room", Watcher.start().recipient());
    let listener = actix_rt::spawn(async move { session(&url, Some(next)).await });
    while b.groups().count("room") == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(a.groups().publish("room", |at| at.to_string()).await.unwrap().position, next);
    let (texts, _) = listener.await.unwrap();
    let want: Vec<String> =
        (last.offset - 2..=next.offset).map(|o| Position { offset: o, ..last }.to_string()).collect();
    assert_eq!(texts, want);
    // Where the group stands as b knows it: the newest broadcast it delivered.
    assert_eq!(b.groups().position("room"), Some(next));
}

/// Watches a group and does nothing else: the group stays while it is watched.
struct Watcher;
impl Actor for Watcher {
    type Context = Context<Self>;
}
impl Handler<PresenceEvent> for Watcher {
    type Result = ();
    fn handle(&mut self, _: PresenceEvent, _: &mut Context<Self>) {}
}

/// A node whose every group keeps history as the chat's rooms do, serving `Room` on the
/// lobby (the third server) beside `history_node`'s own.
async fn lobby_node(redis: &Redis) -> (Cluster, TestServer, TestServer) {
    let limits = HistoryLimits::default().max_messages(100).max_age(Duration::from_secs(3600));
    let (a, srv) = history_node(redis, limits).await;
    a.groups().keep_history("*", limits);
    let groups = a.groups().clone();
    let lobby = serve_each(1, None, move || {
        let room = Room { groups: groups.clone(), group: "lobby" }.start();
        WsHandler::new(HandlerOptions::new(Target::from_addr(room))).unwrap()
    });
    (a, srv, lobby)
}

/// The position at the head of a chat line (`@<position> [room] ...`).
fn chat_position(text: &str) -> Option<Position> {
    text.strip_prefix('@')?.split(' ').next()?.parse().ok()
}

#[actix_web::test]
async fn a_killed_nodes_members_recover_on_another_node() {
    let Some(bin) = common::cluster::cluster_chat().filter(|_| redis_installed()) else { return };
    let redis = Redis::start(&[]);
    let (a, _srv, srv_a) = lobby_node(&redis).await;
    let victim = common::cluster::process(&redis, bin).await;
    // A client of the process node, in the lobby from its start.
    let url = format!("ws://{}/ws?room=lobby&since=start", victim.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("handshake");
    let mut seen = Vec::new();
    // Broadcasts from a, as the chat writes them, until the node dies under the client.
    let publish = |i: usize| a.groups().publish("lobby", move |at| format!("@{at} [lobby] a: {i}"));
    let first = publish(0).await.unwrap().position;
    let mut i = 1;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a message");
        let Some(Ok(TMessage::Text(t))) = msg else { break };
        if let Some(at) = chat_position(t.as_str()) {
            seen.push(at);
            if at.offset >= first.offset + 50 && victim.child.id().is_some() {
                victim.signal("-KILL");
            }
            publish(i).await.unwrap();
            i += 1;
        }
    }
    assert!(seen.len() >= 50, "the node served the client before it died: {}", seen.len());
    let before = seen.len();
    // A few more while the client is away, then it comes back on a, since where it was.
    for _ in 0..10 {
        publish(i).await.unwrap();
        i += 1;
    }
    let last = a.groups().publish("lobby", |at| format!("@{at} [lobby] a: last")).await.unwrap().position;
    let back = format!("{}?since={}", srv_a.url(), seen.last().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(&back).await.expect("handshake");
    while seen.last() != Some(&last) {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a message");
        let Some(Ok(TMessage::Text(t))) = msg else { panic!("{msg:?}") };
        seen.push(chat_position(t.as_str()).expect("a chat line"));
    }
    assert_eq!(seen.first(), Some(&first));
    assert!(seen.len() >= before + 11, "recovered what it missed on a: {} then {}", before, seen.len());
    assert_whole(&seen, last);
}

/// A client's target: records each chat line's position, for the test and for `Resume`.
struct Reader {
    resume: Resume,
    seen: tokio::sync::mpsc::UnboundedSender<Position>,
}
impl Actor for Reader {
    type Context = Context<Self>;
}
impl Handler<MessageConnect> for Reader {
    type Result = ();
    fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {}
}
impl Handler<WsMessage> for Reader {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        if let Some(at) = m.as_text().and_then(chat_position) {
            self.resume.seen(at);
            let _ = self.seen.send(at);
        }
    }
}
impl Handler<MessageDisconnect> for Reader {
    type Result = ();
    fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {}
}

#[actix_web::test]
async fn the_crates_client_fails_over_to_another_node_and_resumes_with_nothing_missed_or_twice() {
    let Some(bin) = common::cluster::cluster_chat().filter(|_| redis_installed()) else { return };
    let redis = Redis::start(&[]);
    let (a, _srv, srv_a) = lobby_node(&redis).await;
    let victim = common::cluster::process(&redis, bin).await;
    let (tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let resume = Resume::new("since");
    let reader = Reader { resume: resume.clone(), seen: tx }.start();
    let options = DialOptions::new(format!("ws://{}/ws?room=lobby&since=start", victim.addr), reader)
        .failover([format!("{}?room=lobby", srv_a.url())])
        .resume(resume);
    let backoff = Backoff { initial: Duration::from_millis(20), ..Backoff::default() };
    let client = reconnect(options, backoff, None);
    client.connected().await.expect("on the victim");
    let publish = |i: usize| a.groups().publish("lobby", move |at| format!("@{at} [lobby] a: {i}"));
    // The victim serves the client until it is killed, in the middle of the traffic.
    let mut seen = Vec::new();
    let first = publish(0).await.unwrap().position;
    for i in 1..=50 {
        seen.push(next_seen(&mut seen_rx).await);
        publish(i).await.unwrap();
    }
    victim.signal("-KILL");
    for i in 51..=80 {
        publish(i).await.unwrap();
    }
    let last = a.groups().publish("lobby", |at| format!("@{at} [lobby] a: last")).await.unwrap().position;
    while seen.last() != Some(&last) {
        seen.push(next_seen(&mut seen_rx).await);
    }
    assert_eq!(seen.first(), Some(&first));
    assert_whole(&seen, last);
    client.stop();
}

async fn next_seen(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Position>) -> Position {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("seen in time").expect("open")
}
