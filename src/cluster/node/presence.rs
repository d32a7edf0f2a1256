//! This node's presence in Redis: written on each change, refreshed by heartbeats,
//! re-made after a reconnect, and read back for the whole cluster.

use std::collections::HashMap;
use std::sync::Arc;

use super::{parse_or_log, tell_watchers, Node, Redis, Round};
use crate::cluster::error::ClusterError;
use crate::cluster::events::ClusterMember;
use crate::cluster::ids::{GlobalId, NodeId};
use crate::cluster::wire::Frame;
use crate::groups::PresenceChange;

impl Node {
    pub(super) fn changed(
        &mut self,
        round: &mut Round,
        group: Arc<str>,
        seq: u64,
        meta: Arc<str>,
        change: PresenceChange,
    ) {
        let me = self.me();
        let interest = self.interest.entry(group.clone()).or_default();
        let first = interest.members.is_empty() && interest.watchers.is_empty();
        let meta = match change {
            PresenceChange::Joined | PresenceChange::Updated => {
                interest.members.insert(seq, meta.clone());
                meta
            }
            _ => interest.members.remove(&seq).unwrap_or(meta),
        };
        let member = ClusterMember { id: GlobalId { node: me, seq }, meta: meta.clone() };
        tell_watchers(&mut interest.watchers, &group, &member, change);
        let gone = interest.members.is_empty() && interest.watchers.is_empty();
        let (members, node) = (self.keys.members(&group, self.me()), self.me().to_string());
        match change {
            PresenceChange::Joined | PresenceChange::Updated => {
                if first {
                    round.subscribe.push(group.clone());
                }
                self.registered.insert(group.clone());
                round.cmd("HSET").arg(&members).arg(seq).arg(&*meta);
                self.refresh(round, &group);
            }
            _ => {
                round.cmd("HDEL").arg(&members).arg(seq);
                if gone {
                    self.interest.remove(&group);
                    round.unsubscribe.push(group.clone());
                }
                if self.interest.get(&group).is_none_or(|i| i.members.is_empty()) {
                    self.registered.remove(&group);
                    round.cmd("SREM").arg(self.keys.group_nodes(&group)).arg(&node);
                }
            }
        }
        let frame = Frame::Presence { change, seq, meta: meta.to_string() };
        round.publish(self.keys.group(&group), frame.encode(self.me()));
    }

    /// Sets the expiry of this node's presence in `group` from now.
    pub(super) fn refresh(&self, round: &mut Round, group: &str) {
        let ttl = self.opts.node_timeout.as_millis() as u64;
        let members = self.keys.members(group, self.me());
        let nodes = self.keys.group_nodes(group);
        round.cmd("PEXPIRE").arg(&members).arg(ttl);
        round.cmd("SADD").arg(&nodes).arg(self.me().to_string());
        round.cmd("PEXPIRE").arg(&nodes).arg(ttl);
    }

    /// This node's members of `group`, written whole (after a reconnect, Redis may have
    /// lost them, or kept some that left meanwhile).
    pub(super) fn write_presence(&mut self, round: &mut Round, group: &Arc<str>, replace: bool) {
        let members = self.keys.members(group, self.me());
        if replace {
            round.cmd("DEL").arg(&members);
        }
        match self.interest.get(group).filter(|i| !i.members.is_empty()) {
            Some(i) => {
                let cmd = round.cmd("HSET").arg(&members);
                for (seq, meta) in &i.members {
                    cmd.arg(*seq).arg(&**meta);
                }
                self.refresh(round, group);
            }
            None => {
                self.registered.remove(group);
                round.cmd("SREM").arg(self.keys.group_nodes(group)).arg(self.me().to_string());
            }
        }
    }

    /// Every member of `group` on every node, by node then number.
    pub(super) async fn members(
        &mut self,
        r: &mut Redis,
        group: &str,
    ) -> Result<Vec<ClusterMember>, ClusterError> {
        let redis_err = |e: redis::RedisError| ClusterError::Redis(e.to_string());
        let nodes: Vec<Vec<u8>> = redis::cmd("SMEMBERS")
            .arg(self.keys.group_nodes(group))
            .query_async(&mut r.conn)
            .await
            .map_err(redis_err)?;
        let mut nodes: Vec<NodeId> = nodes.iter().filter_map(|n| parse_or_log(n, "node id")).collect();
        nodes.sort_unstable();
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for node in &nodes {
            pipe.cmd("HGETALL").arg(self.keys.members(group, *node));
        }
        let hashes: Vec<HashMap<Vec<u8>, Vec<u8>>> =
            pipe.query_async(&mut r.conn).await.map_err(redis_err)?;
        let mut out = Vec::new();
        let mut expired = Vec::new();
        for (node, hash) in nodes.into_iter().zip(hashes) {
            if hash.is_empty() {
                expired.push(node.to_string());
                continue;
            }
            let mut here: Vec<ClusterMember> = hash
                .into_iter()
                .filter_map(|(seq, meta)| {
                    let seq = parse_or_log::<u64>(&seq, "member number")?;
                    let meta = String::from_utf8(meta).ok().or_else(|| {
                        tracing::warn!(group, "cluster: presence metadata not UTF-8; skipped");
                        None
                    })?;
                    Some(ClusterMember { id: GlobalId { node, seq }, meta: meta.into() })
                })
                .collect();
            here.sort_unstable_by_key(|m| m.id.seq);
            out.extend(here);
        }
        if !expired.is_empty() {
            // Nodes whose entries expired (they died): tidied by whoever reads first.
            redis::cmd("SREM")
                .arg(self.keys.group_nodes(group))
                .arg(expired)
                .exec_async(&mut r.conn)
                .await
                .map_err(redis_err)?;
        }
        Ok(out)
    }
}
