//! One round trip to Redis: the commands the node's decisions map to, in one pipeline,
//! and what must follow them (subscriptions, member lists, the stop).

use std::sync::Arc;

use bytes::Bytes;

use crate::cluster::ids::NodeId;
use crate::cluster::keys::Keys;
use crate::cluster::link::{JoinSince, MembersReply, Publish, Reply};
use crate::cluster::wire::Frame;

/// Where this node's presence lives, and for how long each write keeps it.
pub(super) struct Presence<'a> {
    pub(super) keys: &'a Keys,
    pub(super) me: NodeId,
    /// Milliseconds: the node timeout.
    pub(super) ttl: u64,
    /// Broadcasts this node has failed to publish so far, for the frames that tell it.
    pub(super) dropped: u64,
}

pub(super) struct Round {
    pipe: redis::Pipeline,
    /// `PUBLISH`, or under Redis Cluster `SPUBLISH`.
    publish: &'static str,
    /// Commands in the pipeline.
    pub(super) len: usize,
    /// The sends in the pipeline: their place, node and request number.
    pub(super) sends: Vec<(usize, NodeId, u64)>,
    /// Group channels to listen to, and to leave.
    pub(super) subscribe: Vec<Arc<str>>,
    pub(super) unsubscribe: Vec<Arc<str>>,
    pub(super) members: Vec<(Arc<str>, MembersReply)>,
    /// Broadcasts to groups with history, and joins with recovery: carried out after the
    /// pipeline, each with its own calls.
    pub(super) publishes: Vec<Publish>,
    pub(super) joins: Vec<JoinSince>,
    pub(super) stop: Option<Option<Reply<()>>>,
    /// PUBLISH commands in the pipeline, for the metrics.
    published: usize,
    /// The places of the group broadcasts in the pipeline: one that reaches no subscriber
    /// (not even its sender's node, which listens to its groups) is counted.
    broadcasts: Vec<usize>,
}

impl Round {
    pub(super) fn new(keys: &Keys) -> Self {
        Round {
            pipe: redis::Pipeline::new(),
            publish: keys.publish_command(),
            len: 0,
            sends: Vec::new(),
            subscribe: Vec::new(),
            unsubscribe: Vec::new(),
            members: Vec::new(),
            publishes: Vec::new(),
            joins: Vec::new(),
            stop: None,
            published: 0,
            broadcasts: Vec::new(),
        }
    }

    fn cmd(&mut self, name: &str) -> &mut redis::Pipeline {
        self.len += 1;
        self.pipe.cmd(name)
    }

    pub(super) fn publish(&mut self, channel: String, frame: Bytes) {
        self.cmd(self.publish).arg(channel).arg(&frame[..]);
        self.published += 1;
    }

    /// A broadcast to a group's channel.
    pub(super) fn broadcast(&mut self, channel: String, frame: Bytes) {
        self.broadcasts.push(self.len);
        self.publish(channel, frame);
    }

    /// `ROLE`: the place of its answer, which [`is_primary`] reads.
    pub(super) fn role(&mut self) -> usize {
        self.cmd("ROLE");
        self.len - 1
    }

    /// `CLUSTER SLOTS` (on the first shard): the place of its answer.
    pub(super) fn slots(&mut self) -> usize {
        self.cmd("CLUSTER").arg("SLOTS");
        self.len - 1
    }

    /// A message for another node's connection; its receiver count tells whether that
    /// node listens.
    pub(super) fn send(&mut self, channel: String, frame: Bytes, node: NodeId, req: u64) {
        self.sends.push((self.len, node, req));
        self.publish(channel, frame);
    }

    /// A member's metadata in this node's hash of `group`.
    pub(super) fn set_member(&mut self, p: &Presence<'_>, group: &str, seq: u64, meta: &str) {
        self.cmd("HSET").arg(p.keys.members(group, p.me)).arg(seq).arg(meta);
        self.refresh(p, group);
    }

    /// A member gone from this node's hash of `group`; with `last`, the node is no longer
    /// listed among the group's.
    pub(super) fn delete_member(&mut self, p: &Presence<'_>, group: &str, seq: u64, last: bool) {
        self.cmd("HDEL").arg(p.keys.members(group, p.me)).arg(seq);
        if last {
            self.cmd("SREM").arg(p.keys.group_nodes(group)).arg(p.me.to_string());
        }
    }

    /// This node's presence in `group` expires a node timeout from now; the place of the
    /// command whose answer says whether it was still there (0: it had expired).
    pub(super) fn refresh(&mut self, p: &Presence<'_>, group: &str) -> usize {
        let nodes = p.keys.group_nodes(group);
        let at = self.len;
        self.cmd("PEXPIRE").arg(p.keys.members(group, p.me)).arg(p.ttl);
        self.cmd("SADD").arg(&nodes).arg(p.me.to_string());
        self.cmd("PEXPIRE").arg(&nodes).arg(p.ttl);
        at
    }

    /// This node's members of `group`, written whole and told to the other nodes: after
    /// a lost link or an expiry, what they know of this node may be wrong.
    pub(super) fn announce(&mut self, p: &Presence<'_>, group: &str, members: Vec<(u64, Arc<str>)>) {
        self.rewrite(p, group, &members);
        let members = members.into_iter().map(|(seq, meta)| (seq, meta.to_string())).collect();
        self.publish(p.keys.group(group), Frame::Roster { dropped: p.dropped, members }.encode(p.me));
    }

    /// This node's members of `group`, written whole: Redis may have lost them, or kept
    /// some that left meanwhile.
    pub(super) fn rewrite(&mut self, p: &Presence<'_>, group: &str, members: &[(u64, Arc<str>)]) {
        self.cmd("DEL").arg(p.keys.members(group, p.me));
        if members.is_empty() {
            self.cmd("SREM").arg(p.keys.group_nodes(group)).arg(p.me.to_string());
            return;
        }
        let cmd = self.cmd("HSET").arg(p.keys.members(group, p.me));
        for (seq, meta) in members {
            cmd.arg(*seq).arg(&**meta);
        }
        self.refresh(p, group);
    }

    /// Makes the pipeline's calls; what each returned.
    pub(super) async fn run(
        &mut self,
        conn: &mut super::links::Conn,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        if self.len == 0 {
            return Ok(Vec::new());
        }
        let pipe = std::mem::take(&mut self.pipe);
        self.len = 0;
        let broadcasts = std::mem::take(&mut self.broadcasts);
        let sent = std::time::Instant::now();
        let answers: redis::RedisResult<Vec<redis::Value>> = pipe.query_async(conn).await;
        if let Ok(out) = &answers {
            crate::telemetry::redis_round_trip(sent.elapsed());
            crate::telemetry::cluster_published(std::mem::take(&mut self.published));
            let unheard =
                broadcasts.into_iter().filter(|at| matches!(out.get(*at), Some(redis::Value::Int(0))));
            crate::telemetry::cluster_unheard(unheard.count());
        }
        answers
    }
}

/// What a `ROLE` answer says: `Some(true)` from a primary, `Some(false)` from a replica or
/// a sentinel, `None` when it is not understood (a proxy that renames or hides `ROLE`).
pub(super) fn is_primary(answer: &redis::Value) -> Option<bool> {
    let redis::Value::Array(parts) = answer else { return None };
    match parts.first()? {
        redis::Value::BulkString(role) => Some(role == b"master"),
        redis::Value::SimpleString(role) => Some(role == "master"),
        _ => None,
    }
}
