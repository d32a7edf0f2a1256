//! One group: its members with their metadata, how many live on each thread, and who
//! watches it. Changes and broadcasts are made under the group's lock and handed to the
//! thread inboxes under it, so every inbox sees them in the order the lock saw them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use actix::Recipient;

use super::history::{History, HistoryLimits, Position, Since, Unrecoverable};
use super::presence::{Member, PresenceChange, PresenceEvent};
use super::Shared;
use crate::connection::ConnectionId;
use crate::delivery::{lock, Joined, Leaving, Op, ThreadInbox};
use crate::prepared::PreparedMessage;
use crate::watchers::Watchers;

pub(crate) struct Group {
    /// Never reused in the process: names the group to the thread inboxes.
    key: u64,
    pub(super) name: Arc<str>,
    /// The `Groups` it belongs to: told when the group empties, and of its changes.
    owner: Weak<Shared>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    members: HashMap<u64, Entry>,
    /// The threads with members, and how many each has.
    threads: Vec<(Arc<ThreadInbox>, usize)>,
    watchers: Watchers<PresenceEvent>,
    /// Taken out of the registry: a join that finds it so looks the name up again.
    removed: bool,
    joins: u64,
    /// The broadcasts kept, if the group keeps history (on one node; a cluster keeps
    /// history in Redis).
    history: Option<History>,
    /// In a cluster, the newest stored broadcast this node has handed on.
    seen: Option<Position>,
}

struct Entry {
    member: Member,
    /// Join order, for listing.
    order: u64,
}

/// The group was dropped from the registry between its lookup and its lock.
pub(super) struct Removed;

/// What a broadcast did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Reach {
    pub(super) reached: usize,
    pub(super) skipped: usize,
}

/// Why a join with recovery did not happen.
pub(super) enum NotJoined {
    Removed,
    NoHistory,
    Unrecoverable(Unrecoverable, Position),
}

/// Close code for members whose thread was too far behind to be handed a broadcast of a
/// group with history: they reconnect and recover from history instead of missing it.
const LAGGING: u16 = 1013;

impl Group {
    pub(super) fn new(key: u64, name: Arc<str>, owner: Weak<Shared>) -> Self {
        Group { key, name, owner, state: Mutex::default() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Adds `id` or replaces its metadata; `Ok(true)` when it is new.
    pub(super) fn join(&self, id: &ConnectionId, meta: Arc<str>) -> Result<bool, Removed> {
        let mut s = self.lock();
        if s.removed {
            return Err(Removed);
        }
        Ok(s.add(self, id, meta))
    }

    /// Adds `id` after handing it what history holds `since` (in the same step, so that
    /// the next broadcast follows the replay); `Ok((true, ..))` when it is new. A member
    /// already in the group only gets its metadata replaced: it has had every broadcast.
    pub(super) fn join_since(
        &self,
        id: &ConnectionId,
        meta: Arc<str>,
        since: Since,
    ) -> Result<(bool, usize, Position), NotJoined> {
        let mut s = self.lock();
        if s.removed {
            return Err(NotJoined::Removed);
        }
        let Some(now) = s.history.as_ref().map(History::position) else { return Err(NotJoined::NoHistory) };
        if s.members.contains_key(&id.seq()) {
            s.add(self, id, meta);
            return Ok((false, 0, now));
        }
        let history = s.history.as_mut().ok_or(NotJoined::NoHistory)?;
        let replay =
            history.replay(since, Instant::now()).map_err(|why| NotJoined::Unrecoverable(why, now))?;
        s.add(self, id, meta);
        let member = id.subscriber();
        for msg in &replay {
            member.thread().push(Op::DeliverTo { members: vec![member.clone()], msg: msg.clone() });
        }
        Ok((true, replay.len(), now))
    }

    /// Adds `id` after handing it `replay` (read from a cluster's history), in the same
    /// step; `Ok(true)` when it is new. A member already in the group gets no replay.
    #[cfg(feature = "cluster")]
    pub(super) fn join_replayed(
        &self,
        id: &ConnectionId,
        meta: Arc<str>,
        replay: &[PreparedMessage],
    ) -> Result<bool, Removed> {
        let mut s = self.lock();
        if s.removed {
            return Err(Removed);
        }
        if !s.add(self, id, meta) {
            return Ok(false);
        }
        let member = id.subscriber();
        for msg in replay {
            member.thread().push(Op::DeliverTo { members: vec![member.clone()], msg: msg.clone() });
        }
        Ok(true)
    }

    /// [`deliver`](Self::deliver), but not to the member numbered `except`.
    #[cfg(feature = "cluster")]
    pub(super) fn deliver_except_seq(
        &self,
        msg: &PreparedMessage,
        except: Option<u64>,
        limit: usize,
    ) -> Reach {
        let mut s = self.lock();
        let except = except.and_then(|seq| s.members.get(&seq)).map(|e| e.member.id.clone());
        s.hand_on(self.key, msg, except.as_ref(), limit)
    }

    /// Starts keeping history with `limits` (if it keeps none yet) in a new epoch.
    pub(super) fn keep_history(&self, limits: HistoryLimits, epoch: u64) {
        let mut s = self.lock();
        if s.history.is_none() {
            s.history = Some(History::new(limits, epoch));
        }
    }

    /// Where the group's history stands, if it keeps one here; else the newest stored
    /// broadcast handed on here.
    pub(super) fn position(&self) -> Option<Position> {
        let s = self.lock();
        s.history.as_ref().map(History::position).or(s.seen)
    }

    /// A stored broadcast at `at` is handed on here (history in Redis).
    #[cfg(feature = "cluster")]
    pub(super) fn saw(&self, at: Position) {
        let mut s = self.lock();
        if s.seen.is_none_or(|p| p.epoch != at.epoch || p.offset < at.offset) {
            s.seen = Some(at);
        }
    }

    /// The broadcast `build` makes for the next position: kept, and handed on like
    /// [`deliver`](Self::deliver); `Ok(None)` if the group keeps no history, `Err` if it
    /// was taken out of the registry (the caller looks the name up again: a broadcast kept
    /// in a retired group would be lost with it).
    pub(super) fn publish(
        &self,
        build: impl FnOnce(&Position) -> PreparedMessage,
        except: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Option<(Position, Reach)>, Removed> {
        let mut s = self.lock();
        if s.removed {
            return Err(Removed);
        }
        let Some(history) = s.history.as_ref() else { return Ok(None) };
        let at = history.next();
        let msg = build(&at);
        Ok(Some((at, s.hand_on(self.key, &msg, except, limit))))
    }

    /// Removes the member `seq`; whether it was one.
    fn leave(&self, seq: u64, change: PresenceChange) -> bool {
        let mut s = self.lock();
        let Some(entry) = s.members.remove(&seq) else { return false };
        crate::telemetry::members(-1);
        let thread = entry.member.id.subscriber().thread();
        if let Some(i) = s.threads.iter().position(|(t, _)| Arc::ptr_eq(t, thread)) {
            s.threads[i].1 -= 1;
            if s.threads[i].1 == 0 {
                s.threads.swap_remove(i);
            }
        }
        thread.push(Op::Leave { group: self.key, seq });
        s.tell(&self.name, entry.member, change);
        true
    }

    /// Hands `msg` to every thread with members (but `except`), once each; a thread
    /// already `limit` bytes behind is skipped and its members counted as such. A group
    /// with history keeps it at the next position.
    pub(super) fn deliver(
        &self,
        msg: &PreparedMessage,
        except: Option<&ConnectionId>,
        limit: usize,
    ) -> Reach {
        self.lock().hand_on(self.key, msg, except, limit)
    }

    /// Adds `watcher`, first telling it every member there now (under the lock, so it
    /// misses no change and sees none twice).
    pub(super) fn watch(&self, watcher: Recipient<PresenceEvent>) -> Result<(), Removed> {
        let mut s = self.lock();
        if s.removed {
            return Err(Removed);
        }
        for member in s.in_join_order() {
            let event = PresenceEvent { group: self.name.clone(), member, change: PresenceChange::Present };
            watcher.do_send(event);
        }
        s.watchers.add(watcher);
        Ok(())
    }

    /// Members in the order they joined.
    pub(super) fn members(&self) -> Vec<Member> {
        self.lock().in_join_order()
    }

    pub(super) fn count(&self) -> usize {
        self.lock().members.len()
    }

    pub(super) fn contains(&self, seq: u64) -> bool {
        self.lock().members.contains_key(&seq)
    }

    /// Marks the group removed if nobody is in it or watches it; the registry holds its
    /// own lock around this.
    pub(super) fn retire_if_unused(&self) -> bool {
        let mut s = self.lock();
        let watched = s.watchers.drop_stopped();
        let kept = s.history.as_mut().is_some_and(|h| !h.is_empty(Instant::now()));
        if s.removed || !s.members.is_empty() || watched || kept {
            return false;
        }
        s.removed = true;
        crate::telemetry::groups(-1);
        true
    }
}

/// How a member leaves, whether made to (`Groups::leave`) or by its connection's end: one
/// path, taken under the connection's memberships lock.
impl Joined for Group {
    fn key(&self) -> u64 {
        self.key
    }

    fn owner(&self) -> u64 {
        self.owner.upgrade().map_or(0, |o| o.key)
    }

    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn remove(self: Arc<Self>, seq: u64, why: Leaving) {
        let change = match why {
            Leaving::Left => PresenceChange::Left,
            Leaving::Ended => PresenceChange::Disconnected,
        };
        if !self.leave(seq, change) {
            return;
        }
        if let Some(owner) = self.owner.upgrade() {
            owner.broker.changed(&self.name, seq, &Arc::from(""), change);
            owner.drop_if_unused(&self);
        }
    }
}

impl State {
    /// Adds `id` or replaces its metadata; whether it is new.
    fn add(&mut self, group: &Group, id: &ConnectionId, meta: Arc<str>) -> bool {
        let member = Member { id: id.clone(), meta };
        if let Some(entry) = self.members.get_mut(&id.seq()) {
            entry.member.meta = member.meta.clone();
            self.tell(&group.name, member, PresenceChange::Updated);
            return false;
        }
        let member_here = id.subscriber();
        let thread = member_here.thread();
        match self.threads.iter_mut().find(|(t, _)| Arc::ptr_eq(t, thread)) {
            Some((_, n)) => *n += 1,
            None => self.threads.push((thread.clone(), 1)),
        }
        thread.push(Op::Join { group: group.key, member: member_here.clone() });
        self.joins += 1;
        let order = self.joins;
        self.members.insert(id.seq(), Entry { member: member.clone(), order });
        crate::telemetry::members(1);
        self.tell(&group.name, member, PresenceChange::Joined);
        true
    }

    /// Keeps `msg` if the group has history, and hands it to every thread with members
    /// (see `Group::deliver`).
    fn hand_on(
        &mut self,
        key: u64,
        msg: &PreparedMessage,
        except: Option<&ConnectionId>,
        limit: usize,
    ) -> Reach {
        if let Some(history) = self.history.as_mut() {
            history.append(msg.clone(), Instant::now());
        }
        let except = except.filter(|id| self.members.contains_key(&id.seq()));
        let mut reach = Reach::default();
        for (thread, n) in &self.threads {
            let mut n = *n;
            if except.is_some_and(|id| Arc::ptr_eq(id.subscriber().thread(), thread)) {
                n -= 1;
            }
            if n == 0 {
                continue;
            }
            if thread.backlog() > limit {
                reach.skipped += n;
                if self.history.is_some() {
                    self.close_lagging(thread);
                }
                continue;
            }
            thread.push(Op::Deliver { group: key, msg: msg.clone(), except: except.map(|id| id.seq()) });
            reach.reached += n;
        }
        crate::telemetry::broadcast(reach.reached, reach.skipped);
        reach
    }

    /// A thread too far behind misses a broadcast of a group with history: its members
    /// there are closed (1013) rather than left with a gap they would not know of; their
    /// clients reconnect and recover from history.
    fn close_lagging(&self, thread: &Arc<ThreadInbox>) {
        for entry in self.members.values() {
            let id = &entry.member.id;
            if Arc::ptr_eq(id.subscriber().thread(), thread) {
                // Nothing more is handed to it: what it gets ends before the broadcast missed.
                id.close_before_gap(
                    LAGGING.into(),
                    "too far behind the group's broadcasts; recover from history",
                );
            }
        }
    }

    fn in_join_order(&self) -> Vec<Member> {
        let mut entries: Vec<&Entry> = self.members.values().collect();
        entries.sort_unstable_by_key(|e| e.order);
        entries.into_iter().map(|e| e.member.clone()).collect()
    }

    /// Tells the watchers, dropping those that have stopped.
    fn tell(&mut self, group: &Arc<str>, member: Member, change: PresenceChange) {
        if !self.watchers.is_empty() {
            self.watchers.tell(PresenceEvent { group: group.clone(), member, change });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread whose connections cannot keep up is skipped, not queued for without end,
    /// and counted as not reached; once it has caught up it is served again.
    #[actix_rt::test]
    async fn a_thread_past_its_backlog_is_skipped_and_not_counted() {
        let ids = crate::groups::test_ids(3);
        let g = Arc::new(Group::new(1, "g".into(), Weak::new()));
        for id in &ids {
            assert!(matches!(g.join(id, "".into()), Ok(true)));
        }
        let msg = PreparedMessage::binary(vec![0u8; 2000]);
        let limit = 1000;
        let first = g.deliver(&msg, Some(&ids[0]), limit);
        assert_eq!((first.reached, first.skipped), (2, 0));
        // The inbox's task has not run (this task has not yielded): 2 KiB wait for it.
        let second = g.deliver(&msg, None, limit);
        assert_eq!((second.reached, second.skipped), (0, 3));
        let thread = ids[0].subscriber().thread().clone();
        for _ in 0..10 {
            if thread.backlog() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let third = g.deliver(&msg, None, limit);
        assert_eq!((third.reached, third.skipped), (3, 0));
        assert!(g.leave(ids[1].seq(), PresenceChange::Left));
        assert!(!g.leave(ids[1].seq(), PresenceChange::Left));
        g.clone().remove(ids[0].seq(), Leaving::Ended); // without an owner: the group alone
        assert_eq!(g.members().iter().map(|m| m.id.seq()).collect::<Vec<_>>(), [3]);
    }
}
