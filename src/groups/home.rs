//! A worker thread's delivery point: broadcasts cross to a thread once, as one entry in
//! its home's inbox, and the home's task hands them to that thread's members.
//!
//! Every thread that runs connections has one home, made with its first connection; a
//! connection's id knows its home. The home keeps, for each group, the list of its own
//! members. Joins, leaves and deliveries go through the same inbox, so a member joined
//! before a broadcast gets it and a member that left does not.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use crate::{ConnectionId, PreparedMessage};

/// Member deliveries a home makes before it lets its thread's connections run: they
/// write what it handed them in the meantime, several broadcasts in one write.
const BUDGET: usize = 16 * 1024;

/// Members a home wakes per turn. It wakes the rest on its next turns, after these have
/// written, taking in what reached the thread meanwhile: so a broadcast that arrives
/// while a round of writes is under way joins the writes not yet made, instead of
/// waiting for a round of its own (a member woken late takes both in one write).
const WAKE_CHUNK: usize = 16;

/// Bytes an inbox entry is counted for besides its message's body.
const ENTRY_COST: usize = 64;

/// One thread's inbox, shared with every other thread.
pub(crate) struct Home {
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

/// What the other threads ask of a home. Groups are named by a number that is never
/// reused, so a group dropped and made again under the same name starts empty here too.
pub(crate) enum Op {
    Join { group: u64, id: ConnectionId },
    Leave { group: u64, seq: u64 },
    Deliver { group: u64, msg: PreparedMessage, except: Option<u64> },
    DeliverTo { ids: Vec<ConnectionId>, msg: PreparedMessage },
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
    static CURRENT: RefCell<Option<Arc<Home>>> = const { RefCell::new(None) };
}

impl Home {
    /// This thread's home, made (and its task spawned) on first use; a home whose runtime
    /// has gone is replaced.
    pub(crate) fn current() -> Arc<Home> {
        CURRENT.with(|current| {
            let mut current = current.borrow_mut();
            if let Some(home) = current.as_ref().filter(|h| h.alive.load(Ordering::Acquire)) {
                return home.clone();
            }
            let home = Arc::new(Home {
                inbox: Mutex::default(),
                waker: AtomicWaker::new(),
                queued: AtomicUsize::new(0),
                alive: AtomicBool::new(true),
            });
            if tokio::runtime::Handle::try_current().is_ok() {
                actix::spawn(Delivery {
                    home: home.clone(),
                    local: HashMap::new(),
                    taken: VecDeque::new(),
                    to_wake: VecDeque::new(),
                    held: 0,
                });
            } else {
                // No runtime to deliver on: nothing on this thread can run a connection.
                home.alive.store(false, Ordering::Release);
            }
            *current = Some(home.clone());
            home
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
        // The inbox is a plain queue: still whole after a panic elsewhere.
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A group's members on this thread; the index finds a member's place for removal.
#[derive(Default)]
struct LocalGroup {
    members: Vec<ConnectionId>,
    at: HashMap<u64, usize>,
}

impl LocalGroup {
    fn join(&mut self, id: ConnectionId) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.at.entry(id.seq()) {
            e.insert(self.members.len());
            self.members.push(id);
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

/// The home's task: drains the inbox in order, a budget of deliveries at a time, and
/// wakes the members it handed something, a chunk at a time.
struct Delivery {
    home: Arc<Home>,
    local: HashMap<u64, LocalGroup>,
    /// Taken from the inbox under one lock, not yet done.
    taken: VecDeque<Op>,
    /// Members with something in their lane, not woken yet, in the order they got it.
    to_wake: VecDeque<ConnectionId>,
    /// Bytes of broadcasts handed out since the last time every member was woken: still
    /// the thread's backlog, since lanes of members not yet woken hold them.
    held: usize,
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.home.alive.store(false, Ordering::Release);
    }
}

impl Future for Delivery {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.home.waker.register(cx.waker());
        let drained = this.drain();
        for id in this.to_wake.drain(..WAKE_CHUNK.min(this.to_wake.len())) {
            id.lane().wake();
        }
        if this.to_wake.is_empty() {
            this.home.queued.fetch_sub(std::mem::take(&mut this.held), Ordering::Relaxed);
        }
        if !drained || !this.to_wake.is_empty() {
            // Its next turn comes after the tasks just woken.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl Delivery {
    /// Does waiting ops in order, up to a budget of deliveries; true when none are left.
    fn drain(&mut self) -> bool {
        let mut done = 0;
        loop {
            if self.taken.is_empty() {
                let mut inbox = self.home.lock();
                if inbox.ops.is_empty() {
                    inbox.scheduled = false;
                    return true;
                }
                std::mem::swap(&mut self.taken, &mut inbox.ops);
            }
            while let Some(op) = self.taken.pop_front() {
                self.held += op.cost();
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
            Op::Join { group, id } => {
                self.local.entry(group).or_default().join(id);
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
                for id in g.members.iter().filter(|id| Some(id.seq()) != except) {
                    hand(&mut self.to_wake, id, &msg);
                }
                g.members.len()
            }
            Op::DeliverTo { ids, msg } => {
                for id in &ids {
                    hand(&mut self.to_wake, id, &msg);
                }
                ids.len()
            }
        }
    }
}

/// Puts `msg` in `id`'s lane; a member whose lane was empty is to be woken.
fn hand(to_wake: &mut VecDeque<ConnectionId>, id: &ConnectionId, msg: &PreparedMessage) {
    if id.deliver(msg) {
        to_wake.push_back(id.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::groups::test_ids as ids;

    #[actix_rt::test]
    async fn a_local_group_keeps_its_index_through_swap_removals() {
        let ids = ids(5);
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
        let home = Home::current();
        let msg = PreparedMessage::binary(vec![0u8; 1000]);
        home.push(Op::Deliver { group: 1, msg: msg.clone(), except: None });
        home.push(Op::Join { group: 1, id: ids(1).remove(0) });
        assert_eq!(home.backlog(), 1000 + ENTRY_COST);
        // The home's task runs when this one yields.
        for _ in 0..10 {
            if home.backlog() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(home.backlog(), 0);
    }
}
