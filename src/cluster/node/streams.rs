//! What this node knows of each group's history in Redis, without I/O: up to where it has
//! delivered each group's stored broadcasts, the ones that came out of turn (and wait for
//! the gap before them to be read), and where a group stands for its next publish.
//!
//! A stored broadcast is delivered here only in its place: the next offset after the last
//! one delivered. An older one is a duplicate (the node caught up through a read and the
//! subscription brings it again); a newer one means the node missed some, and the group
//! waits for a catch-up read of the gap. A catch-up that finds the gap no longer in
//! history (another epoch, trimmed, rolled back) reports it lost.

use std::collections::HashMap;
use std::sync::Arc;

use crate::groups::Unrecoverable;
use crate::prepared::PreparedMessage;

/// A stored broadcast, as the subscription or a read brings it.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    pub(super) epoch: u64,
    pub(super) offset: u64,
    /// The member of this node it is not for (its sender).
    pub(super) except: Option<u64>,
    pub(super) msg: PreparedMessage,
    /// When Redis stored it (ms), for entries read back; 0 when it came live.
    pub(super) at_ms: u64,
}

impl Stored {
    pub(super) fn position(&self) -> crate::groups::Position {
        crate::groups::Position { epoch: self.epoch, offset: self.offset }
    }
}

/// Where a group's delivery on this node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Track {
    pub(super) epoch: u64,
    /// The offset of the last broadcast delivered here.
    pub(super) delivered: u64,
}

/// What a catch-up read came to.
#[derive(Debug, Default)]
pub(super) struct CaughtUp {
    /// To deliver here, in order.
    pub(super) deliver: Vec<Stored>,
    /// The members here missed broadcasts history no longer holds.
    pub(super) lost: Option<Unrecoverable>,
    /// History in Redis went back behind what was delivered here (it lost its last
    /// writes): its epoch must be renewed, or later broadcasts would reuse those offsets.
    pub(super) rolled_back: Option<Track>,
}

#[derive(Default)]
pub(super) struct Streams {
    tracks: HashMap<Arc<str>, Track>,
    /// Groups waiting for a catch-up read, with what arrived meanwhile.
    behind: HashMap<Arc<str>, Vec<Stored>>,
    /// The newest (epoch, offset) seen of each group, for the next publish.
    known: HashMap<Arc<str>, (u64, u64)>,
}

impl Streams {
    /// A stored broadcast came on `group`'s channel: itself, if it is the next to deliver.
    pub(super) fn arrived(&mut self, group: &Arc<str>, s: Stored) -> Option<Stored> {
        self.learned(group, s.epoch, s.offset);
        if let Some(waiting) = self.behind.get_mut(group) {
            waiting.push(s);
            return None;
        }
        match self.tracks.get_mut(group) {
            // The first heard here: delivery starts with it.
            None => {
                self.tracks.insert(group.clone(), Track { epoch: s.epoch, delivered: s.offset });
                Some(s)
            }
            Some(t) if t.epoch == s.epoch && s.offset <= t.delivered => None,
            Some(t) if t.epoch == s.epoch && s.offset == t.delivered + 1 => {
                t.delivered = s.offset;
                Some(s)
            }
            // A gap, or another epoch: a read says which.
            Some(_) => {
                self.behind.insert(group.clone(), vec![s]);
                None
            }
        }
    }

    /// Where `group`'s delivery stands here, if it is tracked.
    pub(super) fn track(&self, group: &str) -> Option<Track> {
        self.tracks.get(group).copied()
    }

    /// Delivery of `group` stands at `track` (read from Redis, nothing delivered yet).
    pub(super) fn start(&mut self, group: &Arc<str>, track: Track) {
        self.tracks.insert(group.clone(), track);
        self.learned(group, track.epoch, track.delivered);
    }

    /// The groups waiting for a catch-up read.
    pub(super) fn behind(&self) -> Vec<Arc<str>> {
        self.behind.keys().cloned().collect()
    }

    /// After a lost link every tracked group may have missed broadcasts: each catches up.
    pub(super) fn all_behind(&mut self) {
        for group in self.tracks.keys() {
            self.behind.entry(group.clone()).or_default();
        }
    }

    /// `group` needs a catch-up read (a join wants it up to date).
    pub(super) fn mark_behind(&mut self, group: &Arc<str>) {
        if self.tracks.contains_key(group) {
            self.behind.entry(group.clone()).or_default();
        }
    }

    /// The node no longer listens to `group`: delivery starts afresh if it does again.
    pub(super) fn forget(&mut self, group: &str) {
        self.tracks.remove(group);
        self.behind.remove(group);
        self.known.remove(group);
    }

    /// Where `group` stood when last seen, for the next publish: (epoch, offset); (0, 0)
    /// when not known.
    pub(super) fn known(&self, group: &str) -> (u64, u64) {
        self.known.get(group).copied().unwrap_or((0, 0))
    }

    /// `group`'s history was seen at (`epoch`, `offset`).
    pub(super) fn learned(&mut self, group: &Arc<str>, epoch: u64, offset: u64) {
        let k = self.known.entry(group.clone()).or_insert((epoch, offset));
        if k.0 != epoch || k.1 < offset {
            *k = (epoch, offset);
        }
    }

    /// `group`'s history stands at (`epoch`, `offset`), as Redis just said: taken as it is,
    /// even behind what was seen before.
    pub(super) fn stands_at(&mut self, group: &Arc<str>, epoch: u64, offset: u64) {
        self.known.insert(group.clone(), (epoch, offset));
    }

    /// The catch-up read of `group`: its history's `meta` (epoch, last offset) and its
    /// `entries` after the last delivered here, in order. Then what waited meanwhile.
    pub(super) fn caught_up(
        &mut self,
        group: &Arc<str>,
        meta: Option<(u64, u64)>,
        entries: Vec<Stored>,
    ) -> CaughtUp {
        let waiting = self.behind.remove(group).unwrap_or_default();
        let mut out = CaughtUp::default();
        match (self.tracks.get(group).copied(), meta) {
            (Some(_), None) => {
                out.lost = Some(Unrecoverable::OtherEpoch);
                self.tracks.remove(group);
                self.known.remove(group);
            }
            (Some(t), Some((epoch, last))) if t.epoch == epoch && last < t.delivered => {
                out.lost = Some(Unrecoverable::OtherEpoch);
                out.rolled_back = Some(t);
                self.tracks.remove(group);
                self.known.remove(group);
                return out;
            }
            (Some(t), Some((epoch, last))) if t.epoch == epoch => {
                let mut next = t.delivered + 1;
                for s in entries.into_iter().filter(|s| s.epoch == epoch) {
                    if s.offset < next {
                        continue;
                    }
                    if s.offset > next {
                        out.lost = Some(Unrecoverable::TooOld);
                        break;
                    }
                    next += 1;
                    out.deliver.push(s);
                }
                if next <= last && out.lost.is_none() {
                    // The read stopped short of where history stood: gone meanwhile.
                    out.lost = Some(Unrecoverable::TooOld);
                }
                let delivered = if out.lost.is_some() { last } else { next - 1 };
                self.start(group, Track { epoch, delivered });
            }
            (_, Some((epoch, last))) => {
                if self.tracks.contains_key(group) {
                    out.lost = Some(Unrecoverable::OtherEpoch);
                }
                self.start(group, Track { epoch, delivered: last });
            }
            (None, None) => {}
        }
        for s in waiting {
            if let Some(s) = self.arrived(group, s) {
                out.deliver.push(s);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(epoch: u64, offset: u64) -> Stored {
        Stored { epoch, offset, except: None, msg: PreparedMessage::text(offset.to_string()), at_ms: 0 }
    }

    fn offsets(v: &[Stored]) -> Vec<u64> {
        v.iter().map(|s| s.offset).collect()
    }

    fn g() -> Arc<str> {
        "room".into()
    }

    #[test]
    fn delivers_in_place_drops_duplicates_and_waits_at_a_gap() {
        let mut st = Streams::default();
        assert!(st.arrived(&g(), s(1, 5)).is_some(), "the first starts delivery");
        assert!(st.arrived(&g(), s(1, 6)).is_some());
        assert!(st.arrived(&g(), s(1, 6)).is_none(), "a duplicate");
        assert!(st.arrived(&g(), s(1, 9)).is_none(), "7 and 8 are missing");
        assert!(st.arrived(&g(), s(1, 10)).is_none(), "waits behind the gap");
        assert_eq!(st.behind(), [g()]);
        assert_eq!(st.known("room"), (1, 10));
        // The read brings 7..=10; 9 and 10 arrived already and are not doubled.
        let out = st.caught_up(&g(), Some((1, 10)), vec![s(1, 7), s(1, 8), s(1, 9), s(1, 10)]);
        assert_eq!(offsets(&out.deliver), [7, 8, 9, 10]);
        assert_eq!(out.lost, None);
        assert_eq!(st.track("room"), Some(Track { epoch: 1, delivered: 10 }));
        assert!(st.arrived(&g(), s(1, 11)).is_some());
    }

    #[test]
    fn a_gap_history_no_longer_holds_is_lost_and_delivery_goes_on_after_it() {
        let mut st = Streams::default();
        st.start(&g(), Track { epoch: 1, delivered: 3 });
        assert!(st.arrived(&g(), s(1, 9)).is_none());
        // 4..=6 were trimmed.
        let out = st.caught_up(&g(), Some((1, 9)), vec![s(1, 7), s(1, 8), s(1, 9)]);
        assert_eq!(out.lost, Some(Unrecoverable::TooOld));
        assert!(out.deliver.is_empty(), "nothing after a hole: its members are closed");
        assert_eq!(st.track("room"), Some(Track { epoch: 1, delivered: 9 }));
        assert!(st.arrived(&g(), s(1, 10)).is_some());
    }

    #[test]
    fn another_epoch_is_lost_and_a_rollback_asks_for_a_new_epoch() {
        let mut st = Streams::default();
        st.start(&g(), Track { epoch: 1, delivered: 3 });
        assert!(st.arrived(&g(), s(2, 1)).is_none());
        let out = st.caught_up(&g(), Some((2, 1)), Vec::new());
        assert_eq!(out.lost, Some(Unrecoverable::OtherEpoch));
        assert_eq!(st.track("room"), Some(Track { epoch: 2, delivered: 1 }));
        assert!(out.deliver.is_empty(), "the waiting one is at or before where delivery now stands");
        // Redis lost its last writes: it says 2 where 5 were delivered here.
        st.start(&g(), Track { epoch: 2, delivered: 5 });
        st.all_behind();
        let out = st.caught_up(&g(), Some((2, 2)), Vec::new());
        assert_eq!(out.rolled_back, Some(Track { epoch: 2, delivered: 5 }));
        assert_eq!(st.track("room"), None);
        // History gone from Redis altogether.
        st.start(&g(), Track { epoch: 3, delivered: 1 });
        st.all_behind();
        assert_eq!(st.caught_up(&g(), None, Vec::new()).lost, Some(Unrecoverable::OtherEpoch));
    }

    #[test]
    fn a_reconnect_catches_every_tracked_group_up_and_nothing_is_lost_when_all_is_there() {
        let mut st = Streams::default();
        st.start(&g(), Track { epoch: 1, delivered: 2 });
        st.all_behind();
        assert!(st.arrived(&g(), s(1, 5)).is_none(), "waits while behind");
        let out = st.caught_up(&g(), Some((1, 5)), vec![s(1, 3), s(1, 4), s(1, 5)]);
        assert_eq!(offsets(&out.deliver), [3, 4, 5]);
        assert_eq!(out.lost, None);
        // A read cut short of where history stood is a loss, not a silent end.
        st.all_behind();
        let out = st.caught_up(&g(), Some((1, 8)), vec![s(1, 6)]);
        assert_eq!(out.lost, Some(Unrecoverable::TooOld));
        st.forget("room");
        assert_eq!((st.track("room"), st.known("room")), (None, (0, 0)));
    }
}
