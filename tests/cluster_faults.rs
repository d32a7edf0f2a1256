//! Compound broker faults on real redis-server processes: Redis and every node gone
//! together, Redis back from an older snapshot or a shorter AOF (what `everysec` can
//! lose), and a position must still name one broadcast; a node that comes back to Redis
//! while its connections keep joining and leaving; a node without members that publishes
//! after Redis rolled back; a cluster's groups with a thread backlog of their own.
#![cfg(feature = "cluster")]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_meta_websocket::*;
use actix_meta_websocket::{cluster::ClusterEvent, groups::Position};
use common::cluster::*;
use common::redis::{group_channel, redis_installed, Redis, TempDir};
use common::*;

/// How Redis keeps its data, and how it comes back with less than it had.
#[derive(Clone, Copy, Debug)]
enum Backup {
    /// A snapshot taken earlier (`SAVE`), nothing written since.
    Snapshot,
    /// An AOF cut back to an earlier point (`appendfsync everysec` losing its last second).
    Aof,
}

impl Backup {
    fn start(self, dir: &TempDir) -> Redis {
        match self {
            Backup::Snapshot => Redis::start(&["--dir", dir.path()]),
            Backup::Aof => {
                Redis::start(&["--dir", dir.path(), "--appendonly", "yes", "--appendfsync", "always"])
            }
        }
    }

    /// Keeps what Redis holds now, to come back to.
    fn checkpoint(self, redis: &Redis, dir: &TempDir) {
        match self {
            Backup::Snapshot => assert_eq!(redis.cli(&["SAVE"]), "OK"),
            Backup::Aof => copy_dir(&dir.0.join("appendonlydir"), &dir.0.join("kept")),
        }
    }

    /// Kills Redis and starts it again from the checkpoint.
    fn roll_back(self, redis: &mut Redis, dir: &TempDir) {
        redis.kill();
        if let Backup::Aof = self {
            let live = dir.0.join("appendonlydir");
            std::fs::remove_dir_all(&live).expect("remove the AOF");
            copy_dir(&dir.0.join("kept"), &live);
        }
        redis.restart();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

async fn publish_n(groups: &Groups, n: usize) -> Vec<Position> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(groups.publish("room", |at| at.to_string()).await.expect("published").position);
    }
    out
}

/// Publishes until Redis takes it (the node may still be reconnecting), within 10 s.
async fn publish_once_up(groups: &Groups) -> Position {
    let deadline = Instant::now() + WAIT;
    loop {
        match groups.publish("room", |at| at.to_string()).await {
            Ok(p) => return p.position,
            Err(e) => assert!(Instant::now() < deadline, "never published again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One node and Redis, both killed; Redis back with less than it gave out, a new node.
async fn positions_stay_unique_when_everything_comes_back(backup: Backup) {
    let dir = TempDir::new("rollback");
    let mut redis = backup.start(&dir);
    let (a, srv_a) = history_node(&redis, roomy()).await;
    let kept = publish_n(a.groups(), 10).await;
    backup.checkpoint(&redis, &dir);
    let lost = publish_n(a.groups(), 10).await;
    let seen = *lost.last().unwrap();
    // Redis and the node go together: nothing that survives remembers offset 20.
    srv_a.handle.stop(false).await;
    redis.kill();
    tokio::time::timeout(WAIT, a.leave()).await.expect("the node stops without Redis");
    backup.roll_back(&mut redis, &dir);
    let (b, srv_b) = history_node(&redis, roomy()).await;
    let after = publish_n(b.groups(), 15).await;
    for p in &after {
        assert!(!kept.contains(p) && !lost.contains(p), "{backup:?}: position {p} was given out before");
    }
    assert_ne!(after[0].epoch, seen.epoch, "{backup:?}: history came back with less: another epoch");
    // A member that saw the lost broadcasts is told it cannot recover, before anything.
    for since in [seen, kept[9], kept[0]] {
        let (first, _) = session_first(&format!("{}?since={since}", srv_b.url())).await;
        assert_eq!(first, format!("unrecoverable OtherEpoch {}", after[14]), "{backup:?} since {since}");
    }
}

#[actix_web::test]
async fn a_position_names_one_broadcast_after_redis_and_every_node_come_back_from_a_snapshot() {
    if redis_installed() {
        positions_stay_unique_when_everything_comes_back(Backup::Snapshot).await;
    }
}

#[actix_web::test]
async fn a_position_names_one_broadcast_after_redis_and_every_node_come_back_from_a_shorter_aof() {
    if redis_installed() {
        positions_stay_unique_when_everything_comes_back(Backup::Aof).await;
    }
}

#[actix_web::test]
async fn a_node_without_members_publishes_again_after_redis_rolled_back() {
    if !redis_installed() {
        return;
    }
    for backup in [Backup::Snapshot, Backup::Aof] {
        let dir = TempDir::new("memberless");
        let mut redis = backup.start(&dir);
        let (publisher, _srv) = history_node(&redis, roomy()).await;
        let kept = publish_n(publisher.groups(), 10).await;
        backup.checkpoint(&redis, &dir);
        let lost = publish_n(publisher.groups(), 10).await;
        // The publisher lives on, and Redis comes back behind it.
        backup.roll_back(&mut redis, &dir);
        let next = publish_once_up(publisher.groups()).await;
        assert!(!kept.contains(&next) && !lost.contains(&next), "{backup:?}: {next} given out twice");
        assert_eq!(next.offset, 1, "{backup:?}: a new epoch starts at 1: {next}");
        let more = publish_n(publisher.groups(), 3).await;
        assert_eq!(
            more.iter().map(|p| (p.epoch, p.offset)).collect::<Vec<_>>(),
            [2, 3, 4].map(|o| (next.epoch, o))
        );
    }
}

/// Opens and closes connections to `node` (each joins and leaves the room) until `stop`.
fn churn(
    addr: std::net::SocketAddr,
    stop: tokio::sync::watch::Receiver<bool>,
) -> actix_rt::task::JoinHandle<usize> {
    actix_rt::spawn(async move {
        let mut cycles = 0;
        while !*stop.borrow() {
            let (mut c, _) = RawClient::connect_path(addr, "/ws?churn").await;
            let _ = c.recv().await; // its global id: it is in the room now
            c.send_raw(&client_frame(true, 0, 0x8, &1000u16.to_be_bytes())).await;
            c.read_to_end().await;
            cycles += 1;
        }
        cycles
    })
}

#[actix_web::test]
async fn a_node_comes_back_to_redis_within_a_second_while_its_connections_churn() {
    if !redis_installed() {
        return;
    }
    let mut redis = Redis::start(&[]);
    let a = node(&redis).await;
    let (watch, mut seen) = events();
    a.cluster.subscribe(watch);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let churners: Vec<_> = (0..8).map(|_| churn(a.server.addr, stop.clone())).collect();
    for _ in 0..2 {
        redis.kill();
        event(&mut seen, |e| matches!(e, ClusterEvent::BrokerDown).then_some(())).await;
        // An outage of seconds, with joins and leaves going on throughout.
        tokio::time::sleep(Duration::from_secs(2)).await;
        redis.restart();
        let back = Instant::now();
        event(&mut seen, |e| matches!(e, ClusterEvent::BrokerUp).then_some(())).await;
        let took = back.elapsed();
        assert!(took < Duration::from_secs(1), "the node came back {took:?} after Redis");
    }
    stop_tx.send(true).unwrap();
    for c in churners {
        assert!(c.await.unwrap() > 0, "the connections churned");
    }
}

#[actix_web::test]
async fn a_clusters_groups_with_a_thread_backlog_deliver_local_and_remote_broadcasts() {
    if !redis_installed() {
        return;
    }
    let redis = Redis::start(&[]);
    let a = Cluster::join(fast(&redis.url())).await.expect("joined");
    let groups = a.groups().clone().with_thread_backlog(1 << 20);
    assert_eq!(a.groups().thread_backlog(), 1 << 20, "the same groups");
    let g = groups.clone();
    let srv = serve_each(1, None, move || {
        WsHandler::new(HandlerOptions::new(Target::from_addr(Joiner(g.clone()).start()))).unwrap()
    });
    let b = node(&redis).await;
    let (mut c, _) = RawClient::connect_path(srv.addr, &format!("/ws?{ROOM}")).await;
    assert_eq!(text(&mut c).await, "joined");
    redis.await_numsub(&group_channel(ROOM), 1).await;
    assert_eq!(groups.broadcast(ROOM, "local"), 1);
    assert_eq!(text(&mut c).await, "local");
    b.cluster.groups().broadcast(ROOM, "from b");
    assert_eq!(text(&mut c).await, "from b");
}

#[actix_web::test]
async fn a_node_starts_while_redis_is_away_serves_locally_and_joins_when_it_comes() {
    if !redis_installed() {
        return;
    }
    let port = common::redis::free_port();
    let a = node_with(fast(&format!("redis://127.0.0.1:{port}"))).await;
    assert!(!a.cluster.is_broker_up());
    let (watch, mut seen) = events();
    a.cluster.subscribe(watch);
    event(&mut seen, |e| matches!(e, ClusterEvent::BrokerDown).then_some(())).await;
    // Its own connections and groups work meanwhile.
    let (mut a1c, a1) = client(&a, "a1").await;
    let (mut a2c, _) = client(&a, "a2").await;
    assert_eq!(a.cluster.groups().broadcast_except(ROOM, "local", &a.cluster.local(&a1).unwrap()), 1);
    assert_eq!(text(&mut a2c).await, "local");
    // Redis comes: the node joins, and another node reaches its members.
    let redis = Redis::start_on(port, &[]);
    event(&mut seen, |e| matches!(e, ClusterEvent::BrokerUp).then_some(())).await;
    assert!(a.cluster.is_broker_up());
    let b = node(&redis).await;
    redis.await_numsub(&group_channel(ROOM), 1).await;
    b.cluster.groups().broadcast(ROOM, "from b");
    assert_eq!(text(&mut a1c).await, "from b");
    assert_eq!(text(&mut a2c).await, "from b");
}
