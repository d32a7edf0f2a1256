//! Groups of different `Groups` (and of different clusters) never share members. Over real
//! sockets on two worker threads: every member gets exactly the broadcasts of the groups it
//! joined, whatever the names; and random runs of joins, leaves, broadcasts, `send_to` and
//! connection ends across several `Groups` match a plain model of who gets what.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::thread::ThreadId;
use std::time::Duration;

use actix::prelude::*;
use actix_meta_websocket::protocol::Incoming;
use actix_meta_websocket::*;
use common::*;
use proptest::prelude::*;
use tokio::sync::mpsc;

/// What the doorman saw.
enum Door {
    In(ConnectionId, ThreadId),
    Out(u64),
}

/// One per worker thread: tells the test of every connection (and its thread) and every end.
struct Doorman(mpsc::UnboundedSender<Door>);

impl Actor for Doorman {
    type Context = Context<Self>;
}

impl Handler<MessageConnect> for Doorman {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        let _ = self.0.send(Door::In(m.id, std::thread::current().id()));
    }
}

impl Handler<WsMessage> for Doorman {
    type Result = ();
    fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {}
}

impl Handler<MessageDisconnect> for Doorman {
    type Result = ();
    fn handle(&mut self, m: MessageDisconnect, _: &mut Context<Self>) {
        let _ = self.0.send(Door::Out(m.id.seq()));
    }
}

/// A server with two worker threads; its doormen report to the returned receiver.
fn serve_two_threads() -> (TestServer, mpsc::UnboundedReceiver<Door>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = serve_each(2, None, move || {
        let doorman = Doorman(tx.clone()).start();
        WsHandler::new(HandlerOptions::new(Target::from_addr(doorman))).expect("valid")
    });
    (server, rx)
}

async fn door(rx: &mut mpsc::UnboundedReceiver<Door>) -> Door {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("timed out").expect("doormen gone")
}

/// A client, its connection's id and the worker thread that runs it.
async fn open(
    srv: &TestServer,
    rx: &mut mpsc::UnboundedReceiver<Door>,
) -> (RawClient, ConnectionId, ThreadId) {
    let (raw, _) = RawClient::connect(srv.addr, "").await;
    match door(rx).await {
        Door::In(id, thread) => (raw, id, thread),
        Door::Out(_) => panic!("an end before the connection"),
    }
}

/// The next text message; anything else is a failure.
async fn text(raw: &mut RawClient) -> String {
    match raw.recv().await {
        Some(Incoming::Text(b)) => String::from_utf8(b.to_vec()).expect("UTF-8"),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Reads `want` in order, then nothing else until `end` (sent last, through the same
/// publisher, so everything handed to the connection before it arrives before it).
async fn expect_exactly(raw: &mut RawClient, who: &str, want: &[String], end: &str) {
    let mut got = Vec::new();
    loop {
        let t = text(raw).await;
        if t == end {
            break;
        }
        got.push(t);
    }
    assert_eq!(got, want, "{who}");
}

/// The groups instances of one test, by name.
struct Instances(Vec<(String, Groups)>);

/// Connection `c` of `n` joins, in instance `c % k`: "lobby"; "shared" when `c` is even;
/// `only<i>` (a name no other instance has) when `c` is a multiple of 3; and "shared" of
/// the next instance too, so it is in two groups of the same name.
fn memberships(c: usize, k: usize) -> Vec<(usize, String)> {
    let (home, next) = (c % k, (c + 1) % k);
    let mut m = vec![(home, "lobby".to_owned())];
    if c.is_multiple_of(2) {
        m.push((home, "shared".into()));
    }
    if c.is_multiple_of(3) {
        m.push((home, format!("only{home}")));
    }
    if next != home {
        m.push((next, "shared".into()));
    }
    m
}

async fn each_member_gets_exactly_its_groups(instances: &Instances) {
    let (srv, mut rx) = serve_two_threads();
    let k = instances.0.len();
    let mut conns = Vec::new();
    let mut threads = HashSet::new();
    for _ in 0..12 {
        let (raw, id, thread) = open(&srv, &mut rx).await;
        threads.insert(thread);
        conns.push((raw, id));
    }
    assert_eq!(threads.len(), 2, "members on both worker threads");
    let mut members: HashMap<(usize, String), Vec<usize>> = HashMap::new();
    for (c, (_, id)) in conns.iter().enumerate() {
        for (i, name) in memberships(c, k) {
            assert_eq!(instances.0[i].1.join(&name, id), Ok(true));
            members.entry((i, name)).or_default().push(c);
        }
    }
    let mut want: Vec<Vec<String>> = vec![Vec::new(); conns.len()];
    for round in 0..3 {
        for (i, (label, groups)) in instances.0.iter().enumerate() {
            let names = ["lobby".to_owned(), "shared".into(), format!("only{i}"), "nobody".into()];
            for name in names {
                let msg = format!("{label}/{name}/{round}");
                let expected = members.get(&(i, name.clone())).cloned().unwrap_or_default();
                assert_eq!(groups.broadcast(&name, msg.clone()), expected.len(), "{msg}");
                for c in expected {
                    want[c].push(msg.clone());
                }
            }
        }
    }
    let ids: Vec<&ConnectionId> = conns.iter().map(|(_, id)| id).collect();
    assert_eq!(instances.0[0].1.send_to(ids, "end"), conns.len());
    for (c, (raw, _)) in conns.iter_mut().enumerate() {
        expect_exactly(raw, &format!("connection {c}"), &want[c], "end").await;
    }
    for ((i, name), list) in &members {
        assert_eq!(instances.0[*i].1.count(name), list.len(), "count of {name} in instance {i}");
    }
    srv.handle.stop(false).await;
}

#[actix_web::test]
async fn members_of_separate_groups_get_only_their_own_groups_broadcasts() {
    let instances = Instances((0..3).map(|i| (format!("local{i}"), Groups::new())).collect());
    each_member_gets_exactly_its_groups(&instances).await;
}

/// The same with two clusters (different prefixes, one Redis) beside two local `Groups`.
#[cfg(feature = "cluster")]
#[actix_web::test]
async fn cluster_groups_beside_local_groups_and_each_other_stay_apart() {
    use common::redis::{redis_installed, Redis};
    if !redis_installed() {
        return;
    }
    let redis = Redis::start(&[]);
    let mut instances = Instances(vec![("local0".into(), Groups::new()), ("local1".into(), Groups::new())]);
    let mut clusters = Vec::new();
    for prefix in ["k1", "k2"] {
        let opts = ClusterOptions::new(redis.url()).prefix(prefix.into());
        let cluster = Cluster::join(opts).await.expect("joined");
        instances.0.push((prefix.into(), cluster.groups().clone()));
        clusters.push(cluster);
    }
    each_member_gets_exactly_its_groups(&instances).await;
    for cluster in clusters {
        cluster.leave().await;
    }
}

// The model run: random steps over several `Groups` and their connections.

const SLOTS: usize = 8;
const INSTANCES: usize = 3;
const NAMES: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Step {
    Join { inst: usize, name: usize, slot: usize },
    Leave { inst: usize, name: usize, slot: usize },
    Broadcast { inst: usize, name: usize, except: Option<usize> },
    SendTo { inst: usize, slots: Vec<usize> },
    End { slot: usize },
}

fn step() -> impl Strategy<Value = Step> {
    let (i, n, s) = (0..INSTANCES, 0..NAMES.len(), 0..SLOTS);
    prop_oneof![
        6 => (i.clone(), n.clone(), s.clone()).prop_map(|(inst, name, slot)| Step::Join { inst, name, slot }),
        3 => (i.clone(), n.clone(), s.clone()).prop_map(|(inst, name, slot)| Step::Leave { inst, name, slot }),
        6 => (i.clone(), n.clone(), proptest::option::weighted(0.2, s.clone()))
            .prop_map(|(inst, name, except)| Step::Broadcast { inst, name, except }),
        2 => (i, proptest::collection::vec(s.clone(), 0..4)).prop_map(|(inst, slots)| Step::SendTo { inst, slots }),
        1 => s.prop_map(|slot| Step::End { slot }),
    ]
}

/// One connection of the run and what it must receive, in order.
struct Slot {
    raw: RawClient,
    id: ConnectionId,
    want: Vec<String>,
}

/// The run's world: the server, the groups, the connections, and the plain model of who
/// is in which group.
struct World {
    srv: TestServer,
    rx: mpsc::UnboundedReceiver<Door>,
    groups: Vec<Groups>,
    slots: Vec<Slot>,
    members: HashMap<(usize, usize), BTreeSet<usize>>,
    sent: usize,
}

impl World {
    async fn new() -> World {
        let (srv, mut rx) = serve_two_threads();
        let mut slots = Vec::new();
        let mut threads = HashSet::new();
        for _ in 0..SLOTS {
            let (raw, id, thread) = open(&srv, &mut rx).await;
            threads.insert(thread);
            slots.push(Slot { raw, id, want: Vec::new() });
        }
        assert_eq!(threads.len(), 2, "connections on both worker threads");
        let groups = (0..INSTANCES).map(|_| Groups::new()).collect();
        World { srv, rx, groups, slots, members: HashMap::new(), sent: 0 }
    }

    fn next_message(&mut self) -> String {
        self.sent += 1;
        format!("m{}", self.sent)
    }

    async fn apply(&mut self, step: &Step) {
        match *step {
            Step::Join { inst, name, slot } => {
                let fresh = self.members.entry((inst, name)).or_default().insert(slot);
                let joined = self.groups[inst].join(NAMES[name], &self.slots[slot].id);
                assert_eq!(joined, Ok(fresh), "{step:?}");
            }
            Step::Leave { inst, name, slot } => {
                let was = self.members.entry((inst, name)).or_default().remove(&slot);
                assert_eq!(self.groups[inst].leave(NAMES[name], &self.slots[slot].id), was, "{step:?}");
            }
            Step::Broadcast { inst, name, except } => {
                let msg = self.next_message();
                let to: Vec<usize> = self.members.get(&(inst, name)).into_iter().flatten().copied().collect();
                let to: Vec<usize> = to.into_iter().filter(|s| Some(*s) != except).collect();
                let reached = match except {
                    Some(e) => {
                        self.groups[inst].broadcast_except(NAMES[name], msg.clone(), &self.slots[e].id)
                    }
                    None => self.groups[inst].broadcast(NAMES[name], msg.clone()),
                };
                assert_eq!(reached, to.len(), "{step:?}");
                for s in to {
                    self.slots[s].want.push(msg.clone());
                }
            }
            Step::SendTo { inst, ref slots } => {
                let msg = self.next_message();
                let ids: Vec<&ConnectionId> = slots.iter().map(|s| &self.slots[*s].id).collect();
                assert_eq!(self.groups[inst].send_to(ids, msg.clone()), slots.len(), "{step:?}");
                for s in slots {
                    self.slots[*s].want.push(msg.clone());
                }
            }
            Step::End { slot } => self.end(slot).await,
        }
    }

    /// The client reads what it is owed, closes, and sees nothing else before the server's
    /// close; once the server reports the end, the slot gets a fresh connection.
    async fn end(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        for (i, want) in s.want.iter().enumerate() {
            assert_eq!(&text(&mut s.raw).await, want, "slot {slot}, message {i} before its end");
        }
        s.raw.send_raw(&client_frame(true, 0, 0x8, &1000u16.to_be_bytes())).await;
        match s.raw.recv().await {
            Some(Incoming::Close(_)) => {}
            other => panic!("slot {slot}: expected the close answer, got {other:?}"),
        }
        let seq = s.id.seq();
        loop {
            match door(&mut self.rx).await {
                Door::Out(gone) if gone == seq => break,
                Door::Out(_) => {}
                Door::In(..) => panic!("a connection nobody opened"),
            }
        }
        let ended = self.slots[slot].id.clone();
        for (inst, groups) in self.groups.iter().enumerate() {
            assert!(groups.groups_of(&ended).is_empty(), "slot {slot} left instance {inst}'s groups");
            assert_eq!(groups.join("a", &ended), Err(WriteError::Closed));
        }
        for set in self.members.values_mut() {
            set.remove(&slot);
        }
        let (raw, id, _) = open(&self.srv, &mut self.rx).await;
        self.slots[slot] = Slot { raw, id, want: Vec::new() };
    }

    /// Every live connection gets exactly what the model says; presence agrees with it.
    async fn check(mut self) {
        for (&(inst, name), set) in &self.members {
            let listed: BTreeSet<u64> =
                self.groups[inst].members(NAMES[name]).iter().map(|m| m.id.seq()).collect();
            let model: BTreeSet<u64> = set.iter().map(|s| self.slots[*s].id.seq()).collect();
            assert_eq!(listed, model, "members of {} in instance {inst}", NAMES[name]);
        }
        let ids: Vec<&ConnectionId> = self.slots.iter().map(|s| &s.id).collect();
        assert_eq!(self.groups[0].send_to(ids, "end"), SLOTS);
        for (i, s) in self.slots.iter_mut().enumerate() {
            expect_exactly(&mut s.raw, &format!("slot {i}"), &s.want, "end").await;
        }
        self.srv.handle.stop(false).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_group_traffic_over_several_groups_matches_the_model(steps in proptest::collection::vec(step(), 50..400)) {
        actix_rt::System::new().block_on(async move {
            let mut world = World::new().await;
            for step in &steps {
                world.apply(step).await;
            }
            world.check().await;
        });
    }
}
