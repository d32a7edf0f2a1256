//! The cluster over a real `redis-server` on a loopback port (one per test, no
//! persistence): sends across nodes, broadcasts, Redis killed and restarted, a subscriber
//! cut by Redis, junk on the bus, overflow, a node leaving, TLS. Presence across nodes is
//! in `cluster_presence.rs`.
#![cfg(feature = "cluster")]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_meta_websocket::protocol::Incoming;
use actix_meta_websocket::*;
use actix_meta_websocket::{
    cluster::{ClusterError, ClusterEvent, ClusterMember, ClusterSendError, GapCause, GlobalId},
    groups::PresenceChange,
};
use common::cluster::*;
use common::redis::{free_port, group_channel, redis_installed, Redis};
use common::*;

#[actix_rt::test]
async fn remote_sends_reach_the_owning_node_or_say_why_not() {
    if !redis_installed() {
        return;
    }
    let redis = Redis::start(&[]);
    let (mut a, mut b) = (node(&redis).await, node(&redis).await);
    let (_a1, a1) = client(&a, "a1").await;
    let (mut b1c, b1) = client(&b, "b1").await;
    assert_eq!(b1.node(), b.cluster.node());
    assert_eq!(b1.to_string().parse::<GlobalId>(), Ok(b1));

    a.cluster.send(&b1, "fire and forget").expect("published");
    assert_eq!(text(&mut b1c).await, "fire and forget");
    assert_eq!(a.cluster.send_wait(&b1, "waited for").await, Ok(()));
    assert_eq!(text(&mut b1c).await, "waited for");
    assert_eq!(a.cluster.send_wait(&a1, "local").await, Ok(()), "a local id is sent to locally");

    let no_conn: GlobalId = format!("{}-999999", b.cluster.node()).parse().unwrap();
    assert_eq!(a.cluster.send_wait(&no_conn, "x").await, Err(ClusterSendError::NoSuchConnection));
    let no_node: GlobalId = "00000000000000ff-1".parse().unwrap();
    let node_id = no_node.node();
    assert_eq!(a.cluster.send_wait(&no_node, "x").await, Err(ClusterSendError::NoSuchNode(node_id)));

    close(&mut b1c).await;
    let (ended, _) = b.ended.recv().await.expect("b1 ended");
    assert_eq!(ended.seq(), b1.seq());
    let gone = a.cluster.send_wait(&b1, "too late").await;
    assert!(matches!(gone, Err(ClusterSendError::Closed | ClusterSendError::NoSuchConnection)), "{gone:?}");
    let _ = a.ended.try_recv();
}

/// The names of the `n` members a new watcher is told are there, sorted.
async fn present_now(
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<ClusterEvent>,
    n: usize,
) -> Vec<Arc<str>> {
    let mut present = Vec::new();
    while present.len() < n {
        present.push(
            event(seen, |e| match e {
                ClusterEvent::Presence { member, change: PresenceChange::Present, .. } => {
                    Some(member.meta.clone())
                }
                _ => None,
            })
            .await,
        );
    }
    present.sort();
    present
}

#[actix_rt::test]
async fn a_broadcast_reaches_every_member_once_across_three_nodes_and_only_nodes_with_members_listen() {
    if !redis_installed() {
        return;
    }
    let redis = Redis::start(&[]);
    let (a, mut b, c) = (node(&redis).await, node(&redis).await, node(&redis).await);
    let (mut a1c, a1) = client(&a, "a1").await;
    let (mut a2c, _) = client(&a, "a2").await;
    let (mut b1c, b1) = client(&b, "b1").await;
    let channel = group_channel(ROOM);
    // A and B have members; C has none and hears none of the room's traffic.
    redis.await_numsub(&channel, 2).await;

    say(&mut a1c, "hello").await;
    assert_eq!(text(&mut a2c).await, "hello");
    assert_eq!(c.cluster.groups().broadcast(ROOM, "from c"), 0, "no members on c");
    for (who, n) in [(&a, 2), (&c, 0)] {
        assert_eq!(who.cluster.groups().broadcast(ROOM, "end"), n);
    }
    // Each member gets each broadcast once: read until both publishers' "end".
    let mut heard = HashMap::new();
    for (name, conn) in [("a1", &mut a1c), ("a2", &mut a2c), ("b1", &mut b1c)] {
        let mut got = Vec::new();
        while got.iter().filter(|t| *t == "end").count() < 2 {
            got.push(text(conn).await);
        }
        got.sort();
        heard.insert(name, got);
    }
    assert_eq!(heard["a1"], ["end", "end", "from c"]);
    assert_eq!(heard["a2"], ["end", "end", "from c"]);
    assert_eq!(heard["b1"], ["end", "end", "from c", "hello"]);

    let members = c.cluster.members(ROOM).await.expect("members");
    assert_eq!(names(&members), ["a1", "a2", "b1"]);
    assert!(members.iter().any(|m| m.id == a1) && members.iter().any(|m| m.id == b1));

    // Watching the room makes C listen; it is told who is there, then a clean close on B.
    let (watcher, mut seen) = events();
    c.cluster.watch(ROOM, watcher);
    redis.await_numsub(&channel, 3).await;
    assert_eq!(&present_now(&mut seen, 3).await[..], [Arc::from("a1"), Arc::from("a2"), Arc::from("b1")]);
    close(&mut b1c).await;
    let left = event(&mut seen, |e| match e {
        ClusterEvent::Presence {
            member,
            change: change @ (PresenceChange::Left | PresenceChange::Disconnected),
            ..
        } => Some((member.clone(), *change)),
        _ => None,
    })
    .await;
    assert_eq!(left, (ClusterMember { id: b1, meta: "b1".into() }, PresenceChange::Disconnected));
    let (_, still_member) = b.ended.recv().await.expect("b1 ended");
    assert!(!still_member, "left every group before its MessageDisconnect");
    assert_eq!(names(&c.cluster.members(ROOM).await.expect("members")), ["a1", "a2"]);
    // B's last member has gone: B no longer listens.
    redis.await_numsub(&channel, 2).await;
}

#[actix_rt::test]
async fn redis_killed_and_restarted_local_traffic_goes_on_remote_sends_fail_fast_and_all_recovers() {
    if !redis_installed() {
        return;
    }
    let mut redis = Redis::start(&[]);
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (ea, mut a_events) = events();
    let (eb, mut b_events) = events();
    a.cluster.subscribe(ea);
    b.cluster.subscribe(eb);
    let (mut a1c, _) = client(&a, "a1").await;
    let (mut b1c, b1) = client(&b, "b1").await;
    redis.await_numsub(&group_channel(ROOM), 2).await;

    redis.kill();
    event(&mut a_events, |e| matches!(e, ClusterEvent::BrokerDown).then_some(())).await;
    event(&mut b_events, |e| matches!(e, ClusterEvent::BrokerDown).then_some(())).await;
    assert!(!a.cluster.is_broker_up());
    assert_eq!(a.cluster.groups().broadcast(ROOM, "local only"), 1);
    assert_eq!(text(&mut a1c).await, "local only");
    let t = Instant::now();
    assert_eq!(a.cluster.send(&b1, "x"), Err(ClusterSendError::BrokerDown));
    assert_eq!(a.cluster.send_wait(&b1, "x").await, Err(ClusterSendError::BrokerDown));
    assert!(t.elapsed() < Duration::from_secs(1), "refused at once, not after a timeout");
    assert_eq!(a.cluster.members(ROOM).await, Err(ClusterError::BrokerDown));

    redis.restart();
    let restarted = Instant::now();
    for rx in [&mut a_events, &mut b_events] {
        event(rx, |e| matches!(e, ClusterEvent::BrokerUp).then_some(())).await;
        event(rx, |e| matches!(e, ClusterEvent::Gap(GapCause::Reconnected { .. })).then_some(())).await;
    }
    eprintln!("both nodes back {:?} after redis restarted", restarted.elapsed());
    // Redis came back empty: presence and subscriptions were made again.
    assert_eq!(names(&a.cluster.members(ROOM).await.expect("members")), ["a1", "b1"]);
    assert_eq!(redis.numsub(&group_channel(ROOM)), 2);
    say(&mut a1c, "again").await;
    assert_eq!(text(&mut b1c).await, "again");
    assert_eq!(a.cluster.send_wait(&b1, "direct again").await, Ok(()));
    assert_eq!(text(&mut b1c).await, "direct again");
}

/// The `cluster_chat` example as a node in a process of its own.
#[actix_rt::test]
async fn a_subscriber_redis_cuts_for_reading_too_slowly_recovers_and_signals_the_gap() {
    let Some(bin) = cluster_chat().filter(|_| redis_installed()) else { return };
    let redis = Redis::start(&["--client-output-buffer-limit", "pubsub 256kb 128kb 1"]);
    let a = node(&redis).await;
    let mut p = process(&redis, bin).await;
    let (mut guest, _) = RawClient::connect_path(p.addr, "/ws").await;
    let _greeting = text(&mut guest).await;
    redis.await_numsub(&group_channel("lobby"), 1).await;

    // The node stops reading (stopped, as a stalled process would be) while 16 MiB go
    // to a group it has a member of: Redis cuts its subscription.
    p.signal("-STOP");
    let flood = vec![0u8; 64 << 10];
    for _ in 0..256 {
        a.cluster.groups().broadcast("lobby", flood.clone());
    }
    let deadline = Instant::now() + WAIT;
    while redis.numsub(&group_channel("lobby")) != 0 {
        assert!(Instant::now() < deadline, "redis never cut the stopped subscriber");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.signal("-CONT");
    p.line_with("Gap(Reconnected {").await;
    redis.await_numsub(&group_channel("lobby"), 1).await;
    a.cluster.groups().broadcast("lobby", "after the gap");
    loop {
        let t = text(&mut guest).await;
        if t == "after the gap" {
            break;
        }
    }
}

#[actix_rt::test]
async fn foreign_or_cut_messages_on_our_channels_are_ignored() {
    if !redis_installed() {
        return;
    }
    let redis = Redis::start(&[]);
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (mut a1c, _) = client(&a, "a1").await;
    let (_b1c, _) = client(&b, "b1").await;
    redis.await_numsub(&group_channel(ROOM), 2).await;
    let node_channel = format!("amw:n:{}", a.cluster.node());
    let cut_send = b"amw\x01\x03\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00".to_vec();
    let bad_text = [&b"amw\x01\x01\x00\x00\x00\x00\x00\x00\x00\x07\x01"[..], &[0xff, 0xfe]].concat();
    for (channel, junk) in [
        (group_channel(ROOM), b"not ours".to_vec()),
        (group_channel(ROOM), bad_text),
        (node_channel.clone(), cut_send),
        (node_channel, b"amw\x01\x05\x00\x00\x00\x00\x00\x00\x00\x00".to_vec()),
        ("amw:nodes".into(), b"amw\x01\x09\x00\x00\x00\x00\x00\x00\x00\x07".to_vec()),
    ] {
        redis.cli_with_input(&[redis.publish_command(), &channel], Some(&junk));
    }
    // Foreign entries in the presence keys are skipped, not fatal.
    redis.cli(&["SADD", &format!("amw:gn:{{{ROOM}}}"), "not-a-node"]);
    redis.cli(&["HSET", &format!("amw:m:{{{ROOM}}}:{}", b.cluster.node()), "not-a-number", "x"]);
    assert_eq!(names(&a.cluster.members(ROOM).await.expect("members")), ["a1", "b1"]);
    // Both nodes still serve.
    assert_eq!(b.cluster.groups().broadcast(ROOM, "still here"), 1);
    assert_eq!(text(&mut a1c).await, "still here");
}

#[actix_rt::test]
async fn broadcasts_a_node_could_not_publish_are_a_gap_on_both_sides() {
    if !redis_installed() {
        return;
    }
    let redis = Redis::start(&[]);
    // A may keep 1 KiB waiting for Redis: a 64 KiB broadcast cannot leave it.
    let a = node_with(fast(&redis.url()).max_queued(1024)).await;
    let b = node(&redis).await;
    let (ea, mut a_events) = events();
    let (eb, mut b_events) = events();
    a.cluster.subscribe(ea);
    b.cluster.subscribe(eb);
    let (mut a1c, _) = client(&a, "a1").await;
    let (mut b1c, _) = client(&b, "b1").await;
    redis.await_numsub(&group_channel(ROOM), 2).await;
    event(&mut b_events, |e| matches!(e, ClusterEvent::NodeUp(n) if *n == a.cluster.node()).then_some(()))
        .await;

    assert_eq!(a.cluster.groups().broadcast(ROOM, vec![7u8; 64 << 10]), 1, "local members still get it");
    assert!(matches!(a1c.recv().await, Some(Incoming::Binary(b)) if b.len() == 64 << 10));
    a.cluster.groups().broadcast(ROOM, "small enough");
    assert_eq!(text(&mut b1c).await, "small enough", "b never got the big one");
    // A knows it dropped one; B learns it from A's next frame.
    event(&mut a_events, |e| matches!(e, ClusterEvent::Gap(GapCause::Overflow)).then_some(())).await;
    let from = event(&mut b_events, |e| match e {
        ClusterEvent::Gap(GapCause::Missed(n)) => Some(*n),
        _ => None,
    })
    .await;
    assert_eq!(from, a.cluster.node());
}

#[actix_rt::test]
async fn a_node_that_leaves_is_gone_at_once_and_credentials_stay_out_of_sight() {
    if !redis_installed() {
        return;
    }
    let redis = Redis::start(&["--requirepass", "s3cret"]);
    let url = redis.url();
    assert!(url.contains(":s3cret@"), "{url}");
    let wrong = Cluster::join(fast(&url.replace(":s3cret@", ":wrong@"))).await;
    let e = wrong.expect_err("a wrong password is refused").to_string();
    assert!(!e.contains("wrong") && !e.contains("s3cret"), "{e}");
    let a = node_with(fast(&url)).await;
    let (ea, mut a_events) = events();
    a.cluster.subscribe(ea);
    let mut b = node_with(fast(&url)).await;
    assert!(!format!("{:?} {:?}", a.cluster, fast(&url)).contains("s3cret"));
    let (_a1c, _) = client(&a, "a1").await;
    let (_b1c, _) = client(&b, "b1").await;
    let b_node = b.cluster.node();
    event(&mut a_events, |e| matches!(e, ClusterEvent::NodeUp(n) if *n == b_node).then_some(())).await;
    assert_eq!(a.cluster.nodes(), [b_node]);
    let deadline = Instant::now() + WAIT;
    while names(&a.cluster.members(ROOM).await.expect("members")) != ["a1", "b1"] {
        assert!(Instant::now() < deadline, "b1 never listed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let left = Instant::now();
    b.cluster.clone().leave().await;
    event(&mut a_events, |e| matches!(e, ClusterEvent::NodeDown(n) if *n == b_node).then_some(())).await;
    assert!(left.elapsed() < Duration::from_millis(600), "told at once, not after the node timeout");
    assert!(a.cluster.nodes().is_empty());
    assert_eq!(names(&a.cluster.members(ROOM).await.expect("members")), ["a1"]);
    let _ = b.ended.try_recv();
}

#[actix_rt::test]
async fn nodes_reach_each_other_through_a_redis_that_speaks_only_tls() {
    if !redis_installed() {
        return;
    }
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("amw-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (cert_path, key_path) = (cert_file.display().to_string(), key_file.display().to_string());
    // Plain port for redis-cli's readiness check only; the nodes speak TLS. One server
    // whatever the topology: the TLS port is its own.
    let redis = Redis::start_on(
        free_port(),
        &[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &cert_path,
            "--tls-key-file",
            &key_path,
            "--tls-auth-clients",
            "no",
        ],
    );
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let untrusted = Cluster::join(fast(&url)).await;
    assert!(
        matches!(untrusted, Err(ClusterError::Redis(_))),
        "a self-signed certificate is not in the webpki roots"
    );
    let trusting = || fast(&url).tls_root(cert.cert.pem());
    let (a, b) = (node_with(trusting()).await, node_with(trusting()).await);
    let (_a1c, _) = client(&a, "a1").await;
    let (mut b1c, b1) = client(&b, "b1").await;
    redis.await_numsub(&group_channel(ROOM), 2).await;
    assert_eq!(a.cluster.send_wait(&b1, "over tls").await, Ok(()));
    assert_eq!(text(&mut b1c).await, "over tls");
    let invalid = Cluster::join(fast(&url).node_timeout(Duration::from_millis(100))).await;
    assert!(matches!(invalid, Err(ClusterError::Invalid(_))), "{invalid:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn a_member_that_leaves_and_joins_again_at_once_keeps_its_node_listening() {
    if !redis_installed() {
        return;
    }
    let redis = Redis::start(&[]);
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (_a1c, _) = client(&a, "a1").await;
    let (mut b1c, _) = client(&b, "b1").await;
    let channel = group_channel(ROOM);
    redis.await_numsub(&channel, 2).await;
    b1c.send_raw(&client_frame(true, 0, 0x1, b"rejoin")).await;
    assert_eq!(text(&mut b1c).await, "rejoined");
    // Presence shows the new metadata: B's task has done the round with both changes.
    let deadline = Instant::now() + WAIT;
    while names(&a.cluster.members(ROOM).await.expect("members")) != ["a1", "again"] {
        assert!(Instant::now() < deadline, "the rejoin never reached redis");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(redis.numsub(&channel), 2, "B still listens to the room");
    a.cluster.groups().broadcast(ROOM, "still reached");
    assert_eq!(text(&mut b1c).await, "still reached");
}
