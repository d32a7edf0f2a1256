//! The node's bookkeeping and what it decides, without I/O: what a batch of commands
//! asks of Redis, what a frame from the bus means (deliveries, answers, events), what a
//! node's death or a heartbeat's silence takes away. The Redis loop (`mod.rs`) carries
//! the decisions out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Recipient;
use bytes::Bytes;

use super::local::{LocalGroups, Write};
use super::peers::{Heard, Peers};
use super::pending::{PendingSends, NO_ANSWER};
use super::roster::Rosters;
use super::round::{Presence, Round};
use super::streams::{Stored, Streams};
use crate::cluster::error::{ClusterError, ClusterSendError};
use crate::cluster::events::{ClusterEvent, ClusterMember, GapCause};
use crate::cluster::ids::{GlobalId, NodeId};
use crate::cluster::keys::Keys;
use crate::cluster::link::{Cmd, Link};
use crate::cluster::wire::{Frame, Outcome};
use crate::groups::{Groups, HistoryError, PresenceChange, RecoveryError, Unrecoverable};
use crate::prepared::PreparedMessage;
use crate::watchers::Watchers;

/// Which of our channels a message came on.
enum Channel<'a> {
    Group(&'a str),
    Mine,
    Nodes,
    Other,
}

pub(super) struct State {
    pub(super) link: Arc<Link>,
    pub(super) keys: Keys,
    node_timeout: Duration,
    pub(super) groups: Groups,
    pub(super) local: LocalGroups,
    pub(super) streams: Streams,
    pub(super) rosters: Rosters,
    pub(super) peers: Peers,
    pub(super) pending: PendingSends,
    subscribers: Watchers<ClusterEvent>,
}

impl State {
    pub(super) fn new(link: Arc<Link>, keys: Keys, node_timeout: Duration, groups: Groups) -> Self {
        State {
            link,
            keys,
            node_timeout,
            groups,
            local: LocalGroups::default(),
            streams: Streams::default(),
            rosters: Rosters::default(),
            peers: Peers::default(),
            pending: PendingSends::default(),
            subscribers: Watchers::default(),
        }
    }

    pub(super) fn me(&self) -> NodeId {
        self.link.me
    }

    /// Where this node's presence lives, for the round's commands.
    pub(super) fn presence(&self) -> Presence<'_> {
        Presence {
            keys: &self.keys,
            me: self.link.me,
            ttl: self.node_timeout.as_millis() as u64,
            dropped: self.link.dropped(),
        }
    }

    pub(super) fn tell(&mut self, event: ClusterEvent) {
        event.record(|| self.peers.ids().len() + 1);
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

    /// The link is made; `outage`: it had been lost (or never made) for that long.
    pub(super) fn came_up(&mut self, outage: Option<Duration>) {
        // Nobody was heard while the link was down: time starts again.
        self.peers.restart_clock(Instant::now());
        if let Some(outage) = outage {
            // What the subscriptions brought meanwhile is read back from history.
            self.streams.all_behind();
            tracing::info!(?outage, "cluster: redis is back; subscriptions and presence re-made");
            self.tell(ClusterEvent::BrokerUp);
            self.tell(ClusterEvent::Gap(GapCause::Reconnected { outage }));
        }
    }

    pub(super) fn went_down(&mut self) {
        self.link.set_up(false);
        self.link.health.lost();
        self.pending.fail_all(&ClusterSendError::BrokerDown);
        self.tell(ClusterEvent::BrokerDown);
    }

    /// Takes a batch of commands: bookkeeping now, Redis calls into the round.
    pub(super) fn apply(&mut self, cmds: &mut Vec<Cmd>, closed: bool) -> Round {
        let mut round = Round::new(&self.keys);
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
                    round.broadcast(self.keys.group(&group), frame.encode(self.me()));
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
                Cmd::Publish(p) => round.publishes.push(p),
                Cmd::JoinSince(j) => round.joins.push(j),
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
    pub(super) fn fail_round(&mut self, round: Round) -> bool {
        for (_, _, req) in round.sends {
            self.pending.answer(req, Err(ClusterSendError::BrokerDown));
        }
        for (_, reply) in round.members {
            let _ = reply.send(Err(ClusterError::BrokerDown));
        }
        for p in round.publishes {
            let _ = p.reply.send(Err(HistoryError::NotPublished(ClusterSendError::BrokerDown.to_string())));
        }
        for j in round.joins {
            j.answer(Err(RecoveryError::Unrecoverable { reason: Unrecoverable::Unavailable, current: None }));
        }
        match round.stop {
            Some(reply) => {
                reply.map(|r| r.send(()));
                true
            }
            None => false,
        }
    }

    /// What Redis lists of `group` now: the roster becomes that, and its watchers are told
    /// what changed since it was last right.
    pub(super) fn roster_read(&mut self, group: &Arc<str>, listed: Vec<ClusterMember>) {
        for member in &listed {
            // What it dropped before is not known: counted from zero, a later rise is a
            // gap, if one that may have happened before this node listened.
            self.heard_of(member.id.node(), 0);
        }
        for (member, change) in self.rosters.load(group, listed, self.me()) {
            self.tell_watchers(group, member, change);
        }
    }

    /// Tells each waiting watcher of `group` every member of it, here and on other nodes,
    /// as `Present` (the roster must be loaded); from then on it is told each change.
    pub(super) fn introduce_watchers(&mut self, group: &Arc<str>) {
        let me = self.me();
        let mut members: Vec<ClusterMember> = self
            .local
            .members(group)
            .into_iter()
            .map(|(seq, meta)| ClusterMember { id: GlobalId { node: me, seq }, meta })
            .collect();
        members.extend(self.rosters.members(group));
        for watcher in self.local.introduce(group) {
            for member in &members {
                let (group, member) = (group.clone(), member.clone());
                watcher.do_send(ClusterEvent::Presence { group, member, change: PresenceChange::Present });
            }
        }
    }

    /// After a heartbeat: silent nodes are taken for dead, late answers for lost, stopped
    /// watchers forgotten; the groups nobody here needs any more, to stop listening to.
    pub(super) fn after_heartbeat(&mut self, send_timeout: Duration) -> Vec<Arc<str>> {
        let now = Instant::now();
        for node in self.peers.expire(now, self.node_timeout) {
            self.node_down(node, "no heartbeat");
        }
        self.pending.expire(now, send_timeout);
        self.link.sweep();
        let mut unused = self.local.drop_stopped_watchers();
        // A member may have joined here whose change is still queued: its group stays.
        unused.retain(|g| self.groups.count(g) == 0);
        for group in &unused {
            self.streams.forget(group);
        }
        let local = &self.local;
        self.rosters.keep(|g| local.is_watched(g));
        unused
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

    /// A message on one of our channels: what it delivers, tells and answers (into
    /// `answers`); `true` when it is this node's own heartbeat, back on the subscription.
    pub(super) fn on_message(&mut self, channel: &str, payload: &[u8], answers: &mut Round) -> bool {
        let decoded = Frame::decode(Bytes::copy_from_slice(payload)).inspect_err(
            |e| tracing::warn!(channel, error = %e, "cluster: ignored a message that is not ours"),
        );
        let Ok((from, frame)) = decoded else { return false };
        match frame {
            // A node's stored broadcasts come back to it too: delivered here in their place.
            Frame::Stored { epoch, offset, except, text, payload } => {
                let Some(group) = self.keys.group_of(channel) else {
                    tracing::warn!(channel, "cluster: ignored a stored broadcast off its channel");
                    return false;
                };
                let except = (from == self.me() && except != 0).then_some(except);
                let s =
                    Stored { epoch, offset, except, msg: PreparedMessage::checked(text, payload), at_ms: 0 };
                if let Some(s) = self.streams.arrived(&group.into(), s) {
                    self.groups.deliver_stored(group, s.position(), &s.msg, s.except);
                }
            }
            frame if from != self.me() => self.on_frame(channel, from, frame, answers),
            Frame::Heartbeat { .. } => return matches!(self.channel(channel), Channel::Nodes),
            _ => {}
        }
        false
    }

    fn channel<'a>(&self, name: &'a str) -> Channel<'a> {
        match self.keys.group_of(name) {
            Some(group) => Channel::Group(group),
            None if name == self.keys.node(self.me()) => Channel::Mine,
            None if name == self.keys.nodes() || self.keys.is_probe(name) => Channel::Nodes,
            None => Channel::Other,
        }
    }

    fn on_frame(&mut self, channel: &str, from: NodeId, frame: Frame, answers: &mut Round) {
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

#[cfg(test)]
mod tests {
    use actix::prelude::*;
    use tokio::sync::{mpsc, oneshot};

    use super::*;

    const ME: NodeId = NodeId(1);

    struct Record(mpsc::UnboundedSender<ClusterEvent>);
    impl Actor for Record {
        type Context = Context<Self>;
    }
    impl Handler<ClusterEvent> for Record {
        type Result = ();
        fn handle(&mut self, e: ClusterEvent, _: &mut Context<Self>) {
            let _ = self.0.send(e);
        }
    }

    fn recorder() -> (Recipient<ClusterEvent>, mpsc::UnboundedReceiver<ClusterEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Record(tx).start().recipient(), rx)
    }

    fn state() -> State {
        let (link, _rx) = Link::new(ME, 1 << 20, Duration::from_secs(1));
        link.set_up(true);
        State::new(link, Keys::new("amw", false), Duration::from_secs(3), Groups::new())
    }

    fn member(node: u64, seq: u64, meta: &str) -> ClusterMember {
        ClusterMember { id: GlobalId { node: NodeId(node), seq }, meta: meta.into() }
    }

    /// The next presence change told, as (member, change).
    async fn told(rx: &mut mpsc::UnboundedReceiver<ClusterEvent>) -> (ClusterMember, PresenceChange) {
        match rx.recv().await {
            Some(ClusterEvent::Presence { member, change, .. }) => (member, change),
            other => panic!("expected a presence change, got {other:?}"),
        }
    }

    #[actix_rt::test]
    async fn a_watcher_is_told_the_members_then_each_frame_and_a_nodes_death() {
        let mut s = state();
        let room: Arc<str> = "room".into();
        let (watcher, mut seen) = recorder();
        let (subscriber, mut events) = recorder();
        s.apply(&mut vec![Cmd::Subscribe(subscriber)], false);
        let round = s.apply(&mut vec![Cmd::Watch { group: room.clone(), watcher }], false);
        assert_eq!(round.subscribe, std::slice::from_ref(&room), "the node listens to the room");
        s.roster_read(&room, vec![member(2, 7, "bo"), member(1, 1, "me?")]);
        s.introduce_watchers(&room);
        assert_eq!(told(&mut seen).await, (member(2, 7, "bo"), PresenceChange::Present));
        assert!(matches!(events.recv().await, Some(ClusterEvent::NodeUp(NodeId(2)))), "known from presence");

        let mut answers = Round::new(&s.keys);
        let joined =
            Frame::Presence { dropped: 0, change: PresenceChange::Joined, seq: 1, meta: "cy".into() };
        s.on_message(&s.keys.group("room"), &joined.encode(NodeId(3)), &mut answers);
        assert_eq!(told(&mut seen).await, (member(3, 1, "cy"), PresenceChange::Joined));
        assert!(matches!(events.recv().await, Some(ClusterEvent::NodeUp(NodeId(3)))));
        // Its own frames come back to a node: ignored.
        s.on_message(&s.keys.group("room"), &joined.encode(ME), &mut answers);
        // Node 2 says goodbye: its member goes with it.
        s.on_message(&s.keys.nodes(), &Frame::Bye.encode(NodeId(2)), &mut answers);
        assert!(matches!(events.recv().await, Some(ClusterEvent::NodeDown(NodeId(2)))));
        assert_eq!(told(&mut seen).await, (member(2, 7, "bo"), PresenceChange::Disconnected));
        assert_eq!(s.rosters.members("room"), [member(3, 1, "cy")]);
        assert_eq!(answers.len, 0, "nothing to answer");
        // Junk and frames on the wrong channel change nothing.
        s.on_message(&s.keys.group("room"), b"junk", &mut answers);
        s.on_message(&s.keys.nodes(), &joined.encode(NodeId(4)), &mut answers);
        assert_eq!(s.rosters.members("room"), [member(3, 1, "cy")]);
    }

    #[actix_rt::test]
    async fn sends_are_answered_and_answers_reach_the_waiting_sender() {
        let mut s = state();
        let (reply, answer) = oneshot::channel();
        let to = GlobalId { node: NodeId(9), seq: 4 };
        let round =
            s.apply(&mut vec![Cmd::Send { to, msg: PreparedMessage::text("hi"), reply: Some(reply) }], false);
        let req = match round.sends[..] {
            [(_, NodeId(9), req)] => req,
            ref other => panic!("one send to node 9, got {other:?}"),
        };
        let mut answers = Round::new(&s.keys);
        let ack = Frame::Ack { req, outcome: Outcome::Full };
        s.on_message(&s.keys.node(ME), &ack.encode(NodeId(9)), &mut answers);
        assert_eq!(answer.await, Ok(Err(ClusterSendError::Full)));
        // A send for a connection this node does not have: answered if asked, not otherwise.
        let ask = Frame::Send { req: 5, seq: 42, text: true, payload: Bytes::from_static(b"x") };
        s.on_message(&s.keys.node(ME), &ask.encode(NodeId(9)), &mut answers);
        assert_eq!(answers.len, 1, "an Ack for node 9");
        let tell = Frame::Send { req: NO_ANSWER, seq: 42, text: true, payload: Bytes::from_static(b"x") };
        s.on_message(&s.keys.node(ME), &tell.encode(NodeId(9)), &mut answers);
        assert_eq!(answers.len, 1);
        // Redis goes: a waiting send fails at once.
        let (reply, answer) = oneshot::channel();
        s.apply(&mut vec![Cmd::Send { to, msg: PreparedMessage::text("hi"), reply: Some(reply) }], false);
        s.went_down();
        assert_eq!(answer.await, Ok(Err(ClusterSendError::BrokerDown)));
    }
}
