//! A cluster on Redis Sentinel (a primary, a replica, three sentinels on loopback) through
//! failovers: the primary killed with the sentinel beside it, stopped and resumed, failed
//! over by hand, a replica promoted by hand behind the sentinels' back, and the old
//! primary back as a stale one. After each, cross-node delivery resumes on the server the
//! sentinels name, and every node says what it went through. On Redis Cluster, a shard
//! whose subscription goes quiet shows in the status before the node moves.
#![cfg(feature = "cluster")]

mod common;

use std::time::{Duration, Instant};

use actix_meta_websocket::cluster::{ClusterEvent, GapCause};
use common::cluster::*;
use common::redis::{group_channel, redis_installed, Redis, PRIMARY};
use common::*;
use tokio::sync::mpsc;

/// Failovers take about 2 to 3 s here (down after 1 s); more than this is a failure.
const FAILOVER: Duration = Duration::from_secs(20);

/// Two nodes on a Sentinel set, a member on each, and their events.
struct Pair {
    redis: Redis,
    a: Node,
    b: Node,
    ac: RawClient,
    bc: RawClient,
    a_events: mpsc::UnboundedReceiver<ClusterEvent>,
}

async fn pair() -> Pair {
    let redis = Redis::sentinel(&[]);
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (a_sub, a_events) = events();
    a.cluster.subscribe(a_sub);
    let (ac, _) = client(&a, "a1").await;
    let (bc, _) = client(&b, "b1").await;
    redis.await_numsub(&group_channel(ROOM), 2).await;
    let mut p = Pair { redis, a, b, ac, bc, a_events };
    a_reaches_b(&mut p, "before").await;
    p
}

/// The replica made a primary by hand (`REPLICAOF NO ONE`), behind the sentinels' back:
/// the primary they name, and the replica's port.
fn promote_by_hand(redis: &Redis) -> (u16, u16) {
    let primary = redis.primary_port();
    let replica = redis.server_port(1 - redis.server_at(primary));
    assert_eq!(redis.cli_on(replica, &["REPLICAOF", "NO", "ONE"]), "OK");
    (primary, replica)
}

/// How many subscribers the room's channel has on the server at `port`.
fn room_subscribers(redis: &Redis, port: u16) -> usize {
    let out = redis.cli_on(port, &["PUBSUB", "NUMSUB", &group_channel(ROOM)]);
    out.lines().nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// A message said to `a`'s member reaches `b`'s.
async fn a_reaches_b(p: &mut Pair, text_: &str) {
    say(&mut p.ac, text_).await;
    assert_eq!(text(&mut p.bc).await, text_);
}

/// A message said to `a`'s member reaches `b`'s while both stay on `new`; when it does not,
/// what each node and each sentinel says, and what `a` reported, so a failure names its cause.
async fn still_carried(p: &mut Pair, new: u16, text_: &str) {
    say(&mut p.ac, text_).await;
    if let Ok(got) = tokio::time::timeout(Duration::from_secs(10), text(&mut p.bc)).await {
        assert_eq!(got, text_);
        return;
    }
    let views: Vec<String> = (1..3)
        .map(|i| {
            p.redis.sentinel_cli(i, &["SENTINEL", "get-master-addr-by-name", PRIMARY]).replace('\n', " ")
        })
        .collect();
    let mut reported = Vec::new();
    while let Ok(e) = p.a_events.try_recv() {
        reported.push(format!("{e:?}"));
    }
    panic!(
        "{text_:?} never reached b (the nodes were on {new}); a: {:?}; b: {:?}; sentinels 1 and 2: {views:?}; \
         a reported {reported:?}",
        p.a.cluster.broker_status(),
        p.b.cluster.broker_status()
    );
}

/// Waits until the sentinels name a primary other than `old`; its port.
async fn new_primary(redis: &Redis, old: u16) -> u16 {
    let deadline = Instant::now() + FAILOVER;
    loop {
        let now = redis.primary_port();
        if now != old {
            return now;
        }
        assert!(Instant::now() < deadline, "the sentinels never failed over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `node` is up and ready on the primary the sentinels name (`port`, unless
/// they have failed over again since: under load a starved primary can be taken for dead).
async fn on(node: &Node, redis: &Redis, port: u16) {
    let deadline = Instant::now() + FAILOVER;
    loop {
        let s = node.cluster.broker_status();
        let want =
            format!("127.0.0.1:{}", if redis.primary_port() == port { port } else { redis.primary_port() });
        if s.up && s.server.as_deref() == Some(&want) && node.cluster.is_ready() {
            return;
        }
        assert!(Instant::now() < deadline, "the node never moved to {want}: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `node`'s reconnects: `expected` while the sentinels name `port`. When they name another
/// server (they failed over again, or the first to answer has not yet heard of the
/// failover), the node may be on its way there: once it is where they agree, at least.
async fn assert_reconnects(node: &Node, redis: &Redis, port: u16, expected: u64) {
    let s = node.cluster.broker_status();
    let named = redis.primary_port();
    if named == port {
        assert_eq!(s.reconnects, expected, "{s:?}");
        return;
    }
    let views: Vec<String> =
        (0..3).map(|i| redis.sentinel_cli(i, &["SENTINEL", "get-master-addr-by-name", PRIMARY])).collect();
    eprintln!("the sentinels name {named}, not {port} ({views:?}); the node: {s:?}");
    on(node, redis, named).await;
    assert!(node.cluster.broker_status().reconnects >= expected, "{:?}", node.cluster.broker_status());
}

/// The outage a node reported with its gap.
async fn reported_outage(events: &mut mpsc::UnboundedReceiver<ClusterEvent>) -> Duration {
    event(events, |e| match e {
        ClusterEvent::Gap(GapCause::Reconnected { outage }) => Some(*outage),
        _ => None,
    })
    .await
}

#[actix_rt::test]
async fn the_primary_killed_with_its_sentinel_then_back_as_a_stale_primary() {
    if !redis_installed() {
        return;
    }
    let mut p = pair().await;
    let old = p.redis.primary_port();
    let killed = p.redis.server_at(old);
    p.redis.kill_server(killed);
    p.redis.kill_sentinel(0);
    let new = new_primary(&p.redis, old).await;
    on(&p.a, &p.redis, new).await;
    on(&p.b, &p.redis, new).await;
    let outage = reported_outage(&mut p.a_events).await;
    assert!(outage < FAILOVER, "{outage:?}");
    assert_reconnects(&p.a, &p.redis, new, 1).await;
    a_reaches_b(&mut p, "after the failover").await;

    // The old primary comes back as it was, a primary by its own account, until the
    // sentinels make it a replica: a node that joins now goes where the sentinels say.
    p.redis.start_server(killed);
    // The sentinels that have not heard of the failover yet still name it, and it answers
    // as a primary: the nodes stay where the newest configuration says.
    for i in 0..20 {
        still_carried(&mut p, new, &format!("stays {i}")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_reconnects(&p.a, &p.redis, new, 1).await;
    let c = node(&p.redis).await;
    on(&c, &p.redis, new).await;
    let (mut cc, _) = client(&c, "c1").await;
    p.redis.await_numsub(&group_channel(ROOM), 3).await;
    say(&mut cc, "from the newcomer").await;
    assert_eq!(text(&mut p.bc).await, "from the newcomer");
    assert_eq!(text(&mut p.ac).await, "from the newcomer");
}

#[actix_rt::test]
async fn a_primary_stopped_past_the_failover_then_resumed_is_left_behind() {
    if !redis_installed() {
        return;
    }
    let mut p = pair().await;
    let old = p.redis.primary_port();
    let stopped = p.redis.server_at(old);
    p.redis.signal_server(stopped, "-STOP");
    let new = new_primary(&p.redis, old).await;
    on(&p.a, &p.redis, new).await;
    on(&p.b, &p.redis, new).await;
    // Back, and still a primary by its own account for a while: nobody returns to it.
    p.redis.signal_server(stopped, "-CONT");
    a_reaches_b(&mut p, "after the stop").await;
    let want = format!("127.0.0.1:{new}");
    for n in [&p.a, &p.b] {
        assert_eq!(n.cluster.broker_status().server.as_deref(), Some(&*want));
    }
    assert!(reported_outage(&mut p.a_events).await < FAILOVER);
}

#[actix_rt::test]
async fn a_failover_by_hand_moves_every_node() {
    if !redis_installed() {
        return;
    }
    let mut p = pair().await;
    let old = p.redis.primary_port();
    assert_eq!(p.redis.sentinel_cli(1, &["SENTINEL", "FAILOVER", PRIMARY]), "OK");
    let new = new_primary(&p.redis, old).await;
    on(&p.a, &p.redis, new).await;
    on(&p.b, &p.redis, new).await;
    a_reaches_b(&mut p, "after the switch").await;
    assert!(reported_outage(&mut p.a_events).await < FAILOVER);
}

#[actix_rt::test]
async fn a_replica_promoted_behind_the_sentinels_back_takes_nobody() {
    if !redis_installed() {
        return;
    }
    let mut p = pair().await;
    let (primary, replica) = promote_by_hand(&p.redis);
    // Several heartbeats and sentinel rounds: the nodes stay with the primary the
    // sentinels name, and so does what they publish.
    for i in 0..20 {
        a_reaches_b(&mut p, &format!("still here {i}")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    on(&p.a, &p.redis, primary).await;
    on(&p.b, &p.redis, primary).await;
    assert_eq!(room_subscribers(&p.redis, replica), 0);
    assert_reconnects(&p.a, &p.redis, primary, 0).await;
}

#[actix_rt::test]
async fn sentinels_pointed_at_another_primary_are_followed_without_a_disconnect() {
    if !redis_installed() {
        return;
    }
    let mut p = pair().await;
    // An operator moves the primary by hand: the replica promoted, the sentinels told to
    // watch it. Nobody closes the old primary's connections, and it stays a primary:
    // only asking the sentinels shows that the nodes must move.
    let (old, replica) = promote_by_hand(&p.redis);
    for i in 0..3 {
        assert_eq!(p.redis.sentinel_cli(i, &["SENTINEL", "REMOVE", PRIMARY]), "OK");
        let port = replica.to_string();
        let monitor = ["SENTINEL", "MONITOR", PRIMARY, "127.0.0.1", &port, "2"];
        assert_eq!(p.redis.sentinel_cli(i, &monitor), "OK");
    }
    on(&p.a, &p.redis, replica).await;
    on(&p.b, &p.redis, replica).await;
    a_reaches_b(&mut p, "on the new primary").await;
    assert_eq!(room_subscribers(&p.redis, old), 0);
    assert!(reported_outage(&mut p.a_events).await < FAILOVER);
}

/// A TCP relay to Redis that can go deaf on one connection: what Redis sends on it is
/// dropped, while the connection stays open (a subscription that fell silent).
struct Relay {
    port: u16,
    mute: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Relay {
    async fn start(to: u16) -> Relay {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mute = std::sync::Arc::new(AtomicUsize::new(0));
        let muted = mute.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((client, _)) = listener.accept().await {
                n += 1;
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else { continue };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
                let muted = muted.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 16 << 10];
                    while let Ok(len @ 1..) = sr.read(&mut buf).await {
                        if muted.load(Ordering::Acquire) != n && cw.write_all(&buf[..len]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Relay { port, mute }
    }

    /// Drops what Redis sends on the `n`th connection (from 1).
    fn mute(&self, n: usize) {
        self.mute.store(n, std::sync::atomic::Ordering::Release);
    }
}

#[actix_rt::test]
async fn a_subscription_that_falls_silent_is_noticed_reported_and_made_again() {
    if !redis_installed() {
        return;
    }
    let redis = Redis::start_on(common::redis::free_port(), &[]);
    let relay = Relay::start(redis.port).await;
    // Through the relay: its first connection is the node's commands, the second its
    // subscription.
    let a = node_with(fast(&format!("redis://127.0.0.1:{}", relay.port))).await;
    let b = node(&redis).await;
    let (a_sub, mut a_events) = events();
    a.cluster.subscribe(a_sub);
    let (mut ac, _) = client(&a, "a1").await;
    let (mut bc, _) = client(&b, "b1").await;
    redis.await_numsub(&group_channel(ROOM), 2).await;
    say(&mut bc, "heard").await;
    assert_eq!(text(&mut ac).await, "heard");

    relay.mute(2);
    // Not ready within a few heartbeats: its own heartbeats no longer come back.
    let deadline = Instant::now() + FAILOVER;
    while a.cluster.is_ready() {
        assert!(Instant::now() < deadline, "the silent subscription went unnoticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(a.cluster.is_broker_up(), "its commands still pass: only the probe tells");
    let outage = reported_outage(&mut a_events).await;
    let status = a.cluster.broker_status();
    assert_eq!((status.probe_timeouts, status.reconnects), (1, 1), "{status:?}");
    assert!(outage < FAILOVER, "{outage:?}");
    redis.await_numsub(&group_channel(ROOM), 2).await;
    say(&mut bc, "heard again").await;
    assert_eq!(text(&mut ac).await, "heard again");
}

#[actix_rt::test]
async fn a_shard_gone_quiet_shows_in_the_status_and_readiness_before_the_node_moves() {
    if !redis_installed() {
        return;
    }
    let mut redis = Redis::cluster(&[]);
    // A probe timeout far past the heartbeat: the window between a shard going quiet and
    // the node remaking its links is wide enough to look into.
    let opts = actix_meta_websocket::ClusterOptions::new(redis.url())
        .heartbeat(Duration::from_millis(100))
        .node_timeout(Duration::from_secs(8))
        .send_timeout(Duration::from_secs(8));
    let a = node_with(opts).await;
    let mut primaries = redis.primary_ports();
    primaries.sort_unstable();
    let deadline = Instant::now() + FAILOVER;
    while !a.cluster.is_ready() || a.cluster.broker_status().shards.len() != 3 {
        assert!(Instant::now() < deadline, "never ready: {:?}", a.cluster.broker_status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let port =
        |s: &actix_meta_websocket::cluster::ShardStatus| s.server.rsplit(':').next()?.parse::<u16>().ok();
    let mut listed: Vec<u16> = a.cluster.broker_status().shards.iter().filter_map(port).collect();
    listed.sort_unstable();
    assert_eq!(listed, primaries, "one entry per primary");

    // Not the shard of the nodes' own channel: the heartbeats keep coming back there, so
    // only the quiet shard can tell.
    let heartbeats = redis.primary_of("amw:nodes");
    let stopped = *primaries.iter().find(|p| **p != heartbeats).expect("another primary");
    let at = redis.server_at(stopped);
    redis.signal_server(at, "-STOP");
    let deadline = Instant::now() + FAILOVER;
    while a.cluster.is_ready() {
        assert!(Instant::now() < deadline, "the quiet shard went unnoticed: {:?}", a.cluster.broker_status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = a.cluster.broker_status();
    redis.signal_server(at, "-CONT");
    assert!(status.up, "the link is still made: only the shard's silence tells ({status:?})");
    assert_eq!(status.reconnects, 0, "{status:?}");
    // Quiet the longest: other shards are probed apart from it, but a round of the
    // node's that has a command for the stopped server waits for it, and may hold up
    // their probes for a while.
    let quiet_for = |port: u16| {
        let s = status.shards.iter().find(|s| s.server == format!("127.0.0.1:{port}"));
        s.expect("listed").quiet_for
    };
    assert!(quiet_for(stopped) > Duration::from_millis(300), "{status:?}");
    assert!(status.shards.iter().all(|s| s.quiet_for <= quiet_for(stopped)), "{status:?}");
    assert_eq!(status.silent_for, Some(quiet_for(stopped)), "{status:?}");

    // Resumed (and demoted by now, or soon), the shard is left or heard again: ready.
    let deadline = Instant::now() + FAILOVER;
    while !a.cluster.is_ready() {
        assert!(Instant::now() < deadline, "never ready again: {:?}", a.cluster.broker_status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
