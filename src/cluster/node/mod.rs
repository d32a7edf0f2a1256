//! The node's task: one thread with its own Tokio runtime, holding the two Redis links
//! (commands and subscriptions). It carries out on Redis what its bookkeeping decides,
//! and turns what arrives on the subscriptions into local deliveries and events.
//!
//! - `local`: this node's members and watchers of each group, and what they ask of Redis.
//! - `roster`: the members on other nodes of the groups watched from here.
//! - `peers`: the other nodes heard from.
//! - `pending`: sends waiting for the owning node's answer.
//! - `round`: the Redis commands of one round trip; `read`: presence read back.
//!
//! When Redis goes away the task fails what needs Redis at once, keeps its bookkeeping,
//! reconnects, and then re-makes subscriptions and presence, tells the other nodes what
//! changed here meanwhile, and tells its watchers what changed elsewhere.

mod local;
mod peers;
mod pending;
mod read;
mod roster;
mod round;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Recipient;
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use tokio::sync::mpsc;

use super::error::{ClusterError, ClusterSendError};
use super::events::{ClusterEvent, ClusterMember, GapCause};
use super::ids::{GlobalId, NodeId};
use super::keys::Keys;
use super::link::{Cmd, Link};
use super::options::ClusterOptions;
use super::wire::{Frame, Outcome};
use crate::groups::{Groups, PresenceChange};
use crate::prepared::PreparedMessage;
use crate::watchers::Watchers;
use local::{LocalGroups, Write};
use peers::{Heard, Peers};
use pending::{PendingSends, NO_ANSWER};
use roster::Rosters;
use round::{Presence, Round};

const RECONNECT_FIRST: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_millis(500);
/// Commands taken off the queue per Redis round trip.
const BATCH: usize = 512;
/// Messages read from the subscription before their answers leave in one round trip.
const READ_AHEAD: usize = 256;

/// Both links to Redis.
pub(crate) struct Redis {
    conn: MultiplexedConnection,
    sink: PubSubSink,
    stream: PubSubStream,
}

/// Which of our channels a message came on.
enum Channel<'a> {
    Group(&'a str),
    Mine,
    Nodes,
    Other,
}

pub(crate) struct Node {
    link: Arc<Link>,
    keys: Keys,
    opts: ClusterOptions,
    client: redis::Client,
    groups: Groups,
    local: LocalGroups,
    rosters: Rosters,
    peers: Peers,
    pending: PendingSends,
    subscribers: Watchers<ClusterEvent>,
}

impl Node {
    pub(crate) fn new(link: Arc<Link>, opts: ClusterOptions, client: redis::Client, groups: Groups) -> Self {
        Node {
            link,
            keys: Keys::new(&opts.prefix),
            opts,
            client,
            groups,
            local: LocalGroups::default(),
            rosters: Rosters::default(),
            peers: Peers::default(),
            pending: PendingSends::default(),
            subscribers: Watchers::default(),
        }
    }

    fn me(&self) -> NodeId {
        self.link.me
    }

    fn presence(&self) -> Presence<'_> {
        Presence {
            keys: &self.keys,
            me: self.link.me,
            ttl: self.opts.node_timeout.as_millis() as u64,
            dropped: self.link.dropped(),
        }
    }

    /// Opens both links and subscribes to everything this node listens to; writes again
    /// the presence that Redis may have lost (or that changed while it was away) and tells
    /// the other nodes of it; reloads what this node knows of other nodes' members.
    pub(crate) async fn connect(&mut self) -> Result<Redis, redis::RedisError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(self.opts.send_timeout));
        let mut conn = self.client.get_multiplexed_async_connection_with_config(&config).await?;
        let (mut sink, stream) = self.client.get_async_pubsub().await?.split();
        let mut channels = vec![self.keys.nodes(), self.keys.node(self.me())];
        channels.extend(self.local.channels().iter().map(|g| self.keys.group(g)));
        sink.subscribe(&channels).await?;
        let mut round = Round::default();
        for group in self.local.to_rewrite() {
            round.announce(&self.presence(), &group, self.local.members(&group));
        }
        round.publish(self.keys.nodes(), Frame::Heartbeat { dropped: self.link.dropped() }.encode(self.me()));
        round.run(&mut conn).await?;
        self.local.rewritten();
        let mut redis = Redis { conn, sink, stream };
        for group in self.local.watched() {
            self.load_roster(&mut redis, &group).await?;
        }
        self.introduce_watchers(&mut redis).await?;
        // Up before `Cluster::join` returns, so that its first send finds the link up.
        self.link.set_up(true);
        Ok(redis)
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
                match self.while_down(&mut rx, &mut cmds, &mut wait).await {
                    Down::Stop => return,
                    Down::Still => {}
                    Down::Up(r) => redis = Some(r),
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

    /// One step without Redis: commands are answered as if it were down, and after `wait`
    /// the node tries to reconnect.
    async fn while_down(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Cmd>,
        cmds: &mut Vec<Cmd>,
        wait: &mut Duration,
    ) -> Down {
        tokio::select! {
            n = rx.recv_many(cmds, BATCH) => {
                let round = self.apply(cmds, n == 0);
                if self.fail_round(round) { Down::Stop } else { Down::Still }
            }
            _ = tokio::time::sleep(*wait) => match self.connect().await {
                Ok(r) => {
                    *wait = RECONNECT_FIRST;
                    self.came_up(true);
                    Down::Up(r)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cluster: redis still away");
                    *wait = (*wait * 2).min(RECONNECT_MAX);
                    Down::Still
                }
            },
        }
    }

    fn tell(&mut self, event: ClusterEvent) {
        self.subscribers.tell(event);
    }

    /// Tells `group`'s watchers that `member` changed.
    fn tell_watchers(&mut self, group: &Arc<str>, member: ClusterMember, change: PresenceChange) {
        self.local.tell(group, ClusterEvent::Presence { group: group.clone(), member, change });
    }

    /// A new subscriber is told the state first (the nodes up now, and whether Redis is
    /// away), so that subscribing late misses nothing.
    fn subscribe(&mut self, subscriber: Recipient<ClusterEvent>) {
        for node in self.peers.ids() {
            subscriber.do_send(ClusterEvent::NodeUp(node));
        }
        if !self.link.is_up() {
            subscriber.do_send(ClusterEvent::BrokerDown);
        }
        self.subscribers.add(subscriber);
    }

    fn came_up(&mut self, again: bool) {
        // Nobody was heard while the link was down: time starts again.
        self.peers.restart_clock(Instant::now());
        if again {
            tracing::info!("cluster: redis is back; subscriptions and presence re-made");
            self.tell(ClusterEvent::BrokerUp);
            self.tell(ClusterEvent::Gap(GapCause::Reconnected));
        }
    }

    fn went_down(&mut self) {
        self.link.set_up(false);
        self.pending.fail_all(&ClusterSendError::BrokerDown);
        self.tell(ClusterEvent::BrokerDown);
    }

    /// Takes a batch of commands: bookkeeping now, Redis calls into the round.
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
                    let frame = Frame::Broadcast {
                        dropped: self.link.dropped(),
                        text: msg.is_text(),
                        payload: msg.bytes().clone(),
                    };
                    round.publish(self.keys.group(&group), frame.encode(self.me()));
                }
                Cmd::Send { to, msg, reply } => {
                    let req = self.pending.start(reply, Instant::now());
                    let frame =
                        Frame::Send { req, seq: to.seq, text: msg.is_text(), payload: msg.bytes().clone() };
                    round.send(self.keys.node(to.node), frame.encode(self.me()), to.node, req);
                }
                Cmd::Watch { group, watcher } => {
                    if self.local.watch(&group, watcher) {
                        round.subscribe.push(group);
                    }
                }
                Cmd::Subscribe(s) => self.subscribe(s),
                Cmd::Members { group, reply } => round.members.push((group, reply)),
                Cmd::Stop { reply } => round.stop = Some(reply),
            }
        }
        round
    }

    /// A member of `group` on this node joined, changed or left.
    fn changed(
        &mut self,
        round: &mut Round,
        group: Arc<str>,
        seq: u64,
        meta: Arc<str>,
        change: PresenceChange,
    ) {
        let c = self.local.changed(&group, seq, meta, change, self.link.is_up());
        let member = ClusterMember { id: GlobalId { node: self.me(), seq }, meta: c.meta.clone() };
        self.tell_watchers(&group, member, change);
        if c.subscribe {
            round.subscribe.push(group.clone());
        }
        if c.unsubscribe {
            round.unsubscribe.push(group.clone());
            self.rosters.forget(&group);
        }
        match c.write {
            Write::Set => round.set_member(&self.presence(), &group, seq, &c.meta),
            Write::Delete { last } => round.delete_member(&self.presence(), &group, seq, last),
        }
        let frame = Frame::Presence { dropped: self.link.dropped(), change, seq, meta: c.meta.to_string() };
        round.publish(self.keys.group(&group), frame.encode(self.me()));
    }

    /// Redis is down: what needed it fails now. Whether to stop.
    fn fail_round(&mut self, round: Round) -> bool {
        for (_, _, req) in round.sends {
            self.pending.answer(req, Err(ClusterSendError::BrokerDown));
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
        round.unsubscribe.retain(|g| !self.local.listens(g));
        round.subscribe.retain(|g| self.local.listens(g));
        if !round.subscribe.is_empty() {
            let channels: Vec<String> = round.subscribe.iter().map(|g| self.keys.group(g)).collect();
            r.sink.subscribe(&channels).await?;
        }
        let out = round.run(&mut r.conn).await?;
        for (at, node, req) in round.sends.drain(..) {
            // Nobody subscribed to the node's channel: it is not there.
            if matches!(out.get(at), Some(redis::Value::Int(0))) {
                self.pending.answer(req, Err(ClusterSendError::NoSuchNode(node)));
            }
        }
        if !round.unsubscribe.is_empty() {
            let channels: Vec<String> = round.unsubscribe.iter().map(|g| self.keys.group(g)).collect();
            r.sink.unsubscribe(&channels).await?;
        }
        self.introduce_watchers(r).await?;
        for (group, reply) in round.members.drain(..) {
            let members = read::members(&mut r.conn, &self.keys, &group).await;
            let _ = reply.send(members.map_err(|e| ClusterError::Redis(e.to_string())));
        }
        if let Some(reply) = round.stop.take() {
            self.leave(r).await;
            reply.map(|r| r.send(()));
            return Ok(true);
        }
        Ok(false)
    }

    /// Reads `group`'s members from Redis into its roster; its watchers are told what
    /// changed since the roster was last right.
    async fn load_roster(&mut self, r: &mut Redis, group: &Arc<str>) -> redis::RedisResult<()> {
        let listed = read::members(&mut r.conn, &self.keys, group).await?;
        for member in &listed {
            // What it dropped before is not known: counted from zero, a later rise is a
            // gap, if one that may have happened before this node listened.
            self.heard_of(member.id.node(), 0);
        }
        for (member, change) in self.rosters.load(group, listed, self.me()) {
            self.tell_watchers(group, member, change);
        }
        Ok(())
    }

    /// `node` has members in presence: it is up, and watched for its death like any node
    /// heard (its heartbeat may not have come yet); `dropped` as its frames tell it.
    fn heard_of(&mut self, node: NodeId, dropped: u64) {
        if node == self.me() {
            return;
        }
        match self.peers.heard_of(node, dropped, Instant::now()) {
            Heard::Up => self.node_up(node),
            Heard::Missed => self.missed(node, dropped),
            Heard::Same => {}
        }
    }

    /// `node` failed to publish broadcasts since it was last heard.
    fn missed(&mut self, node: NodeId, dropped: u64) {
        tracing::warn!(%node, dropped, "cluster: a node could not publish some broadcasts");
        self.tell(ClusterEvent::Gap(GapCause::Missed(node)));
    }

    fn node_up(&mut self, node: NodeId) {
        self.link.set_peers(self.peers.ids());
        tracing::info!(%node, "cluster: node up");
        self.tell(ClusterEvent::NodeUp(node));
    }

    /// Tells each waiting watcher every member of its group, here and on other nodes, as
    /// `Present`; from then on it is told each change.
    async fn introduce_watchers(&mut self, r: &mut Redis) -> redis::RedisResult<()> {
        for group in self.local.with_waiting_watchers() {
            if !self.rosters.is_loaded(&group) {
                self.load_roster(r, &group).await?;
            }
            let me = self.me();
            let mut members: Vec<ClusterMember> = self
                .local
                .members(&group)
                .into_iter()
                .map(|(seq, meta)| ClusterMember { id: GlobalId { node: me, seq }, meta })
                .collect();
            members.extend(self.rosters.members(&group));
            for watcher in self.local.introduce(&group) {
                for member in &members {
                    let (group, member) = (group.clone(), member.clone());
                    watcher.do_send(ClusterEvent::Presence {
                        group,
                        member,
                        change: PresenceChange::Present,
                    });
                }
            }
        }
        Ok(())
    }

    /// Says goodbye: this node's presence goes now rather than at its expiry.
    async fn leave(&mut self, r: &mut Redis) {
        let mut round = Round::default();
        for group in self.local.with_members() {
            round.rewrite(&self.presence(), &group, &[]);
        }
        round.publish(self.keys.nodes(), Frame::Bye.encode(self.me()));
        if let Err(e) = round.run(&mut r.conn).await {
            tracing::warn!(error = %e, "cluster: goodbye not said; presence expires instead");
        }
        self.link.set_up(false);
    }

    /// Says this node is alive and keeps its presence; takes silent nodes for dead and
    /// late answers for lost; forgets what nobody needs any more.
    async fn heartbeat(&mut self, r: &mut Redis) -> redis::RedisResult<()> {
        let mut round = Round::default();
        round.publish(self.keys.nodes(), Frame::Heartbeat { dropped: self.link.dropped() }.encode(self.me()));
        let refreshed: Vec<(usize, Arc<str>)> = self
            .local
            .with_members()
            .into_iter()
            .map(|group| (round.refresh(&self.presence(), &group), group))
            .collect();
        let out = round.run(&mut r.conn).await?;
        self.announce_expired(r, &out, refreshed).await?;
        let now = Instant::now();
        for node in self.peers.expire(now, self.opts.node_timeout) {
            self.node_down(node, "no heartbeat");
        }
        self.pending.expire(now, self.opts.send_timeout);
        self.link.sweep();
        let unused = self.local.drop_stopped_watchers();
        let local = &self.local;
        self.rosters.keep(|g| local.is_watched(g));
        if !unused.is_empty() {
            let channels: Vec<String> = unused.iter().map(|g| self.keys.group(g)).collect();
            r.sink.unsubscribe(&channels).await?;
        }
        Ok(())
    }

    /// Writes again the presence that had expired (this node stalled past the node timeout,
    /// and the others took it for dead), and tells the other nodes.
    async fn announce_expired(
        &mut self,
        r: &mut Redis,
        out: &[redis::Value],
        refreshed: Vec<(usize, Arc<str>)>,
    ) -> redis::RedisResult<()> {
        let mut again = Round::default();
        for (at, group) in refreshed {
            if matches!(out.get(at), Some(redis::Value::Int(0))) {
                tracing::warn!(%group, "cluster: this node's presence had expired; written again");
                again.announce(&self.presence(), &group, self.local.members(&group));
            }
        }
        again.run(&mut r.conn).await.map(drop)
    }

    /// `node` is gone: subscribers are told, and watchers are told each of its members
    /// left with it.
    fn node_down(&mut self, node: NodeId, why: &str) {
        self.link.set_peers(self.peers.ids());
        tracing::info!(%node, why, "cluster: node down");
        self.tell(ClusterEvent::NodeDown(node));
        for (group, (member, change)) in self.rosters.node_down(node) {
            self.tell_watchers(&group, member, change);
        }
    }

    /// Takes `first` and whatever else has arrived already (up to `READ_AHEAD`), then
    /// sends the answers they call for together.
    async fn inbound(&mut self, r: &mut Redis, first: redis::Msg) -> redis::RedisResult<()> {
        let mut answers = Round::default();
        self.on_message(&first, &mut answers);
        for _ in 1..READ_AHEAD {
            // A closed stream stays closed: the task's next poll of it says so.
            let Some(Some(msg)) = r.stream.next().now_or_never() else { break };
            self.on_message(&msg, &mut answers);
        }
        answers.run(&mut r.conn).await?;
        Ok(())
    }

    fn channel<'a>(&self, name: &'a str) -> Channel<'a> {
        match self.keys.group_of(name) {
            Some(group) => Channel::Group(group),
            None if name == self.keys.node(self.me()) => Channel::Mine,
            None if name == self.keys.nodes() => Channel::Nodes,
            None => Channel::Other,
        }
    }

    fn on_message(&mut self, msg: &redis::Msg, answers: &mut Round) {
        let channel = msg.get_channel_name();
        let (from, frame) = match Frame::decode(Bytes::copy_from_slice(msg.get_payload_bytes())) {
            Ok(ok) => ok,
            Err(e) => {
                tracing::warn!(channel, error = %e, "cluster: ignored a message that is not ours");
                return;
            }
        };
        if from == self.me() {
            return;
        }
        match (frame, self.channel(channel)) {
            (Frame::Broadcast { dropped, text, payload }, Channel::Group(group)) => {
                self.groups.deliver_here(group, &PreparedMessage::checked(text, payload));
                self.heard(from, dropped, false);
            }
            (Frame::Presence { dropped, change, seq, meta }, Channel::Group(group)) => {
                self.heard_of(from, dropped);
                let member = ClusterMember { id: GlobalId { node: from, seq }, meta: meta.into() };
                if let Some((member, change)) = self.rosters.apply(group, member, change) {
                    self.tell_watchers(&group.into(), member, change);
                }
            }
            (Frame::Roster { dropped, members }, Channel::Group(group)) => {
                self.heard_of(from, dropped);
                for (member, change) in self.rosters.replace_node(group, from, members) {
                    self.tell_watchers(&group.into(), member, change);
                }
            }
            (Frame::Send { req, seq, text, payload }, Channel::Mine) => {
                let delivered =
                    self.link.deliver(seq, PreparedMessage::checked(text, payload), req != NO_ANSWER);
                if req != NO_ANSWER {
                    let ack = Frame::Ack { req, outcome: Outcome::of(&delivered) };
                    answers.publish(self.keys.node(from), ack.encode(self.me()));
                }
            }
            (Frame::Ack { req, outcome }, Channel::Mine) => self.pending.answer(req, outcome.into_result()),
            (Frame::Heartbeat { dropped }, Channel::Nodes) => self.heard(from, dropped, true),
            (Frame::Bye, Channel::Nodes) => {
                if self.peers.bye(from) {
                    self.node_down(from, "left");
                }
            }
            (frame, _) => {
                tracing::warn!(
                    channel,
                    kind = frame.kind(),
                    "cluster: ignored a message on the wrong channel"
                )
            }
        }
    }

    /// `from` is alive (a heartbeat) or at least talking.
    fn heard(&mut self, from: NodeId, dropped: u64, heartbeat: bool) {
        match self.peers.heard(from, dropped, heartbeat, Instant::now()) {
            Heard::Up => self.node_up(from),
            Heard::Missed => self.missed(from, dropped),
            Heard::Same => {}
        }
    }
}

/// What a step without Redis came to.
enum Down {
    Stop,
    Still,
    Up(Redis),
}
