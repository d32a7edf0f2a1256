//! Presence across nodes never lies, and nobody misses it by coming late: a subscriber is
//! told the nodes already up, a watcher the members already there; a node killed or
//! stalled past the node timeout takes its members with it (one event each), and comes
//! back with them; joins and leaves while Redis was away reach the watchers once it is
//! back. Real `redis-server`s on loopback; nodes in this process or `cluster_chat`
//! processes.
#![cfg(feature = "cluster")]

mod common;

use std::time::{Duration, Instant};

use actix_meta_websocket::{
    cluster::{ClusterEvent, GlobalId, NodeId},
    groups::PresenceChange,
};
use common::cluster::*;
use common::redis::{group_channel, redis_installed, Redis};
use common::*;
use tokio::sync::mpsc::UnboundedReceiver;

/// The next presence change of `group` the watcher is told, as (member's metadata, change).
async fn change(seen: &mut UnboundedReceiver<ClusterEvent>) -> (GlobalId, String, PresenceChange) {
    event(seen, |e| match e {
        ClusterEvent::Presence { member, change, .. } => Some((member.id, member.meta.to_string(), *change)),
        _ => None,
    })
    .await
}

/// Waits for `node` to be up on the subscriber.
async fn node_up(rx: &mut UnboundedReceiver<ClusterEvent>, node: NodeId) {
    event(rx, |e| matches!(e, ClusterEvent::NodeUp(n) if *n == node).then_some(())).await
}

#[actix_rt::test]
async fn a_late_subscriber_is_told_the_nodes_up_and_a_broker_already_down() {
    if !redis_installed() {
        return;
    }
    let mut redis = Redis::start(&[]);
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (early, mut early_rx) = events();
    b.cluster.subscribe(early);
    node_up(&mut early_rx, a.cluster.node()).await;
    // B has heard A already: a subscriber that comes now still learns of it, first.
    let (late, mut late_rx) = events();
    b.cluster.subscribe(late);
    let first = tokio::time::timeout(WAIT, late_rx.recv()).await.expect("told at once");
    assert!(matches!(first, Some(ClusterEvent::NodeUp(n)) if n == a.cluster.node()), "{first:?}");

    redis.kill();
    event(&mut early_rx, |e| matches!(e, ClusterEvent::BrokerDown).then_some(())).await;
    let (later, mut later_rx) = events();
    b.cluster.subscribe(later);
    node_up(&mut later_rx, a.cluster.node()).await;
    let next = tokio::time::timeout(WAIT, later_rx.recv()).await.expect("told at once");
    assert!(matches!(next, Some(ClusterEvent::BrokerDown)), "{next:?}");
}

#[actix_rt::test]
async fn a_late_watcher_is_told_every_member_already_there_then_each_change() {
    if !redis_installed() {
        return;
    }
    let redis = Redis::start(&[]);
    let (a, b, c) = (node(&redis).await, node(&redis).await, node(&redis).await);
    let (_a1c, a1) = client(&a, "a1").await;
    let (mut b1c, b1) = client(&b, "b1").await;
    redis.await_numsub(&group_channel(ROOM), 2).await;
    // B watches: its own member and A's are there already.
    let (watcher, mut seen) = events();
    b.cluster.watch(ROOM, watcher);
    let mut first = vec![change(&mut seen).await, change(&mut seen).await];
    first.sort_by_key(|c| c.0);
    let mut want =
        vec![(a1, "a1".to_owned(), PresenceChange::Present), (b1, "b1".to_owned(), PresenceChange::Present)];
    want.sort_by_key(|c| c.0);
    assert_eq!(first, want);
    // Then the changes, on any node, each once.
    let (_c1c, c1) = client(&c, "c1").await;
    assert_eq!(change(&mut seen).await, (c1, "c1".into(), PresenceChange::Joined));
    close(&mut b1c).await;
    assert_eq!(change(&mut seen).await, (b1, "b1".into(), PresenceChange::Disconnected));
}

#[actix_rt::test]
async fn a_killed_node_takes_its_members_with_it_and_its_presence_expires() {
    let Some(bin) = cluster_chat().filter(|_| redis_installed()) else { return };
    let redis = Redis::start(&[]);
    let a = node(&redis).await;
    let (ea, mut a_events) = events();
    a.cluster.subscribe(ea);
    let (watcher, mut seen) = events();
    a.cluster.watch("lobby", watcher);
    // A listens to the lobby before the guest comes: the guest is news to it.
    redis.await_numsub(&group_channel("lobby"), 1).await;
    let p = process(&redis, bin).await;
    node_up(&mut a_events, p.node).await;
    let (mut guest, _) = RawClient::connect_path(p.addr, "/ws").await;
    let _greeting = text(&mut guest).await;
    let (guest_id, guest_name, joined) = change(&mut seen).await;
    assert_eq!((guest_id.node(), joined), (p.node, PresenceChange::Joined));
    assert_eq!(a.cluster.members("lobby").await.expect("members").len(), 1);
    // The lobby's index of nodes outlives the node timeout many times over (it is written
    // every tenth heartbeat); the hashes it points to say who is there.
    let index_ttl: u64 = redis.cli(&["PTTL", "amw:gn:{lobby}"]).parse().expect("a PTTL");
    assert!(index_ttl > 3 * 600, "the index lives {index_ttl} ms");

    p.signal("-KILL");
    let killed = Instant::now();
    // One event per member that left with the node, besides NodeDown.
    assert_eq!(change(&mut seen).await, (guest_id, guest_name, PresenceChange::Disconnected));
    event(&mut a_events, |e| matches!(e, ClusterEvent::NodeDown(n) if *n == p.node).then_some(())).await;
    eprintln!("node down reported {:?} after the kill (node timeout 600 ms)", killed.elapsed());
    // Its presence entries expire with the node timeout of its last heartbeat.
    let deadline = Instant::now() + WAIT;
    while !a.cluster.members("lobby").await.expect("members").is_empty() {
        assert!(Instant::now() < deadline, "the dead node's member is still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("its presence gone {:?} after the kill", killed.elapsed());
    // The read that found its hash gone took it out of the index.
    let index = redis.cli(&["SMEMBERS", "amw:gn:{lobby}"]);
    assert!(!index.lines().any(|n| n == p.node.to_string()), "still indexed: {index}");
}

#[actix_rt::test]
async fn a_node_stalled_past_the_node_timeout_comes_back_with_its_members() {
    let Some(bin) = cluster_chat().filter(|_| redis_installed()) else { return };
    let redis = Redis::start(&[]);
    let a = node(&redis).await;
    let (ea, mut a_events) = events();
    a.cluster.subscribe(ea);
    let (watcher, mut seen) = events();
    a.cluster.watch("lobby", watcher);
    let p = process(&redis, bin).await;
    let (mut guest, _) = RawClient::connect_path(p.addr, "/ws").await;
    let _greeting = text(&mut guest).await;
    let (guest_id, name, _) = change(&mut seen).await;

    // Stopped (as a process stalled by its machine would be): taken for dead.
    p.signal("-STOP");
    assert_eq!(change(&mut seen).await, (guest_id, name.clone(), PresenceChange::Disconnected));
    event(&mut a_events, |e| matches!(e, ClusterEvent::NodeDown(n) if *n == p.node).then_some(())).await;
    let deadline = Instant::now() + WAIT;
    while !a.cluster.members("lobby").await.expect("members").is_empty() {
        assert!(Instant::now() < deadline, "the stalled node's presence never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Going on: it finds its presence expired, writes it again and says so.
    p.signal("-CONT");
    node_up(&mut a_events, p.node).await;
    assert_eq!(change(&mut seen).await, (guest_id, name, PresenceChange::Joined));
    let listed = a.cluster.members("lobby").await.expect("members");
    assert_eq!(listed.iter().map(|m| m.id).collect::<Vec<_>>(), [guest_id]);
}

#[actix_rt::test]
async fn joins_and_leaves_while_redis_was_away_reach_the_watchers_once_it_is_back() {
    if !redis_installed() {
        return;
    }
    let mut redis = Redis::start(&[]);
    let (a, mut b) = (node(&redis).await, node(&redis).await);
    let (watcher, mut seen) = events();
    a.cluster.watch(ROOM, watcher);
    // A listens to the room before b0 joins: b0 is news to it, not a member already there.
    redis.await_numsub(&group_channel(ROOM), 1).await;
    let (mut b0c, b0) = client(&b, "b0").await;
    assert_eq!(change(&mut seen).await, (b0, "b0".into(), PresenceChange::Joined));
    let (ea, mut a_events) = events();
    let (eb, mut b_events) = events();
    a.cluster.subscribe(ea);
    b.cluster.subscribe(eb);

    redis.kill();
    for rx in [&mut a_events, &mut b_events] {
        event(rx, |e| matches!(e, ClusterEvent::BrokerDown).then_some(())).await;
    }
    // While Redis is away: b1 joins B, b0 leaves it. Nobody else can hear of it.
    let (_b1c, b1) = client(&b, "b1").await;
    close(&mut b0c).await;
    b.ended.recv().await.expect("b0 ended");
    redis.restart();
    for rx in [&mut a_events, &mut b_events] {
        event(rx, |e| matches!(e, ClusterEvent::BrokerUp).then_some(())).await;
    }
    // Both changes reach A's watcher, each once, before anything that happens later.
    let (_b2c, b2) = client(&b, "b2").await;
    let mut told = Vec::new();
    loop {
        let c = change(&mut seen).await;
        if c.0 == b2 {
            break;
        }
        told.push(c);
    }
    told.sort_by_key(|c| c.0);
    let mut want = vec![
        (b0, "b0".to_owned(), PresenceChange::Disconnected),
        (b1, "b1".to_owned(), PresenceChange::Joined),
    ];
    want.sort_by_key(|c| c.0);
    assert_eq!(told, want);
    let mut listed: Vec<GlobalId> =
        a.cluster.members(ROOM).await.expect("members").iter().map(|m| m.id).collect();
    listed.sort();
    let mut now = vec![b1, b2];
    now.sort();
    assert_eq!(listed, now);
}

/// The chat example, built on `Cluster::watch`, on two nodes in processes of their own:
/// when one is killed, a page on the other is told its guest left.
#[actix_rt::test]
async fn the_chat_tells_its_pages_when_a_node_dies_with_a_guest() {
    let Some(bin) = cluster_chat().filter(|_| redis_installed()) else { return };
    let redis = Redis::start(&[]);
    let (p1, p2) = (process(&redis, bin.clone()).await, process(&redis, bin).await);
    let (mut g1, _) = RawClient::connect_path(p1.addr, "/ws").await;
    let hello = text(&mut g1).await;
    let me = hello.split_whitespace().nth(2).expect("a name").to_owned();
    // The first node listens to the lobby before the second guest comes: its chat tells
    // the news (a guest there already when it began to watch would be no news).
    redis.await_numsub(&group_channel("lobby"), 1).await;
    let (mut g2, _) = RawClient::connect_path(p2.addr, "/ws").await;
    let hello = text(&mut g2).await;
    let other = hello.split_whitespace().nth(2).expect("a name").to_owned();
    loop {
        let t = text(&mut g1).await;
        if t.starts_with(&format!("[lobby] {other} joined")) {
            break;
        }
    }
    p2.signal("-KILL");
    let left = loop {
        let t = text(&mut g1).await;
        if t.contains(&other) {
            break t;
        }
    };
    assert_eq!(left, format!("[lobby] {other} left; here: {me}"));
}
