//! The names of this cluster's channels and keys in Redis, all under one prefix.
//!
//! - `<p>:nodes`: goodbyes, and heartbeats (under Redis Cluster most go to the probe
//!   channels instead); every node subscribes.
//! - `<p>:n:<node>`: messages for one node's connections, and answers to it.
//! - `<p>:g:{<group>}`: a group's broadcasts and presence changes (only nodes with members
//!   or watchers subscribe).
//! - `<p>:m:{<group>}:<node>`: a hash of one node's members of a group (seq to metadata),
//!   expiring unless the node's heartbeats refresh it.
//! - `<p>:gn:{<group>}`: the set of nodes that may have members of a group, expiring alike.
//! - `<p>:h:{<group>}`: a group's history, a stream whose entry ids are the offsets
//!   (`<offset>-0`), each entry the broadcast's frame and the time it was stored.
//! - `<p>:hm:{<group>}`: the history's epoch, last offset and stored bytes (a hash).
//! - `<p>:probe:<n>`: under Redis Cluster, a channel on each shard that every node listens
//!   to. Each heartbeat goes to the one of the shard quiet longest, so the heartbeats prove
//!   the shards; a shard quiet all the same gets a bare probe, and one node's probe proves
//!   it for all of them, so probes grow with the shards, not with shards times nodes.
//!
//! `{<group>}` is the group's hash tag: under Redis Cluster all of a group's keys and its
//! channel hash to one slot, so its history script runs on one shard and a broadcast
//! touches no other. A group whose name holds a `}` (which would end the tag early) or is
//! empty is tagged by a hash of its name instead: `{#<hex>}:<group>`.

use super::ids::NodeId;

#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
    /// Under Redis Cluster: channels are shard channels (`SPUBLISH`, `SSUBSCRIBE`).
    sharded: bool,
}

impl Keys {
    pub(crate) fn new(prefix: &str, sharded: bool) -> Self {
        Keys { prefix: prefix.to_owned(), sharded }
    }

    /// Whether these are Redis Cluster's keys: channels are shard channels.
    pub(crate) fn sharded(&self) -> bool {
        self.sharded
    }

    /// The command that publishes on these channels: a `PUBLISH` in Redis Cluster would
    /// travel the cluster bus to every node.
    pub(crate) fn publish_command(&self) -> &'static str {
        if self.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    pub(crate) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    pub(crate) fn node(&self, node: NodeId) -> String {
        format!("{}:n:{node}", self.prefix)
    }

    /// The base name of the probe channels (one per shard: `slots::SlotMap::probe_channels`).
    pub(crate) fn probes(&self) -> String {
        format!("{}:probe", self.prefix)
    }

    /// Whether `channel` is one of the probe channels, which carry heartbeats too.
    pub(crate) fn is_probe(&self, channel: &str) -> bool {
        channel
            .strip_prefix(&self.prefix)
            .and_then(|c| c.strip_prefix(":probe:"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }

    pub(crate) fn group(&self, group: &str) -> String {
        format!("{}:g:{}", self.prefix, Tagged(group))
    }

    /// The group whose channel this is, if it is one.
    pub(crate) fn group_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        let tagged = channel.strip_prefix(&self.prefix)?.strip_prefix(":g:{")?;
        let (tag, rest) = tagged.split_once('}')?;
        match rest.strip_prefix(':') {
            Some(group) if tag.starts_with('#') => Some(group),
            _ if rest.is_empty() => Some(tag),
            _ => None,
        }
    }

    pub(crate) fn members(&self, group: &str, node: NodeId) -> String {
        format!("{}:m:{}:{node}", self.prefix, Tagged(group))
    }

    pub(crate) fn group_nodes(&self, group: &str) -> String {
        format!("{}:gn:{}", self.prefix, Tagged(group))
    }

    pub(crate) fn history(&self, group: &str) -> String {
        format!("{}:h:{}", self.prefix, Tagged(group))
    }

    pub(crate) fn history_meta(&self, group: &str) -> String {
        format!("{}:hm:{}", self.prefix, Tagged(group))
    }
}

/// A group name with its hash tag around it.
struct Tagged<'a>(&'a str);

impl std::fmt::Display for Tagged<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = self.0;
        if group.is_empty() || group.contains('}') {
            // FNV-1a: stable across builds and platforms, unlike std's hasher.
            let hash = group
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
            write!(f, "{{#{hash:016x}}}:{group}")
        } else {
            write!(f, "{{{group}}}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::slots::slot;

    #[test]
    fn every_key_of_a_group_shares_its_slot_and_its_channel_names_it_back() {
        let keys = Keys::new("amw", true);
        let node = NodeId(7);
        for group in ["chat", "", "a}b", "}", "{x}", "room:1", "{", "#abc", "é 🎉"] {
            let channel = keys.group(group);
            assert_eq!(keys.group_of(&channel), Some(group), "{channel}");
            let s = slot(channel.as_bytes());
            for key in [
                keys.members(group, node),
                keys.group_nodes(group),
                keys.history(group),
                keys.history_meta(group),
            ] {
                assert_eq!(slot(key.as_bytes()), s, "{key} and {channel}");
            }
        }
        assert_eq!(keys.group("chat"), "amw:g:{chat}");
        assert_eq!(keys.group_of("amw:nodes"), None);
        assert_eq!(keys.group_of("amw:g:{chat}x"), None);
        assert_eq!(keys.group_of("amw:g:chat"), None);
        assert_eq!(keys.group_of("other:g:{chat}"), None);
    }

    #[test]
    fn probe_channels_are_told_from_the_others() {
        let keys = Keys::new("amw", true);
        assert!(keys.is_probe("amw:probe:0"));
        assert!(keys.is_probe("amw:probe:41207"));
        for other in
            ["amw:probe:", "amw:probe", "amw:probe:1x", "other:probe:1", "amw:nodes", "amw:g:{probe:1}"]
        {
            assert!(!keys.is_probe(other), "{other}");
        }
    }

    #[test]
    fn groups_spread_over_slots() {
        let keys = Keys::new("amw", true);
        let slots: std::collections::HashSet<u16> =
            (0..300).map(|i| slot(keys.group(&format!("room-{i}")).as_bytes())).collect();
        assert!(slots.len() > 290, "{} distinct slots of 300 groups", slots.len());
    }
}
