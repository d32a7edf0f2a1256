//! The other nodes this node hears from: when each was last heard, and how many of its
//! broadcasts it has failed to publish (a rise is a gap here).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::cluster::ids::NodeId;

struct Peer {
    seen: Instant,
    /// What it had failed to publish, as of the latest frame that said so.
    dropped: u64,
}

/// What hearing from a node means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Heard {
    /// A node not known before (or again after it was taken for dead).
    Up,
    /// It failed to publish broadcasts since it was last heard: some may be missing here.
    Missed,
    /// Nothing new.
    Same,
}

#[derive(Default)]
pub(super) struct Peers {
    known: HashMap<NodeId, Peer>,
}

impl Peers {
    /// `from` said something; `dropped` is how many broadcasts it has failed to publish
    /// so far. Only a heartbeat makes a node known (or keeps it alive): other frames may
    /// be late echoes of a node already gone.
    pub(super) fn heard(&mut self, from: NodeId, dropped: u64, heartbeat: bool, now: Instant) -> Heard {
        match self.known.get_mut(&from) {
            Some(p) => {
                if heartbeat {
                    p.seen = now;
                }
                if dropped > p.dropped {
                    p.dropped = dropped;
                    return Heard::Missed;
                }
                Heard::Same
            }
            None if heartbeat => {
                self.known.insert(from, Peer { seen: now, dropped });
                Heard::Up
            }
            None => Heard::Same,
        }
    }

    /// `node` has members in presence (read from Redis, or told on a group's channel): it
    /// was alive within the node timeout, so it is up, and known from now on, so that its
    /// death takes those members away. `dropped` as `heard` takes it.
    pub(super) fn heard_of(&mut self, node: NodeId, dropped: u64, now: Instant) -> Heard {
        if self.known.contains_key(&node) {
            return self.heard(node, dropped, false, now);
        }
        self.heard(node, dropped, true, now)
    }

    /// `from` said goodbye; whether it was known.
    pub(super) fn bye(&mut self, from: NodeId) -> bool {
        self.known.remove(&from).is_some()
    }

    /// The nodes not heard from for `timeout`, taken for dead and forgotten.
    pub(super) fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<NodeId> {
        let dead: Vec<NodeId> =
            self.known.iter().filter(|(_, p)| now - p.seen > timeout).map(|(n, _)| *n).collect();
        for node in &dead {
            self.known.remove(node);
        }
        dead
    }

    /// This node could not hear anyone for a while (its link was down): the time since a
    /// node was last heard starts again.
    pub(super) fn restart_clock(&mut self, now: Instant) {
        self.known.values_mut().for_each(|p| p.seen = now);
    }

    /// The known nodes, in id order.
    pub(super) fn ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.known.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_makes_a_node_known_and_a_rise_in_its_drops_is_a_gap() {
        let t0 = Instant::now();
        let mut p = Peers::default();
        let (a, b) = (NodeId(1), NodeId(2));
        assert_eq!(p.heard(a, 0, false, t0), Heard::Same, "a broadcast alone makes no node known");
        assert_eq!(p.heard(a, 3, true, t0), Heard::Up);
        assert_eq!(p.heard(a, 3, true, t0), Heard::Same, "what it had dropped before is no gap here");
        assert_eq!(p.heard(a, 4, false, t0), Heard::Missed);
        assert_eq!(p.heard(a, 4, true, t0), Heard::Same);
        assert_eq!(p.heard(b, 0, true, t0), Heard::Up);
        assert_eq!(p.ids(), [a, b]);
        assert!(p.bye(b));
        assert!(!p.bye(b));
        assert_eq!(p.ids(), [a]);
    }

    #[test]
    fn a_node_known_from_presence_is_up_and_expires_like_any() {
        let t0 = Instant::now();
        let mut p = Peers::default();
        assert_eq!(p.heard_of(NodeId(5), 2, t0), Heard::Up);
        assert_eq!(p.heard_of(NodeId(5), 2, t0), Heard::Same);
        assert_eq!(p.heard_of(NodeId(5), 3, t0), Heard::Missed, "its frames tell its drops too");
        assert_eq!(p.heard_of(NodeId(6), 0, t0), Heard::Up);
        // Only heartbeats keep a node alive: presence alone does not.
        p.heard_of(NodeId(6), 0, t0 + Duration::from_secs(2));
        let mut dead = p.expire(t0 + Duration::from_secs(4), Duration::from_secs(3));
        dead.sort();
        assert_eq!(dead, [NodeId(5), NodeId(6)]);
    }

    #[test]
    fn nodes_unheard_for_the_timeout_expire_unless_the_clock_restarted() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(3);
        let mut p = Peers::default();
        p.heard(NodeId(1), 0, true, t0);
        p.heard(NodeId(2), 0, true, t0 + Duration::from_secs(2));
        // Broadcasts do not keep a node alive; heartbeats do.
        p.heard(NodeId(1), 0, false, t0 + Duration::from_secs(3));
        assert_eq!(p.expire(t0 + Duration::from_millis(3500), timeout), [NodeId(1)]);
        // Our own link was down for 10 s: nobody could be heard, nobody is dead for it.
        p.restart_clock(t0 + Duration::from_secs(12));
        assert!(p.expire(t0 + Duration::from_secs(13), timeout).is_empty());
        assert_eq!(p.expire(t0 + Duration::from_secs(16), timeout), [NodeId(2)]);
        assert!(p.ids().is_empty());
    }
}
