//! A cluster on Redis Cluster (three primaries, three replicas on loopback, node timeout
//! 1 s). Groups spread over the shards, and what a group does runs on its shard alone.
//! Under broadcasts to groups with history on every shard, one shard's primary is killed,
//! stopped past its failover, failed over by hand, or has the group's slot taken away:
//! cross-node delivery comes back, groups on the other shards lose nothing, and on the
//! shard that failed every loss is one its members are told of.
#![cfg(feature = "cluster")]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_meta_websocket::groups::{HistoryLimits, Position};
use actix_meta_websocket::*;
use common::cluster::{fast, node_with, Joiner, Node};
use common::history::Room;
use common::redis::{group_channel, redis_installed, Redis};
use common::*;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as TMessage;

/// Redis Cluster fails over within about 2 to 3 s here; more than this is a failure.
const FAILOVER: Duration = Duration::from_secs(20);

/// Every command each primary runs while it lasts, as `MONITOR` prints them.
struct Monitor {
    children: Vec<(u16, std::process::Child)>,
    lines: Arc<Mutex<HashMap<u16, Vec<String>>>>,
}

impl Monitor {
    fn start(ports: &[u16]) -> Monitor {
        let lines: Arc<Mutex<HashMap<u16, Vec<String>>>> = Arc::default();
        let mut children = Vec::new();
        for &port in ports {
            let mut child = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "MONITOR"])
                .stdout(Stdio::piped())
                .spawn()
                .expect("redis-cli MONITOR");
            let mut out = BufReader::new(child.stdout.take().expect("stdout"));
            // Its first line is its OK: from then on it sees every command.
            let mut ok = String::new();
            out.read_line(&mut ok).expect("MONITOR's OK");
            assert_eq!(ok.trim(), "OK");
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in out.lines().map_while(Result::ok) {
                    lines.lock().unwrap().entry(port).or_default().push(line);
                }
            });
            children.push((port, child));
        }
        Monitor { children, lines }
    }

    /// The crate's commands seen on `port` that name `needle` (not the test's own
    /// `PUBSUB` queries).
    fn naming(&self, port: u16, needle: &str) -> usize {
        let ours = |l: &&String| l.contains(needle) && !l.to_ascii_lowercase().contains("] \"pubsub\"");
        self.lines.lock().unwrap().get(&port).map_or(0, |l| l.iter().filter(ours).count())
    }

    fn stop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How many subscribers each of `channels` has, summed over the primaries (a shard
/// channel is counted on its own shard only).
fn shard_numsub(redis: &Redis, channels: &[String]) -> Vec<usize> {
    let mut counts = vec![0; channels.len()];
    for port in redis.primary_ports() {
        let mut args = vec!["PUBSUB", "SHARDNUMSUB"];
        args.extend(channels.iter().map(String::as_str));
        let out = redis.cli_on(port, &args);
        let lines: Vec<&str> = out.lines().collect();
        for (i, pair) in lines.chunks(2).enumerate().take(channels.len()) {
            counts[i] += pair.get(1).and_then(|n| n.trim().parse::<usize>().ok()).unwrap_or(0);
        }
    }
    counts
}

#[actix_rt::test]
async fn groups_spread_over_the_shards_and_each_runs_on_its_own_shard_alone() {
    if !redis_installed() {
        return;
    }
    let redis = Redis::cluster(&[]);
    let primaries = redis.primary_ports();
    assert_eq!(primaries.len(), 3);
    // Heartbeats seldom enough that the probes do not hide what the groups cost.
    let opts = || {
        ClusterOptions::new(redis.url())
            .heartbeat(Duration::from_secs(2))
            .node_timeout(Duration::from_secs(6))
    };
    let a = Cluster::join(opts()).await.expect("a joined");
    let b = Cluster::join(opts()).await.expect("b joined");
    let mut monitor = Monitor::start(&primaries);

    let groups: Vec<String> = (0..300).map(|i| format!("room-{i}")).collect();
    let server = serve(
        WsHandler::new(HandlerOptions::new(Target::from_addr(Joiner(b.groups().clone()).start()))).unwrap(),
    );
    let (mut member, _) = RawClient::connect_path(server.addr, &format!("/ws?{}", groups.join(","))).await;
    assert_eq!(common::cluster::text(&mut member).await, "joined");
    let channels: Vec<String> = groups.iter().map(|g| group_channel(g)).collect();
    let deadline = Instant::now() + FAILOVER;
    while shard_numsub(&redis, &channels).iter().any(|n| *n != 1) {
        assert!(Instant::now() < deadline, "b never listened to every group");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, group) in groups.iter().enumerate() {
        a.groups().broadcast(group, format!("{i}"));
    }
    let mut heard = vec![false; groups.len()];
    for _ in 0..groups.len() {
        let i: usize = common::cluster::text(&mut member).await.parse().expect("a group's number");
        assert!(!std::mem::replace(&mut heard[i], true), "room-{i} heard twice");
    }

    monitor.stop();
    assert_each_on_its_shard(&redis, &monitor, &groups);
    a.leave().await;
    b.leave().await;
}

/// Every command about a group ran on the primary of its slot, and none elsewhere; each
/// primary ran within 25% of a third of them.
fn assert_each_on_its_shard(redis: &Redis, monitor: &Monitor, groups: &[String]) {
    let primaries = redis.primary_ports();
    let mut share: HashMap<u16, usize> = HashMap::new();
    for group in groups {
        let tag = format!("{{{group}}}");
        let owner = redis.primary_of(&group_channel(group));
        for &port in &primaries {
            let n = monitor.naming(port, &format!("{tag}\""));
            if port == owner {
                assert!(n >= 2, "{group}: its join and its broadcast ran on {port}: {n} commands");
                *share.entry(port).or_default() += n;
            } else {
                assert_eq!(n, 0, "{group} is on {owner}, yet {port} ran {n} commands about it");
            }
        }
    }
    let total: usize = share.values().sum();
    eprintln!("group commands per primary: {share:?}");
    for (port, n) in &share {
        let third = total as f64 / 3.0;
        assert!((*n as f64 - third).abs() <= third * 0.25, "{port} ran {n} of {total} group commands");
    }
}

/// A fault on one shard's primary.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// `kill -9`, and started again once its replica took over (it comes back a replica).
    Kill,
    /// `SIGSTOP` past the failover, then `SIGCONT`.
    Stop,
    /// `CLUSTER FAILOVER` on its replica.
    ByHand,
    /// The group's slot moved to another primary (`CLUSTER SETSLOT`, keys `MIGRATE`d).
    Migrate,
}

/// Three groups with history, one on each shard; the first is on the shard at fault.
fn groups_on_each_shard(redis: &Redis) -> Vec<&'static str> {
    let mut picked: Vec<(&'static str, u16)> = Vec::new();
    for i in 0.. {
        let name = format!("feed-{i}");
        let owner = redis.primary_of(&group_channel(&name));
        if picked.iter().all(|(_, o)| *o != owner) {
            picked.push((Box::leak(name.into_boxed_str()), owner));
        }
        if picked.len() == 3 {
            break;
        }
    }
    picked.into_iter().map(|(g, _)| g).collect()
}

/// What one follower of a group saw: positions, and the losses it was told of.
#[derive(Default)]
struct Seen {
    positions: Vec<Position>,
    /// Told a gap: history started afresh (or lost what it missed) and it starts again.
    told: usize,
}

/// Follows `group` on `url` from its start until it has seen `last()`: one long session,
/// made again (since the last position seen) whenever the node closes it; a notice that
/// the history started afresh sends it on from the position the notice names.
async fn follow(url: String, mut done: watch::Receiver<Option<Position>>) -> Seen {
    let mut seen = Seen::default();
    let mut since = "start".to_owned();
    loop {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("{url}?since={since}")).await.expect("handshake");
        loop {
            let last = *done.borrow_and_update();
            if last.is_some() && seen.positions.last().copied() == last {
                return seen;
            }
            let next = tokio::select! {
                next = tokio::time::timeout(FAILOVER, ws.next()) => next,
                _ = done.changed() => continue,
            };
            let msg = match next {
                Ok(Some(Ok(TMessage::Text(t)))) => t,
                Ok(Some(Ok(TMessage::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => break,
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!("{url}: nothing for {FAILOVER:?} after {:?}", seen.positions.last()),
            };
            if let Some(rest) = msg.strip_prefix("unrecoverable ") {
                seen.told += 1;
                since = rest.rsplit(' ').next().filter(|p| !p.is_empty()).unwrap_or("start").to_owned();
                break;
            }
            let p: Position = msg.parse().unwrap_or_else(|_| panic!("not a position: {msg}"));
            seen.positions.push(p);
            since = p.to_string();
        }
    }
}

/// Within each epoch the positions follow one another; each new epoch is a loss the
/// follower was told of; the last position is the group's last.
fn assert_explained(group: &str, seen: &Seen, last: Position) {
    let mut epochs = 1;
    for w in seen.positions.windows(2) {
        if w[1].epoch != w[0].epoch {
            epochs += 1;
            continue;
        }
        assert_eq!(
            w[1].offset,
            w[0].offset + 1,
            "{group}: after {} came {}: a gap or a duplicate",
            w[0],
            w[1]
        );
    }
    assert!(epochs - 1 <= seen.told, "{group}: {epochs} epochs, {} notices", seen.told);
    assert_eq!(seen.positions.last(), Some(&last), "{group}");
}

/// Waits until Redis Cluster names a primary other than `old` for `channel`'s slot.
async fn failed_over(redis: &Redis, channel: &str, old: u16) -> u16 {
    let deadline = Instant::now() + FAILOVER;
    loop {
        let now = redis.primary_of(channel);
        if now != old {
            return now;
        }
        assert!(Instant::now() < deadline, "the cluster never failed over from {old}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Moves `channel`'s slot from its primary to another, keys and all, as `redis-cli
/// --cluster reshard` does one slot.
fn migrate_slot(redis: &Redis, channel: &str) -> u16 {
    let from = redis.primary_of(channel);
    let to = *redis.primary_ports().iter().find(|p| **p != from).expect("another primary");
    let id = |port: u16| redis.cli_on(port, &["CLUSTER", "MYID"]);
    let (from_id, to_id) = (id(from), id(to));
    let slot = redis.cli_on(from, &["CLUSTER", "KEYSLOT", channel]);
    assert_eq!(redis.cli_on(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]), "OK");
    assert_eq!(redis.cli_on(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]), "OK");
    loop {
        let keys = redis.cli_on(from, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
        if keys.is_empty() {
            break;
        }
        let to_port = to.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
        args.extend(keys.lines());
        assert_eq!(redis.cli_on(from, &args), "OK");
    }
    for port in redis.primary_ports() {
        assert_eq!(redis.cli_on(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]), "OK");
    }
    to
}

/// Nodes `a` (publishing) and `b` (where each group's follower is), and the followers.
struct Feeds {
    a: Node,
    b: Node,
    groups: Vec<&'static str>,
    _servers: Vec<TestServer>,
    done: Vec<watch::Sender<Option<Position>>>,
    followers: Vec<actix_rt::task::JoinHandle<Seen>>,
}

/// Two nodes, a group with history on each shard, and a follower of each group on `b`
/// from its start.
async fn feeds(redis: &Redis) -> Feeds {
    let groups = groups_on_each_shard(redis);
    let a: Node = node_with(fast(&redis.url())).await;
    let b: Node = node_with(fast(&redis.url())).await;
    let servers: Vec<TestServer> = groups
        .iter()
        .map(|&group| {
            let room = Room { groups: b.cluster.groups().clone(), group }.start();
            serve(WsHandler::new(HandlerOptions::new(Target::from_addr(room))).unwrap())
        })
        .collect();
    // Each group's history is there before its follower joins from its start.
    let limits = HistoryLimits::default().max_messages(100_000);
    for n in [&a, &b] {
        n.cluster.groups().keep_history("feed-*", limits);
    }
    for &group in &groups {
        a.cluster.groups().publish(group, |at| at.to_string()).await.expect("published");
    }
    let (done, followers): (Vec<_>, Vec<_>) = servers
        .iter()
        .map(|s| {
            let (done, last) = watch::channel(None);
            (done, actix_rt::spawn(follow(format!("ws://{}/ws", s.addr), last)))
        })
        .unzip();
    for g in &groups {
        b_listens(redis, g).await;
    }
    Feeds { a, b, groups, _servers: servers, done, followers }
}

/// A publisher on `a` per group until `stop`: each its last position.
fn publishers(f: &Feeds, stop: &Arc<AtomicBool>) -> Vec<actix_rt::task::JoinHandle<Position>> {
    f.groups
        .iter()
        .map(|&group| {
            let (groups, stop) = (f.a.cluster.groups().clone(), stop.clone());
            actix_rt::spawn(async move {
                let mut last = None;
                while !stop.load(Ordering::Acquire) {
                    match groups.publish(group, |at| at.to_string()).await {
                        Ok(p) => last = Some(p.position),
                        // Redis away: the publisher is told, and tries again.
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                last.expect("published at least once")
            })
        })
        .collect()
}

/// Makes `fault` on the primary of `channel`'s shard and waits out the failover; undoes
/// what can be undone (a killed server started, a stopped one resumed).
async fn make(redis: &mut Redis, fault: Fault, channel: &str) {
    let old = redis.primary_of(channel);
    let at_fault = redis.server_at(old);
    let faulted = Instant::now();
    match fault {
        Fault::Kill => redis.kill_server(at_fault),
        Fault::Stop => redis.signal_server(at_fault, "-STOP"),
        Fault::ByHand => {
            let replica = redis.replica_of(old);
            assert_eq!(redis.cli_on(replica, &["CLUSTER", "FAILOVER"]), "OK");
        }
        Fault::Migrate => {
            migrate_slot(redis, channel);
        }
    }
    let new = failed_over(redis, channel, old).await;
    eprintln!("{fault:?}: {old} -> {new} in {:?}", faulted.elapsed());
    match fault {
        Fault::Kill => redis.start_server(at_fault),
        Fault::Stop => redis.signal_server(at_fault, "-CONT"),
        Fault::ByHand | Fault::Migrate => {}
    }
}

async fn broadcasts_go_on_through(fault: Fault) {
    if !redis_installed() {
        return;
    }
    let mut redis = Redis::cluster(&[]);
    let f = feeds(&redis).await;
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publishers(&f, &stop);
    tokio::time::sleep(Duration::from_secs(1)).await;
    make(&mut redis, fault, &group_channel(f.groups[0])).await;
    // Delivery is back on every group: the followers on `b` hear what `a` publishes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Release);
    let mut lasts = Vec::new();
    for p in publishing {
        lasts.push(p.await.expect("publisher"));
    }
    for (d, last) in f.done.iter().zip(&lasts) {
        d.send_replace(Some(*last));
    }
    let mut seen = Vec::new();
    for follower in f.followers {
        seen.push(follower.await.expect("follower"));
    }
    for ((group, s), last) in f.groups.iter().zip(&seen).zip(&lasts) {
        assert_explained(group, s, *last);
    }
    // The groups on the other shards kept their history: nothing to tell.
    for (group, s) in f.groups.iter().zip(&seen).skip(1) {
        assert_eq!(s.told, 0, "{group} is on a shard that did not fail");
        assert_eq!(s.positions.first().map(|p| p.offset), Some(1), "{group} from its start");
    }
    for n in [&f.a, &f.b] {
        assert!(n.cluster.is_broker_up(), "{:?}", n.cluster.broker_status());
    }
}

/// Waits until `b` (the only listener) listens to `group`.
async fn b_listens(redis: &Redis, group: &str) {
    let channel = group_channel(group);
    let deadline = Instant::now() + FAILOVER;
    while redis.numsub(&channel) != 1 {
        assert!(Instant::now() < deadline, "{channel} never had its listener");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_shards_primary_killed_under_broadcasts() {
    broadcasts_go_on_through(Fault::Kill).await;
}

#[actix_rt::test]
async fn a_shards_primary_stopped_past_its_failover_then_resumed() {
    broadcasts_go_on_through(Fault::Stop).await;
}

#[actix_rt::test]
async fn a_shard_failed_over_by_hand() {
    broadcasts_go_on_through(Fault::ByHand).await;
}

#[actix_rt::test]
async fn a_groups_slot_migrated_while_it_broadcasts() {
    broadcasts_go_on_through(Fault::Migrate).await;
}
