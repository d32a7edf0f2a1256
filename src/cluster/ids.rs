//! Names that mean the same on every node: a node's id, and a connection's global id.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;

/// One node of a cluster: random for each [`Cluster`](super::Cluster), so a restarted
/// server is a new node and ids from before it never reach its connections by accident.
/// Printed as 16 hex digits (see [`GlobalId`]'s example).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) u64);

impl NodeId {
    pub(crate) fn random() -> Self {
        // Zero is kept out so that a zeroed field never names a node.
        NodeId(rand::random::<u64>().max(1))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl FromStr for NodeId {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || ParseError::new("node id", "16 hex digits, not all zero", s);
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        match u64::from_str_radix(s, 16) {
            Ok(n) if n != 0 => Ok(NodeId(n)),
            _ => Err(bad()),
        }
    }
}

/// A connection's address across the cluster: its node and its
/// [`seq`](crate::ConnectionId::seq) there. Printed as `<node>-<seq>`
/// (`3f9a2b1c7d4e5f60-42`) and parsed back, so it can be kept in a database or handed to
/// a browser. Get one with [`Cluster::global_id`](super::Cluster::global_id); send to it
/// with [`Cluster::send`](super::Cluster::send) from any node.
///
/// ```
/// use actix_meta_websocket::cluster::{GlobalId, NodeId};
///
/// let id: GlobalId = "3f9a2b1c7d4e5f60-42".parse().unwrap();
/// assert_eq!(id.seq(), 42);
/// assert_eq!(id.node(), "3f9a2b1c7d4e5f60".parse::<NodeId>().unwrap());
/// assert_eq!(id.to_string(), "3f9a2b1c7d4e5f60-42");
/// assert!("3f9a2b1c7d4e5f60".parse::<GlobalId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GlobalId {
    pub(crate) node: NodeId,
    pub(crate) seq: u64,
}

impl GlobalId {
    /// The node that holds the connection.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The connection's number on its node.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl fmt::Display for GlobalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.node, self.seq)
    }
}

impl fmt::Debug for GlobalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GlobalId({self})")
    }
}

impl FromStr for GlobalId {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || ParseError::new("connection id", "<16 hex digits>-<number>", s);
        let (node, seq) = s.split_once('-').ok_or_else(bad)?;
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let seq = seq.parse().map_err(|_| bad())?;
        Ok(GlobalId { node: node.parse().map_err(|_| bad())?, seq })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_back_and_garbage_is_refused() {
        for _ in 0..100 {
            let id = GlobalId { node: NodeId::random(), seq: rand::random() };
            assert_eq!(id.to_string().parse::<GlobalId>(), Ok(id));
            assert_eq!(id.node.to_string().parse::<NodeId>(), Ok(id.node));
        }
        for bad in [
            "",
            "-",
            "0000000000000000-1",
            "3f9a2b1c7d4e5f6-1",
            "3f9a2b1c7d4e5f600-1",
            "3f9a2b1c7d4e5f6g-1",
            "+f9a2b1c7d4e5f60-1",
            "3f9a2b1c7d4e5f60-",
            "3f9a2b1c7d4e5f60-+1",
            "3f9a2b1c7d4e5f60-1-2",
            "3f9a2b1c7d4e5f60-99999999999999999999",
        ] {
            assert!(bad.parse::<GlobalId>().is_err(), "{bad}");
        }
    }
}
