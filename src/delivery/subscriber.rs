//! One connection as the delivery of writes sees it: the broadcasts handed to it and the
//! messages written through its id, not yet taken (it takes them on its next turn, in
//! order), whether it still accepts any, its worker thread's inbox, and the groups it is
//! in, so that it leaves them all when it ends.
//!
//! Broadcasts come from the thread inbox, on the connection's own thread; writes by id come
//! from whichever thread holds the id, straight here rather than through the actor's
//! mailbox (no envelope per write). What the queue holds during a round of the inbox's
//! wake-ups counts toward the thread's backlog bound; writes by id have their own bounds
//! on the connection (`max_write_buffer`, `max_write_queue`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use tokio::sync::oneshot;

use super::thread_inbox::ThreadInbox;
use crate::error::WriteError;
use crate::message::Outgoing;
use crate::prepared::PreparedMessage;

/// Whoever awaits a write's outcome.
pub(crate) type Answer = oneshot::Sender<Result<(), WriteError>>;

/// A write waiting for the connection's next turn.
pub(crate) enum Pending {
    /// A broadcast, or a prepared message written by id.
    Prepared(PreparedMessage),
    /// A message written by id, with whoever awaits it (`send_wait`).
    Message(Outgoing, Option<Answer>),
}

/// Why a member stops being one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaving {
    /// It was made to leave.
    Left,
    /// Its connection ended.
    Ended,
}

/// A group a connection is in, as the connection knows it: enough to name it and to
/// leave it.
pub(crate) trait Joined: Send + Sync {
    /// The group's key, unique in the process.
    fn key(&self) -> u64;
    /// The key of the collection of groups it belongs to.
    fn owner(&self) -> u64;
    fn name(&self) -> &Arc<str>;
    /// Takes the member `seq` out of the group, for the reason given.
    fn remove(self: Arc<Self>, seq: u64, why: Leaving);
}

/// The connection has ended: it joins nothing any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended;

pub(crate) struct Subscriber {
    seq: u64,
    thread: Arc<ThreadInbox>,
    /// Something waits in the queue: read without the lock on every turn.
    pending: AtomicBool,
    /// The connection's close frame is out: it takes nothing more.
    closed: AtomicBool,
    queue: Mutex<Queue>,
    groups: Mutex<Memberships>,
}

#[derive(Default)]
struct Queue {
    items: Vec<Pending>,
    waker: Option<Waker>,
    /// The connection has ended: what is pushed now would never be taken (and an awaited
    /// write never answered), so nothing is.
    ended: bool,
}

/// Held, locked, while a join or leave changes a group: a join racing the connection's
/// end either lands before it (and is undone by it) or sees `ended` and is refused.
#[derive(Default)]
struct Memberships {
    ended: bool,
    list: Vec<Arc<dyn Joined>>,
}

impl Subscriber {
    /// The subscriber of connection `seq`, which runs on this thread.
    pub(crate) fn new(seq: u64) -> Arc<Self> {
        Arc::new(Subscriber {
            seq,
            thread: ThreadInbox::current(),
            pending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            queue: Mutex::default(),
            groups: Mutex::default(),
        })
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The inbox of the thread the connection runs on.
    pub(crate) fn thread(&self) -> &Arc<ThreadInbox> {
        &self.thread
    }

    /// [`write`](Self::write) of a message, handed back as it was given.
    pub(crate) fn write_message(&self, msg: Outgoing, answer: Option<Answer>) -> Result<(), Outgoing> {
        self.write(Pending::Message(msg, answer)).map_err(|item| match item {
            Pending::Message(msg, _) => msg,
            Pending::Prepared(p) => p.to_outgoing(),
        })
    }

    /// Hands it a broadcast, unless it is closed; true when it is the first since its last
    /// turn (it is then to be woken, see `wake`).
    pub(crate) fn deliver(&self, msg: &PreparedMessage) -> bool {
        !self.is_closed() && self.enqueue(Pending::Prepared(msg.clone()), false, false).unwrap_or(false)
    }

    /// A write by id: queued for the connection's next turn, which it wakes; handed back
    /// once the connection's close frame is out or it has ended.
    pub(crate) fn write(&self, item: Pending) -> Result<(), Pending> {
        self.enqueue(item, false, true).map(drop)
    }

    /// The last write it takes (a close): queued, and nothing more is handed to it after
    /// it, in one step, so that what it gets ends with this.
    pub(crate) fn write_last(&self, item: Pending) -> Result<(), Pending> {
        self.enqueue(item, true, true).map(drop)
    }

    /// Queues `item` unless it has ended or is closed (checked under the lock a last write
    /// closes it under); `last` closes it behind the item. Ok(true) when it is the first
    /// since the connection's last turn, which `wake` then wakes at once; later ones ride
    /// along.
    fn enqueue(&self, item: Pending, last: bool, wake: bool) -> Result<bool, Pending> {
        let mut queue = self.lock_queue();
        if queue.ended || self.is_closed() {
            return Err(item);
        }
        queue.items.push(item);
        if last {
            self.close();
        }
        let first = !self.pending.swap(true, Ordering::AcqRel);
        if first && wake {
            if let Some(w) = &queue.waker {
                w.wake_by_ref();
            }
        }
        Ok(first)
    }

    /// Wakes the connection if something still waits for it.
    pub(crate) fn wake(&self) {
        if self.pending.load(Ordering::Acquire) {
            if let Some(w) = &self.lock_queue().waker {
                w.wake_by_ref();
            }
        }
    }

    /// Moves what waits into `out`, in order.
    pub(crate) fn take(&self, out: &mut Vec<Pending>) {
        if !self.pending.load(Ordering::Acquire) {
            return;
        }
        let mut queue = self.lock_queue();
        self.pending.store(false, Ordering::Release);
        if out.is_empty() {
            std::mem::swap(out, &mut queue.items);
        } else {
            out.append(&mut queue.items);
        }
    }

    /// Gives back the room of an empty queue (the connection has gone quiet): writes by id
    /// leave it sized for the last burst.
    pub(crate) fn release_spare(&self) {
        let mut queue = self.lock_queue();
        if queue.items.is_empty() {
            queue.items = Vec::new();
        }
    }

    /// The connection's waker changed (it is set on its first turn).
    pub(crate) fn set_waker(&self, waker: &Waker) {
        self.lock_queue().waker = Some(waker.clone());
    }

    /// Its close frame is out: nothing more is handed to it.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Joins a group: `join` runs under the memberships' lock and returns the group when
    /// the connection was not in it yet. Refused once the connection has ended.
    pub(crate) fn join(&self, join: impl FnOnce() -> Option<Arc<dyn Joined>>) -> Result<(), Ended> {
        let mut m = self.lock_groups();
        if m.ended {
            return Err(Ended);
        }
        if let Some(group) = join() {
            m.list.push(group);
        }
        Ok(())
    }

    /// Leaves the group `key`; whether it was in it.
    pub(crate) fn leave(&self, key: u64) -> bool {
        let mut m = self.lock_groups();
        let Some(i) = m.list.iter().position(|g| g.key() == key) else { return false };
        // Under the lock, so a join of the same connection waits for it.
        m.list.swap_remove(i).remove(self.seq, Leaving::Left);
        true
    }

    /// What `pick` makes of the groups it is in, where it makes something.
    pub(crate) fn groups<T>(&self, pick: impl FnMut(&dyn Joined) -> Option<T>) -> Vec<T> {
        self.lock_groups().list.iter().map(|g| &**g).filter_map(pick).collect()
    }

    /// The connection has ended: it leaves every group it is in, joins no more, and lets
    /// go of what waits and of its waker.
    pub(crate) fn end(&self) {
        {
            let mut m = self.lock_groups();
            m.ended = true;
            for group in std::mem::take(&mut m.list) {
                group.remove(self.seq, Leaving::Ended);
            }
        }
        self.close();
        let mut queue = self.lock_queue();
        queue.ended = true;
        // Dropping an awaited write's answer tells its writer `Closed`.
        queue.items = Vec::new();
        queue.waker = None;
        self.pending.store(false, Ordering::Release);
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    fn lock_groups(&self) -> MutexGuard<'_, Memberships> {
        lock(&self.groups)
    }
}

/// Locks a mutex whose data stays whole even if a holder panicked (each holder changes it
/// in one step).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    /// A group that records who was taken out of it, and why.
    struct Group(u64, Mutex<Vec<(u64, Leaving)>>, Arc<str>);

    impl Joined for Group {
        fn key(&self) -> u64 {
            self.0
        }
        fn owner(&self) -> u64 {
            0
        }
        fn name(&self) -> &Arc<str> {
            &self.2
        }
        fn remove(self: Arc<Self>, seq: u64, why: Leaving) {
            self.1.lock().unwrap().push((seq, why));
        }
    }

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[actix_rt::test]
    async fn broadcasts_wait_in_order_and_wake_once_until_taken() {
        let s = Subscriber::new(7);
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        s.set_waker(&Waker::from(woken.clone()));
        let (a, b) = (PreparedMessage::text("a"), PreparedMessage::text("b"));
        assert!(s.deliver(&a), "the first one asks for a wake-up");
        assert!(!s.deliver(&b), "the next ones do not");
        s.wake();
        assert_eq!(woken.0.load(Ordering::Relaxed), 1);
        let mut out = Vec::new();
        s.take(&mut out);
        assert_eq!(out.iter().map(body).collect::<Vec<_>>(), [b"a", b"b"]);
        s.wake();
        assert_eq!(woken.0.load(Ordering::Relaxed), 1, "nothing waits: no wake-up");
        s.close();
        assert!(!s.deliver(&a), "closed: nothing more");
        s.take(&mut out);
        assert_eq!(out.len(), 2);
    }

    fn body(p: &Pending) -> &[u8] {
        match p {
            Pending::Prepared(m) => m.body(),
            Pending::Message(m, _) => &m.body,
        }
    }

    #[actix_rt::test]
    async fn writes_by_id_queue_with_broadcasts_wake_once_and_are_refused_once_ended() {
        let s = Subscriber::new(9);
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let (tx, mut rx) = oneshot::channel();
        assert!(s.write(Pending::Message(Outgoing::text("before the first turn"), None)).is_ok());
        s.set_waker(&Waker::from(woken.clone()));
        assert!(s.write(Pending::Message(Outgoing::text("awaited"), Some(tx))).is_ok());
        assert!(!s.deliver(&PreparedMessage::text("broadcast")), "a wake-up is asked for already");
        assert_eq!(
            woken.0.load(Ordering::Relaxed),
            0,
            "pending since before the waker: the first turn takes it"
        );
        let mut out = Vec::new();
        s.take(&mut out);
        assert_eq!(
            out.iter().map(body).collect::<Vec<_>>(),
            [&b"before the first turn"[..], b"awaited", b"broadcast"]
        );
        assert!(s.write(Pending::Prepared(PreparedMessage::text("next"))).is_ok());
        assert_eq!(woken.0.load(Ordering::Relaxed), 1, "the first write since the turn wakes it");
        assert!(s.write(Pending::Prepared(PreparedMessage::text("and"))).is_ok());
        assert_eq!(woken.0.load(Ordering::Relaxed), 1, "later ones ride along");
        drop(out); // the connection dropped the awaited write's answer unanswered
        assert!(matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
        let mut kept = vec![Pending::Prepared(PreparedMessage::text("taken before"))];
        s.take(&mut kept); // appended: the queue keeps its room
        assert!(kept.len() == 3 && s.lock_queue().items.capacity() > 0);
        s.release_spare();
        assert_eq!(s.lock_queue().items.capacity(), 0, "a quiet connection keeps no room for writes");
        let (tx, mut rx) = oneshot::channel();
        assert!(s.write(Pending::Message(Outgoing::text("lost"), Some(tx))).is_ok());
        s.end();
        assert!(
            matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Closed)),
            "ending lets go of what waited: its writer hears of it"
        );
        assert!(s.write(Pending::Message(Outgoing::text("late"), None)).is_err(), "ended: handed back");
    }

    #[actix_rt::test]
    async fn a_last_write_is_taken_and_nothing_after_it() {
        let s = Subscriber::new(4);
        assert!(s.deliver(&PreparedMessage::text("before")));
        assert!(s.write_last(Pending::Message(Outgoing::close(1012, "gap"), None)).is_ok());
        assert!(!s.deliver(&PreparedMessage::text("after")), "no broadcast after it");
        assert!(s.write(Pending::Message(Outgoing::text("after"), None)).is_err(), "no write after it");
        assert!(s.write_last(Pending::Message(Outgoing::close(1000, ""), None)).is_err(), "one last write");
        let mut out = Vec::new();
        s.take(&mut out);
        assert_eq!(
            out.iter().map(body).collect::<Vec<_>>(),
            [&b"before"[..], &[0x03, 0xf4, b'g', b'a', b'p'][..]]
        );
    }

    #[actix_rt::test]
    async fn leaving_and_ending_take_it_out_of_its_groups_once() {
        let s = Subscriber::new(3);
        let group = |key| Arc::new(Group(key, Mutex::default(), format!("g{key}").into()));
        let (g1, g2) = (group(1), group(2));
        assert_eq!(s.join(|| Some(g1.clone())), Ok(()));
        assert_eq!(s.join(|| Some(g2.clone())), Ok(()));
        assert_eq!(s.join(|| None), Ok(()), "a member already: nothing recorded");
        assert_eq!(s.groups(|g| Some(g.key())), [1, 2]);
        assert_eq!(s.groups(|g| (g.key() == 2).then(|| g.name().clone())), [Arc::from("g2")]);
        assert!(s.leave(1));
        assert!(!s.leave(1));
        s.deliver(&PreparedMessage::text("x"));
        s.end();
        assert_eq!(*g1.1.lock().unwrap(), [(3, Leaving::Left)]);
        assert_eq!(*g2.1.lock().unwrap(), [(3, Leaving::Ended)]);
        assert!(s.groups(|g| Some(g.key())).is_empty());
        assert_eq!(s.join(|| Some(g1.clone())), Err(Ended), "ended: no more joins");
        let mut out = Vec::new();
        s.take(&mut out);
        assert!(out.is_empty(), "what waited is let go");
        assert!(s.is_closed());
    }
}
