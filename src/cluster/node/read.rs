//! Reading every node's presence in a group back from Redis, checked like bus input.

use std::collections::HashMap;

use super::links::Conn;

use crate::cluster::events::ClusterMember;
use crate::cluster::ids::{GlobalId, NodeId};
use crate::cluster::keys::Keys;

/// Every member of `group` on every node, by node then number. Nodes listed without a
/// hash (theirs expired: they died) are taken off the list by whoever reads first.
pub(super) async fn members(
    conn: &mut Conn,
    keys: &Keys,
    group: &str,
) -> redis::RedisResult<Vec<ClusterMember>> {
    let nodes: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(keys.group_nodes(group)).query_async(conn).await?;
    let mut nodes: Vec<NodeId> = nodes.iter().filter_map(|n| parse_or_log(n, "node id")).collect();
    nodes.sort_unstable();
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for node in &nodes {
        pipe.cmd("HGETALL").arg(keys.members(group, *node));
    }
    let hashes: Vec<HashMap<Vec<u8>, Vec<u8>>> = pipe.query_async(conn).await?;
    let mut out = Vec::new();
    let mut expired = Vec::new();
    for (node, hash) in nodes.into_iter().zip(hashes) {
        if hash.is_empty() {
            expired.push(node);
            continue;
        }
        let mut here: Vec<ClusterMember> =
            hash.into_iter().filter_map(|(seq, meta)| member(group, node, &seq, meta)).collect();
        here.sort_unstable_by_key(|m| m.id.seq);
        out.extend(here);
    }
    if !expired.is_empty() {
        // Only while the hash is still gone: its node may have written it again since.
        let mut prune = redis::cmd("EVAL");
        prune.arg(PRUNE).arg(1 + expired.len()).arg(keys.group_nodes(group));
        for node in &expired {
            prune.arg(keys.members(group, *node));
        }
        let nodes: Vec<String> = expired.iter().map(NodeId::to_string).collect();
        let _: i64 = prune.arg(nodes).query_async(conn).await?;
    }
    Ok(out)
}

/// Drops from a group's index of nodes (`KEYS[1]`) each node (`ARGV[i]`) whose hash
/// (`KEYS[i + 1]`) is gone, in one step with the check. Every key carries the group's hash
/// tag: one slot.
const PRUNE: &str = r"
local gone = 0
for i, node in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    gone = gone + redis.call('SREM', KEYS[1], node)
  end
end
return gone
";

fn member(group: &str, node: NodeId, seq: &[u8], meta: Vec<u8>) -> Option<ClusterMember> {
    let seq = parse_or_log::<u64>(seq, "member number")?;
    let Ok(meta) = String::from_utf8(meta) else {
        tracing::warn!(group, "cluster: presence metadata not UTF-8; skipped");
        return None;
    };
    Some(ClusterMember { id: GlobalId { node, seq }, meta: meta.into() })
}

fn parse_or_log<T: std::str::FromStr>(bytes: &[u8], what: &str) -> Option<T> {
    let parsed = std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok());
    if parsed.is_none() {
        tracing::warn!(what, "cluster: ignored an entry in redis that is not ours");
    }
    parsed
}
