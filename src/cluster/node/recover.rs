//! Reading history back: catch-up reads of what this node missed, delivered in place,
//! and joins that replay what a member missed before its live broadcasts.

use std::sync::Arc;

use bytes::Bytes;
use redis::Value;

use super::stored::{new_epoch, parse_answer, publish_script, ttl};
use super::streams::{Stored, Track};
use super::{Node, Redis};
use crate::cluster::events::ClusterEvent;
use crate::cluster::link::JoinSince;
use crate::cluster::wire::Frame;
use crate::groups::{HistoryLimits, Position, Recovered, RecoveryError, Since, Unrecoverable};
use crate::prepared::PreparedMessage;

/// Entries per read.
const PAGE: usize = 256;
/// Close code for members that missed what history could not give back.
const RESTART: u16 = 1012;

/// A stream entry as Redis returns it: its id, and its fields and values.
type Entry = (String, Vec<(String, Vec<u8>)>);

impl Node {
    /// Reads what the groups that wait for it missed, and delivers it in its place.
    pub(super) async fn catch_up_all(&mut self, r: &mut Redis) -> redis::RedisResult<()> {
        for group in self.state.streams.behind() {
            self.catch_up(r, &group).await?;
        }
        Ok(())
    }

    async fn catch_up(&mut self, r: &mut Redis, group: &Arc<str>) -> redis::RedisResult<()> {
        let meta = self.read_meta(r, group).await?;
        let mut entries = Vec::new();
        if let (Some(t), Some((epoch, last))) = (self.state.streams.track(group), meta) {
            if t.epoch == epoch && last > t.delivered {
                entries = self.read_range(r, group, t.delivered + 1, last).await?;
            }
        }
        let out = self.state.streams.caught_up(group, meta, entries);
        if let Some(reason) = out.lost {
            // Closed first: the members here end before the gap, never after it.
            self.history_lost(group, reason);
        }
        for s in &out.deliver {
            self.state.groups.deliver_stored(group, s.position(), &s.msg, s.except);
        }
        if let Some(t) = out.rolled_back {
            self.renew(r, group, t.epoch, t.delivered).await?;
        }
        Ok(())
    }

    /// This node's members of `group` missed what history cannot give back: closed, so
    /// that their clients reconnect and recover or learn that they cannot.
    fn history_lost(&mut self, group: &Arc<str>, reason: Unrecoverable) {
        let closed = self.state.groups.close_members(group, RESTART, "history gap: reconnect and recover");
        tracing::warn!(%group, %reason, closed, "cluster: members missed broadcasts history no longer holds");
        self.state.tell(ClusterEvent::HistoryGap { group: group.clone(), reason, closed });
    }

    /// The group's history: (epoch, last offset); `None` when there is none, or when it was
    /// written under another Redis process (which may have come back with less than it gave
    /// out: the next publish starts a new epoch).
    async fn read_meta(&mut self, r: &mut Redis, group: &Arc<str>) -> redis::RedisResult<Option<(u64, u64)>> {
        let (e, o, run): (Option<String>, Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(self.state.keys.history_meta(group))
            .arg("e")
            .arg("o")
            .arg("r")
            .query_async(&mut r.conn)
            .await?;
        if run.as_deref() != Some(r.runs.of(&self.state.keys.history_meta(group))) {
            return Ok(None);
        }
        Ok(e.and_then(|e| e.parse().ok()).zip(o))
    }

    /// Where `group`'s history stands, made if it has none yet.
    async fn probe(
        &mut self,
        r: &mut Redis,
        group: &Arc<str>,
        limits: &HistoryLimits,
    ) -> redis::RedisResult<(u64, u64)> {
        let keys = &self.state.keys;
        let answer: Value = redis::cmd("EVAL")
            .arg(publish_script(keys))
            .arg(2)
            .arg(keys.history(group))
            .arg(keys.history_meta(group))
            .arg(keys.group(group))
            .arg(new_epoch().to_string())
            .arg("0")
            .arg(0)
            .arg(limits.max_messages)
            .arg(limits.max_age.as_millis() as u64)
            .arg(limits.max_bytes)
            .arg(ttl(limits))
            .arg(r.runs.of(&keys.history(group)))
            .arg(0)
            .query_async(&mut r.conn)
            .await?;
        parse_answer(&answer).map(|(_, e, o)| (e, o)).ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "history probe answer"))
        })
    }

    /// The stored broadcasts `from ..= to` of `group`, read in pages; stops early where
    /// history has none.
    async fn read_range(
        &mut self,
        r: &mut Redis,
        group: &Arc<str>,
        from: u64,
        to: u64,
    ) -> redis::RedisResult<Vec<Stored>> {
        let mut out = Vec::new();
        let mut next = from;
        while next <= to {
            let page: Vec<Entry> = redis::cmd("XRANGE")
                .arg(self.state.keys.history(group))
                .arg(format!("{next}-0"))
                .arg(format!("{to}-0"))
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut r.conn)
                .await?;
            let full = page.len() == PAGE;
            for entry in page {
                if let Some(s) = self.entry(group, entry) {
                    next = s.offset + 1;
                    out.push(s);
                }
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// The newest `count` stored broadcasts of `group` up to `to`, oldest first.
    async fn read_latest(
        &mut self,
        r: &mut Redis,
        group: &Arc<str>,
        to: u64,
        count: usize,
    ) -> redis::RedisResult<Vec<Stored>> {
        let page: Vec<Entry> = redis::cmd("XREVRANGE")
            .arg(self.state.keys.history(group))
            .arg(format!("{to}-0"))
            .arg("-")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut r.conn)
            .await?;
        let mut out: Vec<Stored> = page.into_iter().filter_map(|e| self.entry(group, e)).collect();
        out.reverse();
        Ok(out)
    }

    /// One stream entry as a stored broadcast; an entry that is not ours is skipped.
    fn entry(&self, group: &str, (id, fields): Entry) -> Option<Stored> {
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let at_ms = field("t").and_then(|t| std::str::from_utf8(t).ok()?.parse().ok()).unwrap_or(0);
        let frame = field("f").map(|f| Frame::decode(Bytes::copy_from_slice(f)));
        match frame {
            Some(Ok((from, Frame::Stored { epoch, offset, except, text, payload }))) => {
                let except = (from == self.state.me() && except != 0).then_some(except);
                Some(Stored { epoch, offset, except, msg: PreparedMessage::checked(text, payload), at_ms })
            }
            _ => {
                tracing::warn!(group, id, "cluster: skipped a history entry that is not ours");
                None
            }
        }
    }

    /// Carries out the joins with recovery, one after the other.
    pub(super) async fn join_all(&mut self, r: &mut Redis, joins: Vec<JoinSince>) -> redis::RedisResult<()> {
        for j in joins {
            let outcome = self.join_one(r, &j).await?;
            j.answer(outcome);
        }
        Ok(())
    }

    /// Brings the group up to date here, reads what the member missed, and joins it after
    /// that replay in one step: nothing this node delivers comes between the read and the
    /// join, so the member's replay meets its live broadcasts without gap or double.
    async fn join_one(
        &mut self,
        r: &mut Redis,
        j: &JoinSince,
    ) -> redis::RedisResult<Result<Recovered, RecoveryError>> {
        let group = &j.group;
        let listening = self.state.local.listens(group);
        if !listening {
            r.subs.subscribe(&[self.state.keys.group(group)]).await?;
        }
        let outcome = self.recover(r, j).await?;
        if outcome.is_err() && !listening && !self.state.local.listens(group) {
            r.subs.unsubscribe(&[self.state.keys.group(group)]).await?;
            self.state.streams.forget(group);
        }
        Ok(outcome)
    }

    async fn recover(
        &mut self,
        r: &mut Redis,
        j: &JoinSince,
    ) -> redis::RedisResult<Result<Recovered, RecoveryError>> {
        let group = &j.group;
        // Up to date here: what this node has delivered is where the member's live part starts.
        if self.state.streams.track(group).is_some() {
            self.state.streams.mark_behind(group);
            self.catch_up(r, group).await?;
        }
        if self.state.streams.track(group).is_none() {
            let (epoch, last) = self.probe(r, group, &j.limits).await?;
            self.state.streams.start(group, Track { epoch, delivered: last });
        }
        let Some(t) = self.state.streams.track(group) else {
            return Ok(Err(RecoveryError::Unrecoverable {
                reason: Unrecoverable::Unavailable,
                current: None,
            }));
        };
        let replay = match self.replay(r, j, t).await? {
            Ok(replay) => replay,
            Err(reason) => {
                let current = Some(Position { epoch: t.epoch, offset: t.delivered });
                return Ok(Err(RecoveryError::Unrecoverable { reason, current }));
            }
        };
        let msgs: Vec<PreparedMessage> = replay.into_iter().map(|s| s.msg).collect();
        match self.state.groups.join_replayed(
            group,
            Position { epoch: t.epoch, offset: t.delivered },
            &j.id,
            j.meta.clone(),
            &msgs,
        ) {
            Ok(_) => {
                let position = Position { epoch: t.epoch, offset: t.delivered };
                Ok(Ok(Recovered { replayed: msgs.len(), position }))
            }
            Err(_) => Ok(Err(RecoveryError::Ended)),
        }
    }
}

impl Node {
    /// What a member joining `j.since` is to be replayed, with delivery here at `t`.
    async fn replay(
        &mut self,
        r: &mut Redis,
        j: &JoinSince,
        t: Track,
    ) -> redis::RedisResult<Result<Vec<Stored>, Unrecoverable>> {
        let oldest_ms = now_ms().saturating_sub(j.limits.max_age.as_millis() as u64);
        let p = match j.since {
            Since::Now => return Ok(Ok(Vec::new())),
            Since::Start => {
                let latest = self.read_latest(r, &j.group, t.delivered, j.limits.max_replay).await?;
                let recent = latest.into_iter().filter(|s| s.epoch == t.epoch && s.at_ms >= oldest_ms);
                return Ok(Ok(recent.collect()));
            }
            Since::After(p) => p,
        };
        if p.epoch != t.epoch {
            return Ok(Err(Unrecoverable::OtherEpoch));
        }
        if p.offset > t.delivered {
            return Ok(Err(Unrecoverable::Ahead));
        }
        if t.delivered - p.offset > j.limits.max_replay as u64 {
            return Ok(Err(Unrecoverable::TooFarBehind));
        }
        let got = self.read_range(r, &j.group, p.offset + 1, t.delivered).await?;
        // Every one of them, in this epoch, none aged out: or none at all.
        let whole = got.len() as u64 == t.delivered - p.offset
            && got.iter().zip(p.offset + 1..).all(|(s, o)| s.offset == o && s.epoch == t.epoch)
            && got.first().is_none_or(|s| s.at_ms >= oldest_ms);
        Ok(if whole { Ok(got) } else { Err(Unrecoverable::TooOld) })
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
