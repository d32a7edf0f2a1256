//! A group's history: the broadcasts it keeps, each at its position, within its limits;
//! and what a position asks of it. Plain data, no I/O: the group holds it under its lock.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::connection::ConnectionId;
use crate::error::ParseError;
use crate::prepared::PreparedMessage;
use crate::protocol::CloseCode;

/// Where a broadcast stands in its group's history: the history's epoch (a new one each
/// time the history starts afresh) and the broadcast's offset in it (1, 2, 3, ...).
///
/// Printed and parsed as `<epoch>:<offset>` (the epoch in 16 hex digits), to hand to a
/// client and take back from it:
///
/// ```
/// use actix_meta_websocket::groups::Position;
/// let p: Position = "00000000075bcd15:42".parse().unwrap();
/// assert_eq!((p.epoch, p.offset), (123456789, 42));
/// assert_eq!(p.to_string(), "00000000075bcd15:42");
/// assert!("42".parse::<Position>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// The history this position belongs to.
    pub epoch: u64,
    /// The broadcast's number in it; 0 is the place before the first.
    pub offset: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}:{}", self.epoch, self.offset)
    }
}

impl FromStr for Position {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseError::new("history position", "<16 hex digits>:<offset>", s);
        let (epoch, offset) = s.split_once(':').ok_or_else(bad)?;
        if epoch.len() != 16 {
            return Err(bad());
        }
        Ok(Position {
            epoch: u64::from_str_radix(epoch, 16).map_err(|_| bad())?,
            offset: offset.parse().map_err(|_| bad())?,
        })
    }
}

/// How much history a group keeps, and how much a recovery may replay. Every bound
/// applies: a broadcast leaves history once it is more than `max_messages` back, older
/// than `max_age`, or when the history holds more than `max_bytes` of payload.
///
/// ```
/// use std::time::Duration;
/// use actix_meta_websocket::groups::HistoryLimits;
/// let limits = HistoryLimits::default()
///     .max_messages(500)
///     .max_age(Duration::from_secs(120))
///     .max_bytes(1 << 20);
/// assert_eq!(limits.max_replay, 300);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryLimits {
    /// Broadcasts kept (default 1,000).
    pub max_messages: usize,
    /// How long a broadcast is kept (default 10 minutes).
    pub max_age: Duration,
    /// Payload bytes kept (default 4 MiB).
    pub max_bytes: usize,
    /// Broadcasts one recovery may replay (default 300): a member further behind is told
    /// it cannot recover ([`Unrecoverable::TooFarBehind`]) rather than flooded.
    pub max_replay: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            max_messages: 1000,
            max_age: Duration::from_secs(600),
            max_bytes: 4 << 20,
            max_replay: 300,
        }
    }
}

impl HistoryLimits {
    setters! {
    /// Sets [`max_messages`](Self::max_messages).
    max_messages: usize,
    /// Sets [`max_age`](Self::max_age).
    max_age: Duration,
    /// Sets [`max_bytes`](Self::max_bytes).
    max_bytes: usize,
    /// Sets [`max_replay`](Self::max_replay).
    max_replay: usize,
    }
}

/// Where a joining member's delivery starts (see [`Groups::join_since`](crate::Groups::join_since),
/// whose example picks one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// With the next broadcast (no replay).
    Now,
    /// With what history holds, at most `max_replay` of the most recent: for a new page
    /// that shows the latest messages first.
    Start,
    /// Right after this position: every broadcast after it that history holds, then the
    /// live ones; or [`RecoveryError::Unrecoverable`] if history cannot cover them all.
    After(Position),
}

impl Since {
    /// What the query string `query` asks for under `key`: `now`, `start` or a position
    /// (`?since=00000000075bcd15:42`); `Ok(None)` without `key`, an error for a value that
    /// is none of these. Percent-encoding is undone (`%3A` is `:`).
    ///
    /// ```
    /// use actix_meta_websocket::{groups::{Position, Since}};
    /// let p = Position { epoch: 7, offset: 42 };
    /// assert_eq!(Since::from_query(&format!("room=a&since={p}"), "since"), Ok(Some(Since::After(p))));
    /// assert_eq!(Since::from_query("since=start", "since"), Ok(Some(Since::Start)));
    /// assert_eq!(Since::from_query("room=a", "since"), Ok(None));
    /// assert!(Since::from_query("since=yesterday", "since").is_err());
    /// ```
    pub fn from_query(query: &str, key: &str) -> Result<Option<Since>, ParseError> {
        let Some((_, value)) = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == key) else {
            return Ok(None);
        };
        Ok(Some(match &*value {
            "now" => Since::Now,
            "start" => Since::Start,
            p => Since::After(p.parse()?),
        }))
    }
}

/// Why a position cannot be recovered. Nothing is delivered then, and the member is not
/// joined. Every reason but one asks the client to start over: forget its position, load
/// the state afresh, and join [`Since::Now`] or [`Since::Start`]. [`Unavailable`] asks it
/// to keep its position and come back shortly ([`is_retryable`](Self::is_retryable)).
///
/// The crate's convention for telling a client why, on the wire: [`refuse`](Self::refuse)
/// closes the connection with [`close_code`](Self::close_code) (1013 Try Again Later for
/// `Unavailable`; 4001 to 4004, start over, for the others) and the reason in words; the
/// client reads it back with [`from_close_code`](Self::from_close_code), and the crate's
/// own client forgets its position with [`Resume::closed`](crate::client::Resume::closed).
///
/// ```
/// use actix_meta_websocket::{protocol::CloseCode, groups::Unrecoverable};
/// assert_eq!(Unrecoverable::Unavailable.close_code(), CloseCode(1013));
/// assert!(Unrecoverable::Unavailable.is_retryable());
/// assert_eq!(Unrecoverable::TooOld.close_code(), CloseCode(4002));
/// assert_eq!(Unrecoverable::from_close_code(CloseCode(4002)), Some(Unrecoverable::TooOld));
/// assert_eq!(Unrecoverable::from_close_code(CloseCode(1000)), None);
/// ```
///
/// [`Unavailable`]: Unrecoverable::Unavailable
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unrecoverable {
    /// The position belongs to another epoch: the history started afresh since (it was
    /// dropped with its group, or lost with Redis).
    OtherEpoch,
    /// Broadcasts after the position have already left history (its limits).
    TooOld,
    /// More broadcasts came after the position than one recovery may replay
    /// ([`HistoryLimits::max_replay`]).
    TooFarBehind,
    /// The position is ahead of history: no such broadcast was made.
    Ahead,
    /// History could not be read now (the cluster's Redis is away): the position may well be
    /// recoverable; the client keeps it and tries again after a short wait.
    Unavailable,
}

/// The close codes of the convention, in the order of `Unrecoverable`'s variants.
const CODES: [(Unrecoverable, u16); 5] = [
    (Unrecoverable::OtherEpoch, 4001),
    (Unrecoverable::TooOld, 4002),
    (Unrecoverable::TooFarBehind, 4003),
    (Unrecoverable::Ahead, 4004),
    (Unrecoverable::Unavailable, 1013),
];

impl Unrecoverable {
    /// Whether the client should keep its position and come back after a short wait (only
    /// [`Unavailable`](Self::Unavailable)); otherwise it starts over.
    pub fn is_retryable(self) -> bool {
        self == Unrecoverable::Unavailable
    }

    /// The close code that tells a client this reason (see the type's docs).
    pub fn close_code(self) -> CloseCode {
        CODES.iter().find(|(r, _)| *r == self).map_or(CloseCode(1013), |(_, c)| CloseCode(*c))
    }

    /// The reason a close code of the convention stands for, read by a client.
    pub fn from_close_code(code: CloseCode) -> Option<Unrecoverable> {
        CODES.iter().find(|(_, c)| *c == code.0).map(|(r, _)| *r)
    }

    /// Closes `id` with [`close_code`](Self::close_code) and this reason in words: how a
    /// server tells a client that it cannot recover, and what to do.
    ///
    /// ```no_run
    /// # use actix_meta_websocket::*;
    /// # use actix_meta_websocket::groups::{RecoveryError, Since};
    /// # async fn demo(groups: Groups, id: ConnectionId, since: Since) {
    /// if let Err(RecoveryError::Unrecoverable { reason, .. }) = groups.join_since("room", &id, "", since).await {
    ///     reason.refuse(&id); // 1013: come back shortly; 4001-4004: start over
    /// }
    /// # }
    /// ```
    pub fn refuse(self, id: &ConnectionId) {
        let _ = id.close(self.close_code(), &self.to_string());
    }
}

impl fmt::Display for Unrecoverable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unrecoverable::OtherEpoch => "the history started afresh (another epoch)",
            Unrecoverable::TooOld => "broadcasts after the position have left history",
            Unrecoverable::TooFarBehind => "more broadcasts after the position than one recovery replays",
            Unrecoverable::Ahead => "the position is ahead of history",
            Unrecoverable::Unavailable => "history cannot be read now",
        })
    }
}

/// Why a member could not join with recovery (the example of
/// [`Groups::join_since`](crate::Groups::join_since) answers each).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The connection has ended.
    #[error("the connection has ended: it joins no group any more")]
    Ended,
    /// The group keeps no history ([`Groups::keep_history`](crate::Groups::keep_history)).
    #[error("the group keeps no history: call Groups::keep_history for it first")]
    NoHistory,
    /// The position cannot be recovered; `current` is where history stands now.
    #[error("cannot recover: {reason}")]
    Unrecoverable {
        /// Why.
        reason: Unrecoverable,
        /// Where the group's history stands now.
        current: Option<Position>,
    },
}

/// A member joined with recovery (see [`Groups::join_since`](crate::Groups::join_since)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Broadcasts replayed to it.
    pub replayed: usize,
    /// The position of the last broadcast before its live ones: it gets every broadcast
    /// after this one.
    pub position: Position,
}

/// A broadcast with its place in history (see [`Groups::publish`](crate::Groups::publish)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Its position.
    pub position: Position,
    /// The members on this node it was handed to.
    pub reached: usize,
}

/// Why a broadcast got no position (the example of
/// [`Groups::publish`](crate::Groups::publish) answers each).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The group keeps no history ([`Groups::keep_history`](crate::Groups::keep_history)).
    #[error("the group keeps no history: call Groups::keep_history for it first")]
    NoHistory,
    /// The cluster did not store and publish it (Redis away, too much waiting for it, the
    /// node stopping, or other nodes publishing to the group faster than this one could
    /// take its turn).
    #[error("not published ({0}): nobody got it; publish again or tell the sender")]
    NotPublished(String),
    /// The link to Redis failed while it was being stored: it may have been published
    /// (and then reaches every member, in its place) or not.
    #[error("may not have been published ({0}): members that got it have it in its place; publishing again may repeat it")]
    Uncertain(String),
}

struct Kept {
    offset: u64,
    at: Instant,
    msg: PreparedMessage,
}

/// One group's kept broadcasts.
pub(crate) struct History {
    limits: HistoryLimits,
    epoch: u64,
    /// The offset of the newest broadcast made (kept or not); 0 before the first.
    last: u64,
    kept: VecDeque<Kept>,
    bytes: usize,
}

impl History {
    pub(crate) fn new(limits: HistoryLimits, epoch: u64) -> Self {
        History { limits, epoch, last: 0, kept: VecDeque::new(), bytes: 0 }
    }

    /// Where history stands: the newest broadcast's position.
    pub(crate) fn position(&self) -> Position {
        Position { epoch: self.epoch, offset: self.last }
    }

    /// The next broadcast's position.
    pub(crate) fn next(&self) -> Position {
        Position { epoch: self.epoch, offset: self.last + 1 }
    }

    /// Keeps `msg` as the broadcast at [`next`](Self::next); drops what falls out of the
    /// limits.
    pub(crate) fn append(&mut self, msg: PreparedMessage, now: Instant) {
        self.last += 1;
        self.bytes += msg.body().len();
        self.kept.push_back(Kept { offset: self.last, at: now, msg });
        self.trim(now);
    }

    /// Drops what falls out of the limits at `now`.
    pub(crate) fn trim(&mut self, now: Instant) {
        let l = self.limits;
        while let Some(old) = self.kept.front() {
            let aged = now.saturating_duration_since(old.at) > l.max_age;
            if self.kept.len() <= l.max_messages && self.bytes <= l.max_bytes && !aged {
                break;
            }
            self.bytes -= old.msg.body().len();
            self.kept.pop_front();
        }
    }

    /// Whether nothing is kept (at `now`): the group may go.
    pub(crate) fn is_empty(&mut self, now: Instant) -> bool {
        self.trim(now);
        self.kept.is_empty()
    }

    /// What a member joining `since` is to be replayed, oldest first; never part of it.
    pub(crate) fn replay(
        &mut self,
        since: Since,
        now: Instant,
    ) -> Result<Vec<PreparedMessage>, Unrecoverable> {
        self.trim(now);
        let after = match since {
            Since::Now => return Ok(Vec::new()),
            Since::Start => {
                let skip = self.kept.len().saturating_sub(self.limits.max_replay);
                return Ok(self.kept.iter().skip(skip).map(|k| k.msg.clone()).collect());
            }
            Since::After(p) => p,
        };
        if after.epoch != self.epoch {
            return Err(Unrecoverable::OtherEpoch);
        }
        if after.offset > self.last {
            return Err(Unrecoverable::Ahead);
        }
        let missed = self.last - after.offset;
        if missed == 0 {
            return Ok(Vec::new());
        }
        // The first broadcast the member lacks must still be kept.
        let first = self.kept.front().map_or(self.last + 1, |k| k.offset);
        if after.offset + 1 < first {
            return Err(Unrecoverable::TooOld);
        }
        if missed > self.limits.max_replay as u64 {
            return Err(Unrecoverable::TooFarBehind);
        }
        let skip = (after.offset + 1 - first) as usize;
        Ok(self.kept.iter().skip(skip).map(|k| k.msg.clone()).collect())
    }
}

/// Tells the metrics recorder how a join since a position ended.
pub(crate) fn note_recovery(outcome: &Result<Recovered, RecoveryError>) {
    crate::telemetry::recovery(match outcome {
        Ok(_) => "recovered",
        Err(RecoveryError::Ended) => "ended",
        Err(RecoveryError::NoHistory) => "no_history",
        Err(RecoveryError::Unrecoverable { reason, .. }) => match reason {
            Unrecoverable::OtherEpoch => "other_epoch",
            Unrecoverable::TooOld => "too_old",
            Unrecoverable::TooFarBehind => "too_far_behind",
            Unrecoverable::Ahead => "ahead",
            Unrecoverable::Unavailable => "unavailable",
        },
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> PreparedMessage {
        PreparedMessage::text(s.to_owned())
    }

    fn bodies(v: &[PreparedMessage]) -> Vec<String> {
        v.iter().map(|m| String::from_utf8_lossy(m.body()).into_owned()).collect()
    }

    fn filled(limits: HistoryLimits, n: u64, t0: Instant) -> History {
        let mut h = History::new(limits, 7);
        for i in 1..=n {
            assert_eq!(h.next().offset, i);
            h.append(text(&i.to_string()), t0);
        }
        h
    }

    #[test]
    fn replays_exactly_what_follows_a_position() {
        let t0 = Instant::now();
        let mut h = filled(HistoryLimits::default(), 5, t0);
        assert_eq!(h.position(), Position { epoch: 7, offset: 5 });
        let at = |offset| Since::After(Position { epoch: 7, offset });
        assert_eq!(bodies(&h.replay(at(2), t0).unwrap()), ["3", "4", "5"]);
        assert_eq!(bodies(&h.replay(at(0), t0).unwrap()), ["1", "2", "3", "4", "5"]);
        assert!(h.replay(at(5), t0).unwrap().is_empty(), "up to date");
        assert_eq!(h.replay(at(6), t0).err(), Some(Unrecoverable::Ahead));
        let other = Since::After(Position { epoch: 8, offset: 2 });
        assert_eq!(h.replay(other, t0).err(), Some(Unrecoverable::OtherEpoch));
        assert!(h.replay(Since::Now, t0).unwrap().is_empty());
        assert_eq!(bodies(&h.replay(Since::Start, t0).unwrap()), ["1", "2", "3", "4", "5"]);
    }

    #[test]
    fn every_limit_trims_and_a_trimmed_position_is_too_old_never_partial() {
        let t0 = Instant::now();
        let at = |offset| Since::After(Position { epoch: 7, offset });
        // By count: 1 and 2 are gone.
        let mut h = filled(HistoryLimits::default().max_messages(3), 5, t0);
        assert_eq!(h.replay(at(0), t0).err(), Some(Unrecoverable::TooOld));
        assert_eq!(h.replay(at(1), t0).err(), Some(Unrecoverable::TooOld));
        assert_eq!(bodies(&h.replay(at(2), t0).unwrap()), ["3", "4", "5"]);
        // By bytes: each body is one byte.
        let mut h = filled(HistoryLimits::default().max_bytes(2), 5, t0);
        assert_eq!(h.replay(at(2), t0).err(), Some(Unrecoverable::TooOld));
        assert_eq!(bodies(&h.replay(at(3), t0).unwrap()), ["4", "5"]);
        // By age, at the time of asking.
        let mut h = filled(HistoryLimits::default().max_age(Duration::from_secs(1)), 2, t0);
        h.append(text("3"), t0 + Duration::from_millis(1500));
        let later = t0 + Duration::from_millis(1600);
        assert_eq!(h.replay(at(1), later).err(), Some(Unrecoverable::TooOld));
        assert_eq!(bodies(&h.replay(at(2), later).unwrap()), ["3"]);
        assert!(!h.is_empty(later));
        assert!(h.is_empty(t0 + Duration::from_secs(5)));
        // Everything aged out: a member at the last position has missed nothing.
        assert!(h.replay(at(3), t0 + Duration::from_secs(5)).unwrap().is_empty());
        assert_eq!(h.replay(at(2), t0 + Duration::from_secs(5)).err(), Some(Unrecoverable::TooOld));
    }

    #[test]
    fn a_recovery_replays_at_most_max_replay_and_start_takes_the_latest() {
        let t0 = Instant::now();
        let mut h = filled(HistoryLimits::default().max_replay(2), 5, t0);
        let at = |offset| Since::After(Position { epoch: 7, offset });
        assert_eq!(h.replay(at(2), t0).err(), Some(Unrecoverable::TooFarBehind));
        assert_eq!(bodies(&h.replay(at(3), t0).unwrap()), ["4", "5"]);
        assert_eq!(bodies(&h.replay(Since::Start, t0).unwrap()), ["4", "5"]);
    }

    #[test]
    fn positions_print_and_parse_and_refuse_junk() {
        let p = Position { epoch: u64::MAX, offset: 0 };
        assert_eq!(p.to_string().parse::<Position>(), Ok(p));
        for junk in ["", ":", "ffff:1", "000000000000000g:1", "0000000000000001:-1", "0000000000000001:x"] {
            assert!(junk.parse::<Position>().is_err(), "{junk:?}");
        }
    }
}
