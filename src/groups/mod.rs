//! Groups: named sets of connections to broadcast to, with presence and history.
//!
//! [`Groups`] is the entry point (re-exported at the crate root); the rest of this module
//! is what its calls take and give back: presence ([`Member`], [`PresenceEvent`],
//! [`PresenceChange`]), history ([`HistoryLimits`], [`Since`], [`Position`],
//! [`Published`], [`Recovered`]) and the refusals a join with recovery can meet
//! ([`RecoveryError`], [`Unrecoverable`], [`HistoryError`]).
//!
//! The guide shows them at work: [groups and presence](crate::guide::ch04_groups) and
//! [history and recovery](crate::guide::ch05_history).
//!
//! ```
//! use actix_meta_websocket::groups::{HistoryLimits, Since};
//! use actix_meta_websocket::Groups;
//!
//! let groups = Groups::new();
//! groups.keep_history("prices", HistoryLimits::default());
//! assert!(groups.members("prices").is_empty());
//! assert!(matches!(Since::from_query("since=0000000000000001:7", "since"), Ok(Some(_))));
//! ```

// For maintainers:
// Groups: named sets of connections to broadcast to, with presence.
//
// How a broadcast travels, each step a layer further down:
//
// ```text
// Groups::broadcast (groups)
// │ the group's lock: one entry per worker thread with members
// v
// ThreadInbox::push (delivery, one inbox per thread)
// │ the inbox's task, on that thread: the thread's members of the group
// v
// Subscriber::deliver (delivery, one per connection)
// │ the connection's next turn takes what waits
// v
// the connection's write path (connection)
// ```
//
// Joins and leaves take the same way down, so an inbox sees them in order with the
// broadcasts. A member leaves through one path, whether made to or because its
// connection ended: its subscriber hands the group back (`delivery::Joined::remove`).
//
// - `group`: a group's members, metadata, per-thread counts and watchers, under one lock.
// - `presence`: members and the events watchers get.
// - `history`: the broadcasts a group keeps, and positions in them.
// - `recovery`: which groups keep history; broadcasts at a position, joins after one.
// - `broker`: where history lives and whom changes and broadcasts are told to: this
//   process, or a cluster, so that groups span nodes.

mod broker;
mod group;
mod history;
mod presence;
mod recovery;
mod shared;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[cfg(any(test, feature = "cluster"))]
pub(crate) use broker::Broker;
#[cfg(feature = "cluster")]
pub(crate) use broker::Build;
#[cfg(feature = "cluster")]
pub(crate) use history::note_recovery;
pub use history::{
    HistoryError, HistoryLimits, Position, Published, Recovered, RecoveryError, Since, Unrecoverable,
};
pub use presence::{Member, PresenceChange, PresenceEvent};
#[cfg(feature = "cluster")]
pub(crate) use recovery::Answer;
pub use recovery::HistoryFuture;

use group::Removed;
pub(crate) use shared::Shared;

use crate::delivery::{Joined, Op, ThreadInbox};

use crate::connection::ConnectionId;
use crate::error::WriteError;
use crate::prepared::PreparedMessage;

/// Named groups of connections: join, leave, broadcast, presence.
///
/// One `Groups` is shared by every worker thread (clones share the same groups); make it
/// before the server and move a clone into each worker actor that needs it.
///
/// - **Membership.** A connection joins by its [`ConnectionId`], with optional metadata
///   (a user name, a JSON object), and leaves by [`leave`](Self::leave) or when it ends:
///   before its `MessageDisconnect` is sent, it has left every group.
/// - **Broadcast.** [`broadcast`](Self::broadcast) encodes the message once (a
///   [`PreparedMessage`]) and hands it to each worker thread with members once; on that
///   thread it reaches every member, which writes it on its next turn. It never waits
///   for a member, and returns how many members it was handed to.
/// - **Order.** Broadcasts from one publisher (one actor, one thread) reach each member in
///   the order they were made, and so do joins and leaves: a member gets every broadcast
///   made after its `join` returned and none made after its `leave` returned. A direct
///   [`ConnectionId::send`] takes another path and is not ordered with broadcasts; use
///   [`send_to`](Self::send_to) for a message that must keep its place among them.
/// - **Slow members.** A broadcast meets each member's own write bounds: a member whose
///   peer does not read is closed by its slow-consumer policy (see
///   [`ConnectionSettings`](crate::ConnectionSettings)) while the others go on. A thread
///   whose connections cannot keep up with the publisher at all (more than
///   [`with_thread_backlog`](Self::with_thread_backlog) bytes of broadcasts waiting) is
///   skipped, is not counted as reached, and a warning is logged.
///
/// ```no_run
/// use actix::prelude::*;
/// use actix_meta_websocket::*;
///
/// struct Room { groups: Groups }
/// impl Actor for Room { type Context = Context<Self>; }
/// impl Handler<MessageConnect> for Room {
///     type Result = ();
///     fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
///         let _ = self.groups.join("lobby", &m.id);
///     }
/// }
/// impl Handler<WsMessage> for Room {
///     type Result = ();
///     fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
///         if let Some(text) = m.as_text() {
///             let reached = self.groups.broadcast_except("lobby", text, &m.id);
///             tracing::debug!(reached, "said");
///         }
///     }
/// }
/// impl Handler<MessageDisconnect> for Room {
///     type Result = ();
///     fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} // it has left already
/// }
/// ```
///
/// Asking about groups, and leaving one, from the same kind of actor:
///
/// ```no_run
/// # use actix_meta_websocket::*;
/// fn command(groups: &Groups, id: &ConnectionId, line: &str) {
///     match line {
///         "/who" => {
///             let names: Vec<String> = groups.members("lobby").iter().map(|m| m.meta.to_string()).collect();
///             id.send(format!("{} here: {}", groups.count("lobby"), names.join(", ")));
///         }
///         "/rooms" => id.send(format!("open: {:?}, yours: {:?}", groups.names(), groups.groups_of(id))),
///         "/quiet" if groups.contains("lobby", id) => {
///             groups.leave("lobby", id);
///             // Kept in order with the lobby's broadcasts, unlike `id.send`.
///             groups.send_to([id], "you left the lobby");
///         }
///         "/where" => id.send(match groups.position("lobby") {
///             Some(p) => format!("the lobby's history is at {p}"),
///             None => "the lobby keeps no history".to_string(),
///         }),
///         _ => {}
///     }
/// }
/// let groups = Groups::new(); // make one before the server; clone it into each worker
/// # let _ = (command, groups);
/// ```
#[derive(Clone, Default)]
pub struct Groups {
    shared: Arc<Shared>,
}

impl Groups {
    /// No groups yet; groups come into being with their first member or watcher and go
    /// with their last.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how many bytes of broadcasts may wait for one worker thread before further
    /// broadcasts skip it (default 64 MiB). Only a thread whose connections cannot keep
    /// up with the publishers at all gets there. These are the same groups, with the new
    /// bound for every clone of them (a cluster's groups too).
    ///
    /// ```
    /// let groups = actix_meta_websocket::Groups::new().with_thread_backlog(8 << 20);
    /// assert_eq!(groups.thread_backlog(), 8 << 20);
    /// ```
    pub fn with_thread_backlog(self, bytes: usize) -> Self {
        self.shared.thread_backlog.store(bytes, Ordering::Relaxed);
        self
    }

    /// The bound set by [`with_thread_backlog`](Self::with_thread_backlog).
    pub fn thread_backlog(&self) -> usize {
        self.shared.thread_backlog()
    }

    /// Groups whose broadcasts and history `broker` carries, and which it tells of every
    /// change, in the order they are made.
    #[cfg(any(test, feature = "cluster"))]
    pub(crate) fn with_broker(broker: Arc<dyn Broker>) -> Self {
        Groups { shared: Arc::new(Shared { broker, ..Shared::default() }) }
    }

    /// Hands `msg`, which came from another node, to this node's members of `group`.
    #[cfg(feature = "cluster")]
    pub(crate) fn deliver_here(&self, group: &str, msg: &PreparedMessage) -> usize {
        self.publish_here(group, msg, None)
    }

    /// Adds `id` to `group` without metadata; `Ok(true)` if it was not a member. It is a
    /// member here at once; in a cluster, broadcasts from other nodes reach it once this
    /// node listens to the group, a moment later. For a group with history,
    /// [`join_since`](Self::join_since) with [`Since::Now`] is the join to await: it
    /// resolves once the member gets every later broadcast, with the position it starts
    /// after.
    ///
    /// ```no_run
    /// # fn demo(groups: &actix_meta_websocket::Groups, id: &actix_meta_websocket::ConnectionId) {
    /// groups.join("lobby", id).ok(); // Err only once the connection has ended
    /// # }
    /// ```
    pub fn join(&self, group: &str, id: &ConnectionId) -> Result<bool, WriteError> {
        self.join_with(group, id, "")
    }

    /// Adds `id` to `group` with `meta`, or replaces its metadata if it is a member
    /// already (`Ok(false)`, and watchers get [`PresenceChange::Updated`]).
    ///
    /// ```no_run
    /// # fn demo(groups: &actix_meta_websocket::Groups, id: &actix_meta_websocket::ConnectionId) {
    /// groups.join_with("room:42", id, r#"{"name":"ada"}"#).ok();
    /// # }
    /// ```
    pub fn join_with(
        &self,
        group: &str,
        id: &ConnectionId,
        meta: impl Into<Arc<str>>,
    ) -> Result<bool, WriteError> {
        let meta = meta.into();
        let mut fresh = false;
        let joined = id.subscriber().join(|| loop {
            let g = self.shared.get_or_make(group);
            match g.join(id, meta.clone()) {
                Err(Removed) => continue,
                Ok(new) => {
                    fresh = new;
                    // Under the connection's memberships lock: the broker sees one
                    // connection's joins and leaves in the order they were made.
                    self.shared.broker.joined(&g.name, id, &meta, new);
                    return new.then_some(g as Arc<dyn Joined>);
                }
            }
        });
        joined.map_err(|_| WriteError::Closed)?;
        Ok(fresh)
    }

    /// Takes `id` out of `group`; whether it was a member.
    pub fn leave(&self, group: &str, id: &ConnectionId) -> bool {
        // The group a connection is in is never dropped: if `group` names another now, the
        // connection is not in it.
        self.shared.get(group).is_some_and(|g| id.subscriber().leave(g.key()))
    }

    /// Writes `msg` to every member of `group`; returns how many members it was handed
    /// to. `msg` is a [`PreparedMessage`] or converts to one (`&str` and `String` as
    /// text, `Vec<u8>` and `Bytes` as binary).
    ///
    /// ```no_run
    /// # use actix_meta_websocket::{Groups, PreparedMessage};
    /// # fn demo(groups: &Groups) {
    /// groups.broadcast("prices", r#"{"ACME":101.5}"#);
    /// let frame = PreparedMessage::binary(vec![1, 2, 3]); // to send it to several groups
    /// groups.broadcast("a", &frame);
    /// groups.broadcast("b", &frame);
    /// # }
    /// ```
    pub fn broadcast(&self, group: &str, msg: impl Into<PreparedMessage>) -> usize {
        self.send_out(group, &msg.into(), None)
    }

    /// Like [`broadcast`](Self::broadcast), but not to `except` (typically the sender).
    pub fn broadcast_except(
        &self,
        group: &str,
        msg: impl Into<PreparedMessage>,
        except: &ConnectionId,
    ) -> usize {
        self.send_out(group, &msg.into(), Some(except))
    }

    fn send_out(&self, group: &str, msg: &PreparedMessage, except: Option<&ConnectionId>) -> usize {
        self.shared.broker.broadcast(self, group, msg, except, self.shared.rules.limits(group))
    }

    /// Hands `msg` to this node's members of `group` but `except`; how many it reached.
    pub(crate) fn publish_here(
        &self,
        group: &str,
        msg: &PreparedMessage,
        except: Option<&ConnectionId>,
    ) -> usize {
        let Some(g) = self.shared.get(group) else { return 0 };
        let reach = g.deliver(msg, except, self.shared.thread_backlog());
        self.note_skipped(group, reach.skipped);
        reach.reached
    }

    fn note_skipped(&self, group: &str, skipped: usize) {
        if skipped > 0 {
            tracing::warn!(group, skipped, "broadcast skipped members on threads too far behind");
        }
    }

    /// Writes `msg` to each of `ids`, in the same order as broadcasts (see the type's
    /// docs); returns how many it was handed to (those not closing). Each thread is
    /// crossed once.
    pub fn send_to<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a ConnectionId>,
        msg: impl Into<PreparedMessage>,
    ) -> usize {
        let msg = msg.into();
        let mut by_thread: Vec<(Arc<ThreadInbox>, Vec<_>)> = Vec::new();
        for id in ids {
            let member = id.subscriber();
            if member.is_closed() {
                continue;
            }
            match by_thread.iter_mut().find(|(t, _)| Arc::ptr_eq(t, member.thread())) {
                Some((_, list)) => list.push(member.clone()),
                None => by_thread.push((member.thread().clone(), vec![member.clone()])),
            }
        }
        let (mut reached, mut skipped) = (0, 0);
        for (thread, members) in by_thread {
            if thread.backlog() > self.shared.thread_backlog() {
                skipped += members.len();
                continue;
            }
            reached += members.len();
            thread.push(Op::DeliverTo { members, msg: msg.clone() });
        }
        if skipped > 0 {
            tracing::warn!(skipped, "send_to skipped connections on threads too far behind");
        }
        reached
    }

    /// The members of `group` and their metadata, in the order they joined.
    pub fn members(&self, group: &str) -> Vec<Member> {
        self.shared.get(group).map(|g| g.members()).unwrap_or_default()
    }

    /// How many members `group` has.
    pub fn count(&self, group: &str) -> usize {
        self.shared.get(group).map_or(0, |g| g.count())
    }

    /// Whether `id` is a member of `group`.
    pub fn contains(&self, group: &str, id: &ConnectionId) -> bool {
        self.shared.get(group).is_some_and(|g| g.contains(id.seq()))
    }

    /// The groups of this `Groups` that `id` is in.
    pub fn groups_of(&self, id: &ConnectionId) -> Vec<Arc<str>> {
        let mine = self.shared.key;
        id.subscriber().groups(|g| (g.owner() == mine).then(|| g.name().clone()))
    }

    /// The names of the groups that have members or watchers.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.shared.lock().keys().cloned().collect()
    }
}

impl fmt::Debug for Groups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Groups").field("groups", &self.shared.lock().len()).finish()
    }
}

/// Ids of this thread whose actors never run: enough for bookkeeping.
#[cfg(test)]
pub(crate) fn test_ids(n: usize) -> Vec<ConnectionId> {
    use actix::AsyncContext;
    (0..n)
        .map(|i| {
            let ctx = actix::Context::<crate::connection::WsConnection>::new();
            ConnectionId::new(i as u64 + 1, ctx.address(), 0, None)
        })
        .collect()
}
