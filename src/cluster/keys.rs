//! The names of this cluster's channels and keys in Redis, all under one prefix.
//!
//! - `<p>:nodes`: heartbeats and goodbyes (every node subscribes).
//! - `<p>:n:<node>`: messages for one node's connections, and answers to it.
//! - `<p>:g:<group>`: a group's broadcasts and presence changes (only nodes with members
//!   or watchers subscribe).
//! - `<p>:m:<group>:<node>`: a hash of one node's members of a group (seq to metadata),
//!   expiring unless the node's heartbeats refresh it.
//! - `<p>:gn:<group>`: the set of nodes that may have members of a group, expiring alike.
//! - `<p>:h:<group>`: a group's history, a stream whose entry ids are the offsets
//!   (`<offset>-0`), each entry the broadcast's frame and the time it was stored.
//! - `<p>:hm:<group>`: the history's epoch, last offset and stored bytes (a hash).

use super::ids::NodeId;

#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.to_owned() }
    }

    pub(crate) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    pub(crate) fn node(&self, node: NodeId) -> String {
        format!("{}:n:{node}", self.prefix)
    }

    pub(crate) fn group(&self, group: &str) -> String {
        format!("{}:g:{group}", self.prefix)
    }

    /// The group whose channel this is, if it is one.
    pub(crate) fn group_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(&self.prefix)?.strip_prefix(":g:")
    }

    pub(crate) fn members(&self, group: &str, node: NodeId) -> String {
        format!("{}:m:{group}:{node}", self.prefix)
    }

    pub(crate) fn group_nodes(&self, group: &str) -> String {
        format!("{}:gn:{group}", self.prefix)
    }

    pub(crate) fn history(&self, group: &str) -> String {
        format!("{}:h:{group}", self.prefix)
    }

    pub(crate) fn history_meta(&self, group: &str) -> String {
        format!("{}:hm:{group}", self.prefix)
    }
}
