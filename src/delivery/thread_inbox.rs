//! A worker thread's inbox: broadcasts cross to a thread once, as one entry here, and the
//! inbox's task hands them to that thread's members.
//!
//! Every thread that runs connections has one inbox, made with its first connection; a
//! connection's subscriber knows it. The task keeps, for each group (by key), the list of
//! the thread's members. Joins, leaves and deliveries go through the same inbox, so a
//! member joined before a broadcast gets it and a member that left does not.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use super::subscriber::{lock, Subscriber};
use crate::prepared::PreparedMessage;

/// Member deliveries the task makes before it lets its thread's connections run: they
/// write what it handed them in the meantime, several broadcasts in one write.
const BUDGET: usize = 16 * 1024;

/// Members the task wakes per turn. It wakes the rest on its next turns, after these have
/// written, taking in what reached the thread meanwhile: so a broadcast that arrives
/// while a round of writes is under way joins the writes not yet made, instead of
/// waiting for a round of its own (a member woken late takes both in one write).
const WAKE_CHUNK: usize = 16;

/// Bytes an inbox entry is counted for besides its message's body.
const ENTRY_COST: usize = 64;

/// One thread's inbox, shared with every other thread.
pub(crate) struct ThreadInbox {
    inbox: Mutex<Inbox>,
    waker: AtomicWaker,
    /// Bytes of broadcasts waiting in the inbox, for the backlog bound.
    queued: AtomicUsize,
    /// Its task runs: false once the thread's runtime has dropped it.
    alive: AtomicBool,
}

#[derive(Default)]
struct Inbox {
    ops: VecDeque<Op>,
    /// A wake-up stands: the task drains the inbox before it sleeps again.
    scheduled: bool,
}

/// What the other threads ask of an inbox. Groups are named by a key that is never
/// reused in the process, so a group dropped and made again under the same name starts
/// empty here too, and groups of different owners never meet.
pub(crate) enum Op {
    Join { group: u64, member: Arc<Subscriber> },
    Leave { group: u64, seq: u64 },
    Deliver { group: u64, msg: PreparedMessage, except: Option<u64> },
    DeliverTo { members: Vec<Arc<Subscriber>>, msg: PreparedMessage },
}

impl Op {
    fn cost(&self) -> usize {
        match self {
            Op::Deliver { msg, .. } | Op::DeliverTo { msg, .. } => msg.body().len() + ENTRY_COST,
            Op::Join { .. } | Op::Leave { .. } => 0,
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<ThreadInbox>>> = const { RefCell::new(None) };
}

impl ThreadInbox {
    /// This thread's inbox, made (and its task spawned) on first use; an inbox whose
    /// runtime has gone is replaced.
    pub(crate) fn current() -> Arc<ThreadInbox> {
        CURRENT.with(|current| {
            let mut current = current.borrow_mut();
            if let Some(inbox) = current.as_ref().filter(|h| h.alive.load(Ordering::Acquire)) {
                return inbox.clone();
            }
            let inbox = Arc::new(ThreadInbox {
                inbox: Mutex::default(),
                waker: AtomicWaker::new(),
                queued: AtomicUsize::new(0),
                alive: AtomicBool::new(true),
            });
            if tokio::runtime::Handle::try_current().is_ok() {
                actix::spawn(InboxTask {
                    inbox: inbox.clone(),
                    local: HashMap::new(),
                    taken: VecDeque::new(),
                    to_wake: VecDeque::new(),
                    handed_out: 0,
                });
            } else {
                // No runtime to deliver on: nothing on this thread can run a connection.
                inbox.alive.store(false, Ordering::Release);
            }
            *current = Some(inbox.clone());
            inbox
        })
    }

    /// Bytes of broadcasts waiting for this thread.
    pub(crate) fn backlog(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub(crate) fn push(&self, op: Op) {
        self.queued.fetch_add(op.cost(), Ordering::Relaxed);
        let wake = {
            let mut inbox = self.lock();
            inbox.ops.push_back(op);
            !std::mem::replace(&mut inbox.scheduled, true)
        };
        if wake {
            self.waker.wake();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inbox> {
        lock(&self.inbox)
    }
}

/// A group's members on this thread; the index finds a member's place for removal.
#[derive(Default)]
struct LocalGroup {
    members: Vec<Arc<Subscriber>>,
    at: HashMap<u64, usize>,
}

impl LocalGroup {
    fn join(&mut self, member: Arc<Subscriber>) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.at.entry(member.seq()) {
            e.insert(self.members.len());
            self.members.push(member);
        }
    }

    fn leave(&mut self, seq: u64) {
        let Some(i) = self.at.remove(&seq) else { return };
        self.members.swap_remove(i);
        if let Some(moved) = self.members.get(i) {
            self.at.insert(moved.seq(), i);
        }
    }
}

/// The inbox's task: drains the inbox in order, a budget of deliveries at a time, and
/// wakes the members it handed something, a chunk at a time.
struct InboxTask {
    inbox: Arc<ThreadInbox>,
    local: HashMap<u64, LocalGroup>,
    /// Taken from the inbox under one lock, not yet done.
    taken: VecDeque<Op>,
    /// Members with something in their queue, not woken yet, in the order they got it.
    to_wake: VecDeque<Arc<Subscriber>>,
    /// Bytes of broadcasts handed out since the last time every member was woken: still
    /// the thread's backlog, since the queues of members not yet woken hold them.
    handed_out: usize,
}

impl Drop for InboxTask {
    fn drop(&mut self) {
        self.inbox.alive.store(false, Ordering::Release);
    }
}

impl Future for InboxTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.inbox.waker.register(cx.waker());
        let drained = this.drain();
        for member in this.to_wake.drain(..WAKE_CHUNK.min(this.to_wake.len())) {
            member.wake();
        }
        if this.to_wake.is_empty() {
            this.inbox.queued.fetch_sub(std::mem::take(&mut this.handed_out), Ordering::Relaxed);
        }
        if !drained || !this.to_wake.is_empty() {
            // Its next turn comes after the tasks just woken.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl InboxTask {
    /// Does waiting ops in order, up to a budget of deliveries; true when none are left.
    fn drain(&mut self) -> bool {
        let mut done = 0;
        loop {
            if self.taken.is_empty() {
                let mut inbox = self.inbox.lock();
                if inbox.ops.is_empty() {
                    inbox.scheduled = false;
                    return true;
                }
                std::mem::swap(&mut self.taken, &mut inbox.ops);
            }
            while let Some(op) = self.taken.pop_front() {
                self.handed_out += op.cost();
                done += self.run(op);
                if done >= BUDGET {
                    return false;
                }
            }
        }
    }

    /// Does one op; returns the deliveries it made.
    fn run(&mut self, op: Op) -> usize {
        match op {
            Op::Join { group, member } => {
                self.local.entry(group).or_default().join(member);
                1
            }
            Op::Leave { group, seq } => {
                if let Some(g) = self.local.get_mut(&group) {
                    g.leave(seq);
                    if g.members.is_empty() {
                        self.local.remove(&group);
                    }
                }
                1
            }
            Op::Deliver { group, msg, except } => {
                let Some(g) = self.local.get(&group) else { return 1 };
                for member in g.members.iter().filter(|m| Some(m.seq()) != except) {
                    hand(&mut self.to_wake, member, &msg);
                }
                g.members.len()
            }
            Op::DeliverTo { members, msg } => {
                for member in &members {
                    hand(&mut self.to_wake, member, &msg);
                }
                members.len()
            }
        }
    }
}

/// Hands `msg` to `member`; a member whose queue was empty is to be woken.
fn hand(to_wake: &mut VecDeque<Arc<Subscriber>>, member: &Arc<Subscriber>, msg: &PreparedMessage) {
    if member.deliver(msg) {
        to_wake.push_back(member.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribers(n: u64) -> Vec<Arc<Subscriber>> {
        (1..=n).map(Subscriber::new).collect()
    }

    #[actix_rt::test]
    async fn a_local_group_keeps_its_index_through_swap_removals() {
        let ids = subscribers(5);
        let mut g = LocalGroup::default();
        for id in &ids {
            g.join(id.clone());
        }
        g.join(ids[0].clone()); // twice: once
        assert_eq!(g.members.len(), 5);
        for seq in [1, 5, 3] {
            g.leave(seq);
        }
        g.leave(42); // not a member
        let mut left: Vec<u64> = g.members.iter().map(|id| id.seq()).collect();
        left.sort_unstable();
        assert_eq!(left, [2, 4]);
        for (i, id) in g.members.iter().enumerate() {
            assert_eq!(g.at[&id.seq()], i);
        }
        g.leave(2);
        g.leave(4);
        assert!(g.members.is_empty() && g.at.is_empty());
    }

    #[actix_rt::test]
    async fn the_backlog_counts_broadcasts_until_they_are_delivered() {
        let inbox = ThreadInbox::current();
        let msg = PreparedMessage::binary(vec![0u8; 1000]);
        inbox.push(Op::Deliver { group: 1, msg: msg.clone(), except: None });
        inbox.push(Op::Join { group: 1, member: subscribers(1).remove(0) });
        assert_eq!(inbox.backlog(), 1000 + ENTRY_COST);
        // The inbox's task runs when this one yields.
        for _ in 0..10 {
            if inbox.backlog() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(inbox.backlog(), 0);
    }
}
