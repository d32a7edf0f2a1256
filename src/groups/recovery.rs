//! History and recovery on `Groups`: which groups keep history, broadcasts that know
//! their position, and joins that start after a position.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::group::NotJoined;
use super::history::{HistoryError, HistoryLimits, Position, Published, Recovered, RecoveryError, Since};
use super::Groups;
use crate::connection::ConnectionId;
use crate::delivery::lock;
use crate::prepared::PreparedMessage;

/// Which groups keep history, by name (`room:lobby`) or name prefix (`room:*`).
#[derive(Default)]
pub(crate) struct Rules(Mutex<Vec<(String, HistoryLimits)>>);

impl Rules {
    pub(crate) fn add(&self, pattern: &str, limits: HistoryLimits) {
        let mut rules = lock(&self.0);
        rules.retain(|(p, _)| p != pattern);
        rules.push((pattern.to_owned(), limits));
    }

    /// The limits of `group`'s history, if it keeps one: the last matching rule's.
    pub(crate) fn limits(&self, group: &str) -> Option<HistoryLimits> {
        let rules = lock(&self.0);
        rules.iter().rev().find(|(p, _)| matches(p, group)).map(|(_, l)| *l)
    }
}

fn matches(pattern: &str, group: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => group.starts_with(prefix),
        None => pattern == group,
    }
}

/// The answer of a history call: ready at once on one node, from the node's task in a
/// cluster.
pub(crate) enum Answer<T> {
    Ready(Option<T>),
    // Only a cluster's broker answers later: the in-process one has its answer at once.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    Later(oneshot::Receiver<T>),
}

/// What [`Groups::publish`] and [`Groups::join_since`] return (their examples await it):
/// the call has taken effect
/// (on one node) or is on its way (in a cluster) when they return; await it for the
/// outcome.
#[must_use = "the outcome says whether it happened"]
pub struct HistoryFuture<T> {
    answer: Answer<T>,
    gone: fn() -> T,
}

impl<T> HistoryFuture<T> {
    pub(crate) fn new(answer: Answer<T>, gone: fn() -> T) -> Self {
        HistoryFuture { answer, gone }
    }

    /// The outcome, if it is there already; otherwise the future back, to await. On one
    /// node it is always there ([`Groups::publish`] and [`Groups::join_since`] take effect
    /// when called), so a message handler needs no task for it; in a cluster it is there
    /// once Redis has answered.
    ///
    /// ```
    /// # use actix_meta_websocket::{Groups, groups::HistoryLimits};
    /// let groups = Groups::new();
    /// groups.keep_history("news", HistoryLimits::default());
    /// let sent = groups.publish("news", |at| format!("{at} hello")).now();
    /// assert_eq!(sent.ok().and_then(Result::ok).map(|p| p.position.offset), Some(1));
    /// ```
    pub fn now(mut self) -> Result<T, Self> {
        match &mut self.answer {
            Answer::Ready(value) => Ok(value.take().unwrap_or_else(self.gone)),
            Answer::Later(rx) => match rx.try_recv() {
                Ok(value) => Ok(value),
                Err(oneshot::error::TryRecvError::Closed) => Ok((self.gone)()),
                Err(oneshot::error::TryRecvError::Empty) => Err(self),
            },
        }
    }
}

impl<T: Unpin> Future for HistoryFuture<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        match &mut this.answer {
            Answer::Ready(value) => Poll::Ready(value.take().unwrap_or_else(this.gone)),
            Answer::Later(rx) => Pin::new(rx).poll(cx).map(|r| r.unwrap_or_else(|_| (this.gone)())),
        }
    }
}

impl<T> std::fmt::Debug for HistoryFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ready = matches!(self.answer, Answer::Ready(_));
        f.debug_struct("HistoryFuture").field("ready", &ready).finish()
    }
}

fn stopped_publish() -> Result<Published, HistoryError> {
    Err(HistoryError::NotPublished("the cluster node has stopped".into()))
}

fn stopped_join() -> Result<Recovered, RecoveryError> {
    Err(RecoveryError::Unrecoverable { reason: super::history::Unrecoverable::Unavailable, current: None })
}

impl Groups {
    /// Keeps history for the groups `pattern` names: one group (`"room:lobby"`), every
    /// group whose name starts with a prefix (`"room:*"`), or every group (`"*"`), within
    /// `limits`. From then on
    /// every broadcast to such a group gets a [`Position`] and is kept, a member can join
    /// [`since`](Self::join_since) a position, and the group stays while it keeps
    /// something, even with no member. A later rule for the same pattern replaces the
    /// earlier; a group already keeping history keeps its limits.
    ///
    /// On one node history lives in memory and starts afresh (a new epoch) when the group
    /// does. In a cluster (`Cluster::groups`, feature `cluster`) it lives in Redis,
    /// shared by the nodes: give every node the same rules.
    ///
    /// ```
    /// # use actix_meta_websocket::{Groups, groups::HistoryLimits};
    /// let groups = Groups::new();
    /// groups.keep_history("room:*", HistoryLimits::default().max_messages(200));
    /// ```
    pub fn keep_history(&self, pattern: &str, limits: HistoryLimits) {
        self.shared.rules.add(pattern, limits);
        if !self.shared.broker.history_in_groups() {
            return;
        }
        for (name, group) in self.shared.lock().iter() {
            if matches(pattern, name) {
                group.keep_history(limits, rand::random());
            }
        }
    }

    /// Broadcasts to `group` the message `build` makes from its position, so that the
    /// message can carry it (for the client to recover from later); it is encoded once,
    /// kept in history, and reaches members like [`broadcast`](Self::broadcast).
    ///
    /// On one node the broadcast is made when `publish` is called and the future is ready
    /// at once. In a cluster it is queued when `publish` is called and the future
    /// resolves once Redis has given it its position, stored and published it (in one
    /// step, so that the order of history is the order of delivery on every node); `build`
    /// may then be called again if another node took the position first.
    ///
    /// ```no_run
    /// # use actix_meta_websocket::{Groups, groups::{HistoryError, HistoryFuture, HistoryLimits, Published}};
    /// # async fn demo(groups: Groups) {
    /// groups.keep_history("news", HistoryLimits::default());
    /// let sent: HistoryFuture<Result<Published, HistoryError>> =
    ///     groups.publish("news", |at| format!(r#"{{"at":"{at}","text":"hello"}}"#));
    /// match sent.await {
    ///     Ok(Published { position, reached }) => println!("{reached} here got it, at {position}"),
    ///     Err(HistoryError::Uncertain(why)) => println!("may have gone out: {why}"), // do not repeat it blindly
    ///     Err(e) => println!("{e}"), // NoHistory, NotPublished: nobody got it
    /// }
    /// # }
    /// ```
    pub fn publish<M, F>(&self, group: &str, build: F) -> HistoryFuture<Result<Published, HistoryError>>
    where
        M: Into<PreparedMessage>,
        F: Fn(&Position) -> M + Send + 'static,
    {
        let answer = match self.shared.rules.limits(group) {
            None => Answer::Ready(Some(Err(HistoryError::NoHistory))),
            Some(limits) => {
                let build = Box::new(move |at: &Position| build(at).into());
                self.shared.broker.publish(self, group, limits, build)
            }
        };
        HistoryFuture::new(answer, stopped_publish)
    }

    /// Places a broadcast in `group`'s history here and hands it to its members.
    pub(super) fn publish_here_at(
        &self,
        group: &str,
        build: impl Fn(&Position) -> PreparedMessage,
    ) -> Result<Published, HistoryError> {
        loop {
            let g = self.history_group(group).ok_or(HistoryError::NoHistory)?;
            match g.publish(&build, None, self.shared.thread_backlog()) {
                Err(super::group::Removed) => continue,
                Ok(None) => return Err(HistoryError::NoHistory),
                Ok(Some((position, reach))) => {
                    self.note_skipped(group, reach.skipped);
                    return Ok(Published { position, reached: reach.reached });
                }
            }
        }
    }

    /// Adds `id` to `group` with `meta`, first handing it the broadcasts history holds
    /// [`since`](Since) (in order, each once), then the live ones, with nothing missed or
    /// doubled at the seam however fast broadcasts come. If history cannot cover the gap
    /// (another epoch, broadcasts gone from history, more than
    /// [`max_replay`](HistoryLimits::max_replay) of them), the connection is not joined and
    /// nothing is delivered: [`RecoveryError::Unrecoverable`] says why, and where history
    /// stands, so that the client can start over. Never a partial replay.
    ///
    /// A connection that is a member already only has its metadata replaced (it has had
    /// every broadcast). On one node this takes effect before `join_since` returns; in a
    /// cluster the node reads the gap from Redis first, and the connection joins when the
    /// future resolves.
    ///
    /// ```no_run
    /// # use actix_meta_websocket::*;
    /// # use actix_meta_websocket::groups::{Position, Recovered, RecoveryError, Since};
    /// # async fn demo(groups: Groups, id: ConnectionId, last_seen: Option<&str>) {
    /// let since = match last_seen.and_then(|s| s.parse::<Position>().ok()) {
    ///     Some(p) => Since::After(p),
    ///     None => Since::Start,
    /// };
    /// match groups.join_since("room:1", &id, "ada", since).await {
    ///     Ok(Recovered { replayed, position }) => tracing::debug!(replayed, %position, "caught up"),
    ///     Err(RecoveryError::Unrecoverable { reason, .. }) => {
    ///         id.send(format!(r#"{{"reload":"{reason}"}}"#)); // the client starts over
    ///     }
    ///     Err(e) => tracing::warn!(%e, "not joined"),
    /// }
    /// # }
    /// ```
    pub fn join_since(
        &self,
        group: &str,
        id: &ConnectionId,
        meta: impl Into<Arc<str>>,
        since: Since,
    ) -> HistoryFuture<Result<Recovered, RecoveryError>> {
        let meta = meta.into();
        let answer = match self.shared.rules.limits(group) {
            None => Answer::Ready(Some(Err(RecoveryError::NoHistory))),
            Some(limits) => self.shared.broker.join_since(self, group, id, meta, since, limits),
        };
        HistoryFuture::new(answer, stopped_join)
    }

    /// Joins `id` to `group` after a replay from the history kept here.
    pub(super) fn join_here_since(
        &self,
        group: &str,
        id: &ConnectionId,
        meta: Arc<str>,
        since: Since,
    ) -> Result<Recovered, RecoveryError> {
        // `Groups::join_since` found that `group` keeps history before the broker sent it here.
        let mut outcome = Err(RecoveryError::NoHistory);
        let joined = id.subscriber().join(|| loop {
            let g = self.history_group(group)?;
            match g.join_since(id, meta.clone(), since) {
                Err(NotJoined::Removed) => continue,
                Err(NotJoined::NoHistory) => return None,
                Err(NotJoined::Unrecoverable(reason, current)) => {
                    outcome = Err(RecoveryError::Unrecoverable { reason, current: Some(current) });
                    return None;
                }
                Ok((fresh, replayed, position)) => {
                    outcome = Ok(Recovered { replayed, position });
                    return fresh.then_some(g as Arc<dyn crate::delivery::Joined>);
                }
            }
        });
        let outcome = joined.map_err(|_| RecoveryError::Ended).and(outcome);
        super::history::note_recovery(&outcome);
        outcome
    }

    /// The position of `group`'s newest broadcast as this node knows it: where its history
    /// stands on one node; in a cluster (history in Redis), the newest broadcast delivered
    /// here or replayed to a member joining here. `None` for a group without history, or
    /// one this node has not heard from yet.
    pub fn position(&self, group: &str) -> Option<Position> {
        self.shared.get(group).and_then(|g| g.position())
    }

    /// `group`, made if need be, with its history if a rule asks for one (on one node).
    fn history_group(&self, group: &str) -> Option<Arc<super::group::Group>> {
        self.shared.rules.limits(group)?;
        Some(self.shared.get_or_make(group))
    }
}

/// What a cluster's node does with the groups of its history: deliveries placed by Redis,
/// joins after a replay read from Redis, and members closed after a gap history cannot fill.
#[cfg(feature = "cluster")]
impl Groups {
    /// Hands a broadcast with history, in its place, to this node's members of `group`
    /// (but the member `except`).
    pub(crate) fn deliver_stored(
        &self,
        group: &str,
        at: Position,
        msg: &PreparedMessage,
        except: Option<u64>,
    ) -> usize {
        let Some(g) = self.shared.get(group) else { return 0 };
        g.saw(at);
        let reach = g.deliver_except_seq(msg, except, self.shared.thread_backlog());
        self.note_skipped(group, reach.skipped);
        reach.reached
    }

    /// Adds `id` to `group` after handing it `replay`, in the same step; whether it is new.
    pub(crate) fn join_replayed(
        &self,
        group: &str,
        at: Position,
        id: &ConnectionId,
        meta: Arc<str>,
        replay: &[PreparedMessage],
    ) -> Result<bool, crate::error::WriteError> {
        let mut fresh = false;
        let joined = id.subscriber().join(|| loop {
            let g = self.shared.get_or_make(group);
            g.saw(at);
            match g.join_replayed(id, meta.clone(), replay) {
                Err(super::group::Removed) => continue,
                Ok(new) => {
                    fresh = new;
                    self.shared.broker.joined(&g.name, id, &meta, new);
                    return new.then_some(g as Arc<dyn crate::delivery::Joined>);
                }
            }
        });
        joined.map_err(|_| crate::error::WriteError::Closed)?;
        Ok(fresh)
    }

    /// Closes this node's members of `group` with `code` and `reason`: they missed
    /// broadcasts that history no longer holds, and their clients must start over.
    pub(crate) fn close_members(&self, group: &str, code: u16, reason: &str) -> usize {
        let members = self.members(group);
        crate::telemetry::gap_closes(members.len());
        for m in &members {
            // Nothing more is handed to it from now: what it gets ends before the gap.
            m.id.close_before_gap(code.into(), reason);
        }
        members.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::shared::{clock, SWEEP_EVERY};
    use super::*;

    #[test]
    fn a_group_made_by_a_publish_is_not_swept_away_with_its_broadcast() {
        let groups = Groups::new();
        groups.keep_history("room:*", HistoryLimits::default());
        // A sweep is due when this `Groups` makes its first group once the process clock
        // has run past a sweep period: that group, empty when made, must not be its victim.
        while clock() <= SWEEP_EVERY.as_millis() as u64 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let text = |at: &Position| PreparedMessage::text(at.to_string());
        let first = groups.publish("room:a", text).now().ok().and_then(Result::ok).expect("published");
        let second = groups.publish("room:a", text).now().ok().and_then(Result::ok).expect("published");
        assert_eq!((second.position.epoch, second.position.offset), (first.position.epoch, 2));
        assert_eq!(groups.position("room:a"), Some(second.position));
    }
}
