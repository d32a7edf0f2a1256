//! Running an accepted connection's actor inside actix-web's HTTP task.
//!
//! An accepted connection's actor is polled by the response body stream, so a message
//! read from the socket, handled and answered costs no hand-over between tasks (the way
//! `actix-web-actors` hosts its `WebsocketContext`). actix-web only polls a response body
//! while its write buffer has room and while the connection lives, though; a stalled
//! peer would then also stall the actor's timers (write timeout, heartbeat) and mailbox.
//! A watchdog covers those moments: every wake-up reaches it too while the body may not
//! be polled, and it drives the actor until the body is polled again or, once the body is
//! gone, to its end. One watchdog task per thread serves all of the thread's connections:
//! a task of their own would cost each connection an aligned allocation of a few hundred
//! bytes for its whole life, and its spawn, first poll and teardown on every handshake.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Polls of the actor in one go before yielding to the rest of the thread.
const ROUNDS: usize = 8;

/// Connections the watchdog drives in one go before yielding to the rest of the thread.
const WATCH_BATCH: usize = 64;

type ActorFuture = Pin<Box<dyn Future<Output = ()>>>;

/// Shared by the body stream and the watchdog.
pub(crate) struct Host {
    actor: RefCell<Option<ActorFuture>>,
    signal: Arc<Signal>,
    waker: Waker,
    watch: Rc<Watch>,
}

/// The waker the actor sees. Wake-ups during a poll ask for another round instead of
/// rescheduling the HTTP task, which is the one polling.
struct Signal {
    body: AtomicWaker,
    /// The body may not be polled on its task's next wake-up (or is gone).
    armed: AtomicBool,
    polling: AtomicBool,
    repoll: AtomicBool,
    /// In the watchdog's queue already: one entry is enough.
    queued: AtomicBool,
    /// This host's place in its thread's watchdog.
    key: usize,
    queue: Arc<WatchQueue>,
}

impl Signal {
    fn wake_pollers(&self) {
        self.body.wake();
        if self.armed.load(SeqCst) {
            self.wake_watchdog();
        }
    }

    fn wake_watchdog(&self) {
        if !self.queued.swap(true, SeqCst) {
            self.queue.keys.lock().unwrap_or_else(|e| e.into_inner()).push(self.key);
            self.queue.waker.wake();
        }
    }
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Stored before `polling` is read, and read by the poller after it clears
        // `polling`: one of the two sees the other, so no wake-up is lost.
        self.repoll.store(true, SeqCst);
        if !self.polling.load(SeqCst) {
            self.wake_pollers();
        }
    }
}

impl Host {
    /// Takes over `actor` (the actor's context future) and puts it in the care of this
    /// thread's watchdog.
    pub(crate) fn start(actor: ActorFuture) -> Rc<Host> {
        let watch = Watch::current();
        let key = watch.reserve();
        let signal = Arc::new(Signal {
            body: AtomicWaker::new(),
            armed: AtomicBool::new(false),
            polling: AtomicBool::new(false),
            // The first poll starts the actor.
            repoll: AtomicBool::new(true),
            queued: AtomicBool::new(false),
            key,
            queue: watch.queue.clone(),
        });
        let host = Rc::new(Host {
            actor: RefCell::new(Some(actor)),
            waker: Waker::from(signal.clone()),
            signal,
            watch: watch.clone(),
        });
        watch.hosts.borrow_mut()[key] = Some(host.clone());
        host
    }

    /// The body stream is being polled: later wake-ups of the actor poll it again.
    pub(crate) fn enter_body(&self, cx: &Context<'_>) {
        self.signal.body.register(cx.waker());
        self.signal.armed.store(true, SeqCst);
    }

    /// The body stream answered `Pending`, so its task's next wake-up polls it.
    pub(crate) fn body_pending(&self) {
        self.signal.armed.store(false, SeqCst);
    }

    /// The body stream is gone: from now on the watchdog drives the actor to its end.
    pub(crate) fn body_gone(&self) {
        self.signal.armed.store(true, SeqCst);
        if !self.ended() {
            self.signal.wake_watchdog();
        }
    }

    /// Polls the actor until it has nothing more to do. Returns whether it has ended.
    pub(crate) fn drive(&self) -> bool {
        // The body stream and the watchdog are tasks of one thread, never nested; a
        // nested call would only come from a bug, and must not panic.
        let Ok(mut slot) = self.actor.try_borrow_mut() else { return false };
        let Some(actor) = slot.as_mut() else { return true };
        let signal = &self.signal;
        // Every source the actor waits on wakes the signal, so if nothing did since the
        // last poll, there is nothing to do (the HTTP task is often woken for its own I/O).
        // A wake-up after this check finds `polling` clear and wakes the pollers.
        if !signal.repoll.load(SeqCst) {
            return false;
        }
        signal.polling.store(true, SeqCst);
        signal.repoll.store(false, SeqCst);
        let mut cx = Context::from_waker(&self.waker);
        for round in 1.. {
            if actor.as_mut().poll(&mut cx).is_ready() {
                signal.polling.store(false, SeqCst);
                *slot = None;
                drop(slot);
                self.watch.release(signal.key);
                return true;
            }
            signal.polling.store(false, SeqCst);
            if !signal.repoll.swap(false, SeqCst) {
                break;
            }
            if round == ROUNDS {
                signal.repoll.store(true, SeqCst);
                signal.wake_pollers();
                break;
            }
            signal.polling.store(true, SeqCst);
        }
        false
    }

    fn ended(&self) -> bool {
        self.actor.try_borrow().is_ok_and(|a| a.is_none())
    }
}

/// Where wake-ups from any thread leave work for a thread's watchdog.
struct WatchQueue {
    keys: Mutex<Vec<usize>>,
    waker: AtomicWaker,
}

/// A thread's watchdog: the hosts whose actors have not ended, and the queue of those
/// to drive. Holding the hosts keeps an actor whose body is gone alive to its end.
struct Watch {
    hosts: RefCell<Vec<Option<Rc<Host>>>>,
    free: RefCell<Vec<usize>>,
    queue: Arc<WatchQueue>,
    /// Its task is running; false once the runtime that ran it has dropped it.
    alive: Cell<bool>,
}

thread_local! {
    static WATCH: RefCell<Option<Rc<Watch>>> = const { RefCell::new(None) };
}

impl Watch {
    /// This thread's watchdog, started with its task on first use (and again after the
    /// runtime that ran the previous one ended).
    fn current() -> Rc<Watch> {
        WATCH.with(|slot| {
            let mut slot = slot.borrow_mut();
            if let Some(watch) = slot.as_ref().filter(|w| w.alive.get()) {
                return watch.clone();
            }
            let watch = Rc::new(Watch {
                hosts: RefCell::new(Vec::new()),
                free: RefCell::new(Vec::new()),
                queue: Arc::new(WatchQueue { keys: Mutex::new(Vec::new()), waker: AtomicWaker::new() }),
                alive: Cell::new(true),
            });
            actix::spawn(Watchdog { watch: watch.clone(), keys: Vec::new() });
            *slot = Some(watch.clone());
            watch
        })
    }

    /// A free place for a new host.
    fn reserve(&self) -> usize {
        if let Some(key) = self.free.borrow_mut().pop() {
            return key;
        }
        let mut hosts = self.hosts.borrow_mut();
        hosts.push(None);
        hosts.len() - 1
    }

    /// Forgets an ended host. A stale key still in the queue finds the place empty, or a
    /// newer host with nothing to do.
    ///
    /// When the last host goes, the table gives back what a peak of connections grew.
    fn release(&self, key: usize) {
        let host = self.hosts.borrow_mut().get_mut(key).and_then(Option::take);
        if host.is_some() {
            let mut free = self.free.borrow_mut();
            free.push(key);
            let mut hosts = self.hosts.borrow_mut();
            if free.len() == hosts.len() {
                *free = Vec::new();
                *hosts = Vec::new();
            }
        }
        // Dropped here, outside the borrows: it may be the last reference to the host.
        drop(host);
    }

    #[cfg(test)]
    fn live(&self) -> usize {
        self.hosts.borrow().iter().filter(|h| h.is_some()).count()
    }
}

/// The task of a thread's watchdog: drives the hosts woken while their body may not be
/// polled, and ends nothing of its own until the runtime drops it.
struct Watchdog {
    watch: Rc<Watch>,
    /// The keys taken from the queue, kept to reuse their allocation.
    keys: Vec<usize>,
}

impl Future for Watchdog {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.watch.queue.waker.register(cx.waker());
        let mut driven = 0;
        loop {
            if this.keys.is_empty() {
                std::mem::swap(
                    &mut this.keys,
                    &mut this.watch.queue.keys.lock().unwrap_or_else(|e| e.into_inner()),
                );
                if this.keys.is_empty() {
                    return Poll::Pending;
                }
                // Oldest first.
                this.keys.reverse();
            }
            while let Some(key) = this.keys.pop() {
                let host = this.watch.hosts.borrow().get(key).and_then(|h| h.clone());
                let Some(host) = host else { continue };
                // Cleared first: a wake-up from now on queues the host again.
                host.signal.queued.store(false, SeqCst);
                if host.ended() {
                    this.watch.release(key);
                } else if host.signal.armed.load(SeqCst) {
                    host.drive();
                }
                driven += 1;
                if driven == WATCH_BATCH {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // The runtime is going away: the actors it ran go with it.
        self.watch.alive.set(false);
        let hosts = std::mem::take(&mut *self.watch.hosts.borrow_mut());
        self.watch.free.borrow_mut().clear();
        drop(hosts);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    use super::*;

    /// A waker that counts its wake-ups: stands in for the HTTP task.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    /// An actor stand-in: counts its polls, wakes itself during the first `self_wakes`
    /// of them, and hands its waker out for wake-ups from "elsewhere".
    /// It ends at the first poll after `done` is set.
    struct Probe {
        polls: Rc<AtomicUsize>,
        self_wakes: usize,
        waker: WakerSlot,
        done: Rc<Cell<bool>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Relaxed);
            if self.done.get() {
                return Poll::Ready(());
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            if self.self_wakes > 0 {
                self.self_wakes -= 1;
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        }
    }

    /// Where a probe leaves its waker.
    type WakerSlot = Rc<RefCell<Option<Waker>>>;

    fn host(self_wakes: usize) -> (Rc<Host>, Rc<AtomicUsize>, WakerSlot) {
        let polls = Rc::new(AtomicUsize::new(0));
        let waker = Rc::new(RefCell::new(None));
        let probe = Probe { polls: polls.clone(), self_wakes, waker: waker.clone(), done: Rc::default() };
        (Host::start(Box::pin(probe)), polls, waker)
    }

    /// A host whose actor ends when told to.
    fn ending_host() -> (Rc<Host>, Rc<Cell<bool>>, WakerSlot) {
        let done = Rc::new(Cell::new(false));
        let waker = Rc::new(RefCell::new(None));
        let probe = Probe { polls: Rc::default(), self_wakes: 0, waker: waker.clone(), done: done.clone() };
        (Host::start(Box::pin(probe)), done, waker)
    }

    /// The HTTP task (a counting waker) enters the body, as actix-web polling it would.
    fn body_polled(host: &Host) -> (Arc<Count>, Waker) {
        let http = Arc::new(Count(AtomicUsize::new(0)));
        let http_waker = Waker::from(http.clone());
        host.enter_body(&Context::from_waker(&http_waker));
        (http, http_waker)
    }

    #[actix_web::test]
    async fn wake_ups_during_a_poll_are_more_rounds_not_task_wake_ups() {
        let (host, polls, _) = host(3);
        let (http, _) = body_polled(&host);
        assert!(!host.drive());
        assert_eq!(polls.load(Relaxed), 4, "one poll, then one more per wake-up during it");
        assert_eq!(http.0.load(Relaxed), 0, "the polling task was not rescheduled");
        // Nothing woke the actor since: polling it again would be wasted work.
        assert!(!host.drive());
        assert_eq!(polls.load(Relaxed), 4);
    }

    #[actix_web::test]
    async fn an_actor_that_keeps_waking_itself_yields_after_a_few_rounds() {
        let (host, polls, _) = host(usize::MAX);
        let (http, _) = body_polled(&host);
        host.drive();
        assert_eq!(polls.load(Relaxed), ROUNDS);
        assert_eq!(http.0.load(Relaxed), 1, "the HTTP task is asked to come back");
    }

    #[actix_web::test]
    async fn a_later_wake_up_reaches_the_http_task_and_while_armed_the_watchdog() {
        let (host, polls, actor_waker) = host(0);
        let (http, http_waker) = body_polled(&host);
        host.drive();
        host.body_pending();
        let wake = || actor_waker.borrow().clone().expect("polled once").wake();

        // The body answered Pending: the HTTP task polls it on its next wake-up.
        wake();
        assert_eq!(http.0.load(Relaxed), 1);
        actix_web::rt::task::yield_now().await;
        assert_eq!(polls.load(Relaxed), 1, "the watchdog stays out of it");

        // The body handed out a chunk and may not be polled again soon: the watchdog
        // drives the actor.
        host.enter_body(&Context::from_waker(&http_waker));
        wake();
        actix_web::rt::task::yield_now().await;
        assert_eq!(polls.load(Relaxed), 2);
        assert_eq!(http.0.load(Relaxed), 2);
    }

    #[actix_web::test]
    async fn one_watchdog_serves_the_thread_and_forgets_ended_actors() {
        let (a, a_done, _) = ending_host();
        let (b, b_done, b_waker) = ending_host();
        let (c, _, _) = ending_host();
        assert!(Rc::ptr_eq(&a.watch, &b.watch) && Rc::ptr_eq(&b.watch, &c.watch));
        let watch = a.watch.clone();
        let before = watch.live();
        assert!(before >= 3);
        for h in [&a, &b, &c] {
            body_polled(h);
            h.drive();
            h.body_pending();
        }

        // Ending in the body's poll: the host leaves the watchdog at once.
        a_done.set(true);
        a.signal.repoll.store(true, SeqCst);
        assert!(a.drive());
        assert_eq!(watch.live(), before - 1);

        // Woken while its body waits to be polled: that is the HTTP task's job...
        b_done.set(true);
        b_waker.borrow().clone().expect("polled once").wake();
        actix_web::rt::task::yield_now().await;
        assert!(!b.ended(), "the watchdog stays out while the body may be polled");
        // ...but the HTTP task drops the body instead: the watchdog drives the actor to
        // its end, then forgets it.
        b.body_gone();
        actix_web::rt::task::yield_now().await;
        assert!(b.ended());
        assert_eq!(watch.live(), before - 2);
        drop(c);
    }

    #[actix_web::test]
    async fn the_watchdog_table_shrinks_when_its_last_host_ends() {
        let hosts: Vec<_> = (0..100).map(|_| ending_host()).collect();
        let watch = hosts[0].0.watch.clone();
        assert!(watch.hosts.borrow().capacity() >= 100);
        for (host, done, _) in &hosts {
            done.set(true);
            assert!(host.drive());
        }
        assert_eq!(watch.live(), 0);
        assert_eq!(watch.hosts.borrow().capacity(), 0);
        assert_eq!(watch.free.borrow().capacity(), 0);
        // The table works on from empty.
        let (next, _, _) = ending_host();
        assert!(Rc::ptr_eq(&next.watch, &watch));
        assert_eq!(watch.live(), 1);
    }
}
