//! The node's task: one thread with its own Tokio runtime, holding the two Redis links
//! (commands and subscriptions), turning the commands of the handle and the groups into
//! Redis calls, and what arrives on the subscriptions into local deliveries and events.
//! When Redis goes away it fails what needs Redis at once, keeps its picture of the local
//! members, reconnects, and re-makes subscriptions and presence.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Recipient;
use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use tokio::sync::mpsc;

use super::error::{ClusterError, ClusterSendError};
use super::events::{ClusterEvent, ClusterMember, GapCause};
use super::ids::NodeId;
use super::keys::Keys;
use super::link::{Cmd, Link, MembersReply, Reply, SendReply};
use super::options::ClusterOptions;
use super::wire::Frame;
use crate::groups::PresenceChange;
use crate::Groups;

mod inbound;
mod presence;

const RECONNECT_FIRST: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_millis(500);
/// Commands taken off the queue per Redis round trip.
const BATCH: usize = 512;

/// Both links to Redis.
pub(crate) struct Redis {
    conn: MultiplexedConnection,
    sink: PubSubSink,
    stream: PubSubStream,
}

/// This node's part in one group.
#[derive(Default)]
struct Interest {
    /// Its members here: seq to metadata.
    members: HashMap<u64, Arc<str>>,
    watchers: Vec<Recipient<ClusterEvent>>,
}

pub(crate) struct Node {
    link: Arc<Link>,
    keys: Keys,
    opts: ClusterOptions,
    client: redis::Client,
    groups: Groups,
    interest: HashMap<Arc<str>, Interest>,
    /// Groups with a presence hash of ours in Redis, to delete when they empty.
    registered: HashSet<Arc<str>>,
    /// Nodes heard from: when, and how many broadcasts they had failed to publish.
    peers: HashMap<NodeId, Peer>,
    pending: HashMap<u64, (Instant, SendReply)>,
    next_req: u64,
    subscribers: Vec<Recipient<ClusterEvent>>,
}

struct Peer {
    seen: Instant,
    dropped: u64,
}

/// What one round of commands asks of Redis.
#[derive(Default)]
struct Round {
    pipe: redis::Pipeline,
    /// Commands in `pipe`, and which of them are sends whose receiver count matters.
    len: usize,
    sends: Vec<(usize, NodeId, u64)>,
    /// Groups whose channels to subscribe to, and to leave.
    subscribe: Vec<Arc<str>>,
    unsubscribe: Vec<Arc<str>>,
    members: Vec<(Arc<str>, MembersReply)>,
    stop: Option<Option<Reply<()>>>,
}

impl Round {
    fn cmd(&mut self, name: &str) -> &mut redis::Pipeline {
        self.len += 1;
        self.pipe.cmd(name)
    }

    fn publish(&mut self, channel: String, bytes: Bytes) {
        self.cmd("PUBLISH").arg(channel).arg(&bytes[..]);
    }
}

impl Node {
    pub(crate) fn new(link: Arc<Link>, opts: ClusterOptions, client: redis::Client, groups: Groups) -> Self {
        Node {
            link,
            keys: Keys::new(&opts.prefix),
            opts,
            client,
            groups,
            interest: HashMap::new(),
            registered: HashSet::new(),
            peers: HashMap::new(),
            pending: HashMap::new(),
            next_req: 1,
            subscribers: Vec::new(),
        }
    }

    fn me(&self) -> NodeId {
        self.link.me
    }

    /// Opens both links, subscribes to everything this node listens to, and writes its
    /// presence afresh.
    pub(crate) async fn connect(&mut self) -> Result<Redis, redis::RedisError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(self.opts.send_timeout));
        let mut conn = self.client.get_multiplexed_async_connection_with_config(&config).await?;
        let (mut sink, stream) = self.client.get_async_pubsub().await?.split();
        let mut channels = vec![self.keys.nodes(), self.keys.node(self.me())];
        channels.extend(self.interest.keys().map(|g| self.keys.group(g)));
        sink.subscribe(&channels).await?;
        let mut round = Round::default();
        for group in self.registered.clone() {
            self.write_presence(&mut round, &group, true);
        }
        round.publish(self.keys.nodes(), Frame::Heartbeat { dropped: self.link.dropped() }.encode(self.me()));
        round.pipe.query_async::<redis::Value>(&mut conn).await?;
        Ok(Redis { conn, sink, stream })
    }

    /// Serves until stopped: `redis` is the first link, made by the caller.
    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>, redis: Redis) {
        let mut redis = Some(redis);
        self.came_up(false);
        let mut tick = tokio::time::interval(self.opts.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut wait = RECONNECT_FIRST;
        let mut cmds = Vec::with_capacity(BATCH);
        loop {
            let Some(r) = redis.as_mut() else {
                tokio::select! {
                    n = rx.recv_many(&mut cmds, BATCH) => {
                        let round = self.apply(&mut cmds, n == 0);
                        if self.fail_round(round) {
                            return;
                        }
                    }
                    _ = tokio::time::sleep(wait) => match self.connect().await {
                        Ok(r) => {
                            redis = Some(r);
                            wait = RECONNECT_FIRST;
                            self.came_up(true);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "cluster: redis still away");
                            wait = (wait * 2).min(RECONNECT_MAX);
                        }
                    },
                }
                continue;
            };
            let lost = tokio::select! {
                n = rx.recv_many(&mut cmds, BATCH) => {
                    let mut round = self.apply(&mut cmds, n == 0);
                    match self.run_round(r, &mut round).await {
                        Ok(true) => return,
                        Ok(false) => None,
                        // What the round still owes is answered as if Redis were down.
                        Err(e) if self.fail_round(round) => return drop(e),
                        Err(e) => Some(e.to_string()),
                    }
                }
                msg = r.stream.next() => match msg {
                    Some(msg) => self.inbound(r, msg).await.err().map(|e| e.to_string()),
                    None => Some("subscription link closed".into()),
                },
                _ = tick.tick() => self.heartbeat(r).await.err().map(|e| e.to_string()),
            };
            if let Some(why) = lost {
                tracing::warn!(url = %self.opts.redacted_url(), %why, "cluster: lost redis; reconnecting");
                redis = None;
                self.went_down();
            }
        }
    }

    /// Lets the handle answer `nodes()`.
    fn publish_peers(&self) {
        self.link.set_peers(self.peers.keys().copied().collect());
    }

    fn tell(&mut self, event: ClusterEvent) {
        self.subscribers.retain(|s| s.connected());
        for s in &self.subscribers {
            s.do_send(event.clone());
        }
    }

    fn came_up(&mut self, again: bool) {
        self.link.set_up(true);
        // Nobody was heard while the link was down: time starts again.
        let now = Instant::now();
        self.peers.values_mut().for_each(|p| p.seen = now);
        if again {
            tracing::info!("cluster: redis is back; subscriptions and presence re-made");
            self.tell(ClusterEvent::BrokerUp);
            self.tell(ClusterEvent::Gap(GapCause::Reconnected));
        }
    }

    fn went_down(&mut self) {
        self.link.set_up(false);
        for (_, (_, reply)) in self.pending.drain() {
            let _ = reply.send(Err(ClusterSendError::BrokerDown));
        }
        self.tell(ClusterEvent::BrokerDown);
    }

    /// Takes a batch of commands: local bookkeeping now, Redis calls into the round.
    fn apply(&mut self, cmds: &mut Vec<Cmd>, closed: bool) -> Round {
        let mut round = Round::default();
        if closed {
            round.stop = Some(None);
        }
        if self.link.take_overflow() {
            self.tell(ClusterEvent::Gap(GapCause::Overflow));
        }
        for cmd in cmds.drain(..) {
            self.link.taken(&cmd);
            match cmd {
                Cmd::Changed { group, seq, meta, change } => {
                    self.changed(&mut round, group, seq, meta, change)
                }
                Cmd::Broadcast { group, msg } => {
                    let dropped = self.link.dropped();
                    let frame =
                        Frame::Broadcast { dropped, text: msg.is_text(), payload: msg.bytes().clone() };
                    round.publish(self.keys.group(&group), frame.encode(self.me()));
                }
                Cmd::Send { to, msg, reply } => {
                    let req = match reply {
                        Some(reply) => {
                            let req = self.next_req;
                            self.next_req += 1;
                            self.pending.insert(req, (Instant::now(), reply));
                            req
                        }
                        None => 0,
                    };
                    let frame =
                        Frame::Send { req, seq: to.seq, text: msg.is_text(), payload: msg.bytes().clone() };
                    round.sends.push((round.len, to.node, req));
                    round.publish(self.keys.node(to.node), frame.encode(self.me()));
                }
                Cmd::Watch { group, watcher } => {
                    let first = !self.interest.contains_key(&group);
                    self.interest.entry(group.clone()).or_default().watchers.push(watcher);
                    if first {
                        round.subscribe.push(group);
                    }
                }
                Cmd::Subscribe(s) => self.subscribers.push(s),
                Cmd::Members { group, reply } => round.members.push((group, reply)),
                Cmd::Stop { reply } => round.stop = Some(reply),
            }
        }
        round
    }

    /// Redis is down: what needed it fails now. Whether to stop.
    fn fail_round(&mut self, round: Round) -> bool {
        for (_, _, req) in round.sends {
            if let Some((_, reply)) = self.pending.remove(&req) {
                let _ = reply.send(Err(ClusterSendError::BrokerDown));
            }
        }
        for (_, reply) in round.members {
            let _ = reply.send(Err(ClusterError::BrokerDown));
        }
        match round.stop {
            Some(reply) => {
                reply.map(|r| r.send(()));
                true
            }
            None => false,
        }
    }

    /// Makes the round's Redis calls; `Ok(true)` when the node is to stop.
    async fn run_round(&mut self, r: &mut Redis, round: &mut Round) -> redis::RedisResult<bool> {
        // What the round ends with counts: a group left and joined again within it stays
        // subscribed, one joined and left needs no subscription.
        round.unsubscribe.retain(|g| !self.interest.contains_key(g));
        round.subscribe.retain(|g| self.interest.contains_key(g));
        if !round.subscribe.is_empty() {
            let channels: Vec<String> = round.subscribe.iter().map(|g| self.keys.group(g)).collect();
            r.sink.subscribe(&channels).await?;
        }
        if round.len > 0 {
            let out: Vec<redis::Value> = round.pipe.query_async(&mut r.conn).await?;
            for (at, node, req) in round.sends.drain(..) {
                // Nobody subscribed to the node's channel: it is not there.
                if matches!(out.get(at), Some(redis::Value::Int(0))) {
                    if let Some((_, reply)) = self.pending.remove(&req) {
                        let _ = reply.send(Err(ClusterSendError::NoSuchNode(node)));
                    }
                }
            }
        }
        if !round.unsubscribe.is_empty() {
            let channels: Vec<String> = round.unsubscribe.iter().map(|g| self.keys.group(g)).collect();
            r.sink.unsubscribe(&channels).await?;
        }
        for (group, reply) in round.members.drain(..) {
            let _ = reply.send(self.members(r, &group).await);
        }
        if let Some(reply) = round.stop.take() {
            self.leave(r).await;
            reply.map(|r| r.send(()));
            return Ok(true);
        }
        Ok(false)
    }

    /// Says goodbye: this node's presence goes now rather than at its expiry.
    async fn leave(&mut self, r: &mut Redis) {
        let mut round = Round::default();
        for group in self.registered.clone() {
            round.cmd("DEL").arg(self.keys.members(&group, self.me()));
            round.cmd("SREM").arg(self.keys.group_nodes(&group)).arg(self.me().to_string());
        }
        round.publish(self.keys.nodes(), Frame::Bye.encode(self.me()));
        if let Err(e) = round.pipe.query_async::<redis::Value>(&mut r.conn).await {
            tracing::warn!(error = %e, "cluster: goodbye not said; presence expires instead");
        }
        self.link.set_up(false);
    }
    async fn heartbeat(&mut self, r: &mut Redis) -> redis::RedisResult<()> {
        let mut round = Round::default();
        round.publish(self.keys.nodes(), Frame::Heartbeat { dropped: self.link.dropped() }.encode(self.me()));
        let groups: Vec<Arc<str>> = self.registered.iter().cloned().collect();
        for group in groups {
            self.refresh(&mut round, &group);
        }
        round.pipe.query_async::<redis::Value>(&mut r.conn).await?;
        let now = Instant::now();
        let timeout = self.opts.node_timeout;
        let dead: Vec<NodeId> =
            self.peers.iter().filter(|(_, p)| now - p.seen > timeout).map(|(n, _)| *n).collect();
        for node in dead {
            self.peers.remove(&node);
            self.publish_peers();
            tracing::info!(%node, "cluster: node down (no heartbeat)");
            self.tell(ClusterEvent::NodeDown(node));
        }
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, (at, _))| now - *at > self.opts.send_timeout)
            .map(|(k, _)| *k)
            .collect();
        for req in late {
            if let Some((_, reply)) = self.pending.remove(&req) {
                let _ = reply.send(Err(ClusterSendError::Timeout));
            }
        }
        self.link.sweep();
        Ok(())
    }
}

fn tell_watchers(
    watchers: &mut Vec<Recipient<ClusterEvent>>,
    group: &Arc<str>,
    member: &ClusterMember,
    change: PresenceChange,
) {
    watchers.retain(|w| w.connected());
    for w in watchers.iter() {
        w.do_send(ClusterEvent::Presence { group: group.clone(), member: member.clone(), change });
    }
}

fn parse_or_log<T: std::str::FromStr>(bytes: &[u8], what: &str) -> Option<T> {
    let parsed = std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok());
    if parsed.is_none() {
        tracing::warn!(what, "cluster: ignored an entry in redis that is not ours");
    }
    parsed
}
