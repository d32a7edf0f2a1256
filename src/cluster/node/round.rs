//! One round trip to Redis: the commands the node's decisions map to, in one pipeline,
//! and what must follow them (subscriptions, member lists, the stop).

use std::sync::Arc;

use bytes::Bytes;

use crate::cluster::ids::NodeId;
use crate::cluster::keys::Keys;
use crate::cluster::link::{JoinSince, MembersReply, Publish, Reply};
use crate::cluster::wire::Frame;

/// Heartbeats between two writes of this node's entry in a group's index of nodes. The
/// index only says where to look: a reader skips, and drops, a node whose hash has
/// expired. So the entry is written with the node's first member of the group and then
/// every `INDEX_EVERY`th heartbeat, and lives `INDEX_EVERY` node timeouts (at least twice
/// as many heartbeats); the hash, which says who is there, keeps the node timeout. A
/// heartbeat refreshes a group's presence with one command instead of three.
pub(super) const INDEX_EVERY: u32 = 10;

/// Whether heartbeat `beat` writes this node's entry in `group`'s index: every
/// `INDEX_EVERY`th, at a turn that differs between groups, so the writes spread out.
pub(super) fn index_due(beat: u32, group: &str) -> bool {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    group.hash(&mut h);
    (h.finish() as u32).wrapping_add(beat).is_multiple_of(INDEX_EVERY)
}

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
        self.refresh(p, group, true);
    }

    /// A member gone from this node's hash of `group`; with `last`, the node is no longer
    /// listed among the group's.
    pub(super) fn delete_member(&mut self, p: &Presence<'_>, group: &str, seq: u64, last: bool) {
        self.cmd("HDEL").arg(p.keys.members(group, p.me)).arg(seq);
        if last {
            self.cmd("SREM").arg(p.keys.group_nodes(group)).arg(p.me.to_string());
        }
    }

    /// This node's presence in `group` expires a node timeout from now, and with `index`
    /// its entry in the group's index of nodes is written again; the place of the command
    /// whose answer says whether the presence was still there (0: it had expired).
    pub(super) fn refresh(&mut self, p: &Presence<'_>, group: &str, index: bool) -> usize {
        let at = self.len;
        self.cmd("PEXPIRE").arg(p.keys.members(group, p.me)).arg(p.ttl);
        if index {
            let nodes = p.keys.group_nodes(group);
            self.cmd("SADD").arg(&nodes).arg(p.me.to_string());
            self.cmd("PEXPIRE").arg(&nodes).arg(p.ttl * u64::from(INDEX_EVERY));
        }
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
        self.refresh(p, group, true);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_refreshes_presence_with_one_command_and_the_index_every_tenth() {
        let keys = Keys::new("amw", false);
        let p = Presence { keys: &keys, me: NodeId(7), ttl: 3000, dropped: 0 };
        let mut round = Round::new(&keys);
        assert_eq!(round.refresh(&p, "lobby", false), 0);
        assert_eq!(round.len, 1);
        assert_eq!(round.refresh(&p, "lobby", true), 1, "the place of the hash's PEXPIRE");
        assert_eq!(round.len, 4, "with the index: SADD and its PEXPIRE besides");
        // A member written puts the node in the index at once.
        round.set_member(&p, "lobby", 1, "ada");
        assert_eq!(round.len, 8);
    }

    #[test]
    fn each_group_writes_its_index_once_in_every_ten_heartbeats_at_turns_that_differ() {
        let groups: Vec<String> = (0..1000).map(|i| format!("room:{i}")).collect();
        let mut per_beat = [0usize; INDEX_EVERY as usize];
        for g in &groups {
            let due: Vec<u32> = (0..INDEX_EVERY).filter(|&beat| index_due(beat, g)).collect();
            assert_eq!(due.len(), 1, "{g}: {due:?}");
            per_beat[due[0] as usize] += 1;
            // The same turn in the next ten.
            assert!(index_due(due[0] + INDEX_EVERY, g));
        }
        // Spread over the beats, not all on one: each gets 100 give or take.
        assert!(per_beat.iter().all(|&n| (50..150).contains(&n)), "{per_beat:?}");
    }
}
