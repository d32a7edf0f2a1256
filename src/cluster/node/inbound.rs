//! What arrives on the subscriptions: broadcasts for local members, presence for
//! watchers, sends for local connections and their answers, heartbeats and goodbyes.

use std::time::Instant;

use bytes::Bytes;

use futures_util::{FutureExt, StreamExt};

use super::{tell_watchers, Node, Peer, Redis, Round};
use crate::cluster::error::ClusterSendError;
use crate::cluster::events::{ClusterEvent, ClusterMember, GapCause};
use crate::cluster::ids::{GlobalId, NodeId};
use crate::cluster::wire::{Frame, Outcome};
use crate::{PreparedMessage, TrySendError};

/// Messages read from the subscription before their answers leave in one round trip.
const READ_AHEAD: usize = 256;

/// Which of our channels a message came on.
enum Channel<'a> {
    Group(&'a str),
    Mine,
    Nodes,
    Other,
}

impl Node {
    /// Takes `first` and whatever else has arrived already (up to `READ_AHEAD`), then
    /// sends the answers they call for together.
    pub(super) async fn inbound(&mut self, r: &mut Redis, first: redis::Msg) -> redis::RedisResult<()> {
        let mut answers = Round::default();
        self.on_message(&first, &mut answers);
        for _ in 1..READ_AHEAD {
            // A closed stream stays closed: the task's next poll of it says so.
            let Some(Some(msg)) = r.stream.next().now_or_never() else { break };
            self.on_message(&msg, &mut answers);
        }
        if answers.len > 0 {
            answers.pipe.query_async::<redis::Value>(&mut r.conn).await?;
        }
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
                self.groups.deliver_here(group, &prepared(text, payload));
                self.heard(from, dropped, false);
            }
            (Frame::Presence { change, seq, meta }, Channel::Group(group)) => {
                if let Some(interest) = self.interest.get_mut(group) {
                    let member = ClusterMember { id: GlobalId { node: from, seq }, meta: meta.into() };
                    tell_watchers(&mut interest.watchers, &group.into(), &member, change);
                }
            }
            (Frame::Send { req, seq, text, payload }, Channel::Mine) => {
                let outcome = self.deliver(seq, prepared(text, payload), req != 0);
                if req != 0 {
                    answers.publish(self.keys.node(from), Frame::Ack { req, outcome }.encode(self.me()));
                }
            }
            (Frame::Ack { req, outcome }, Channel::Mine) => {
                if let Some((_, reply)) = self.pending.remove(&req) {
                    let _ = reply.send(match outcome {
                        Outcome::Accepted => Ok(()),
                        Outcome::NoConnection => Err(ClusterSendError::NoSuchConnection),
                        Outcome::Full => Err(ClusterSendError::Full),
                        Outcome::Closed => Err(ClusterSendError::Closed),
                    });
                }
            }
            (Frame::Heartbeat { dropped }, Channel::Nodes) => self.heard(from, dropped, true),
            (Frame::Bye, Channel::Nodes) => {
                if self.peers.remove(&from).is_some() {
                    self.publish_peers();
                    tracing::info!(node = %from, "cluster: node left");
                    self.tell(ClusterEvent::NodeDown(from));
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

    /// `from` is alive (a heartbeat) or at least talking; a rise in what it failed to
    /// publish is a gap here.
    fn heard(&mut self, from: NodeId, dropped: u64, heartbeat: bool) {
        let now = Instant::now();
        match self.peers.get_mut(&from) {
            Some(p) => {
                if heartbeat {
                    p.seen = now;
                }
                if dropped > p.dropped {
                    p.dropped = dropped;
                    tracing::warn!(node = %from, dropped, "cluster: a node could not publish some broadcasts");
                    self.tell(ClusterEvent::Gap(GapCause::Missed(from)));
                }
            }
            None if heartbeat => {
                self.peers.insert(from, Peer { seen: now, dropped });
                self.publish_peers();
                tracing::info!(node = %from, "cluster: node up");
                self.tell(ClusterEvent::NodeUp(from));
            }
            None => {}
        }
    }

    /// Hands a message from another node to one of this node's connections.
    fn deliver(&self, seq: u64, msg: PreparedMessage, answer: bool) -> Outcome {
        let Some(id) = self.link.local(seq) else { return Outcome::NoConnection };
        if !answer {
            id.send_prepared(&msg);
            return Outcome::Accepted;
        }
        match id.try_send(msg.to_outgoing()) {
            Ok(()) => Outcome::Accepted,
            Err(TrySendError::Full(_)) => Outcome::Full,
            Err(_) => Outcome::Closed,
        }
    }
}

/// Text payloads were checked to be UTF-8 when the frame was read.
fn prepared(text: bool, payload: Bytes) -> PreparedMessage {
    PreparedMessage::checked(text, payload)
}
