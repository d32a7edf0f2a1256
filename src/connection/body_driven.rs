//! Running an accepted connection's actor inside actix-web's HTTP task.
//!
//! - `BodyDriven`: an actor polled by its connection's response body.
//! - the fallback driver: one task per thread that polls those actors while their body
//!   may not be polled.
//!
//! An accepted connection's actor is polled by the response body stream, so a message
//! read from the socket, handled and answered costs no hand-over between tasks (the way
//! `actix-web-actors` hosts its `WebsocketContext`). actix-web only polls a response body
//! while its write buffer has room and while the connection lives, though; a stalled
//! peer would then also stall the actor's timers (write timeout, heartbeat) and mailbox.
//! A fallback driver covers those moments: every wake-up reaches it too while the body
//! may not be polled, and it drives the actor until the body is polled again or, once the
//! body is gone, to its end. One fallback driver task per thread serves all of the
//! thread's connections: a task of their own would cost each connection an aligned
//! allocation of a few hundred bytes for its whole life, and its spawn, first poll and
//! teardown on every handshake.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Polls of the actor in one go before yielding to the rest of the thread.
const ROUNDS: usize = 8;

/// Connections the fallback driver drives in one go before yielding to the rest of the thread.
const FALLBACK_BATCH: usize = 64;

type ActorFuture = Pin<Box<dyn Future<Output = ()>>>;

/// Shared by the body stream and the fallback driver.
pub(crate) struct BodyDriven {
    actor: RefCell<Option<ActorFuture>>,
    signal: Arc<Signal>,
    waker: Waker,
    fallback: Rc<Fallback>,
}

/// The waker the actor sees. Wake-ups during a poll ask for another round instead of
/// rescheduling the HTTP task, which is the one polling.
struct Signal {
    body: AtomicWaker,
    /// The body may not be polled on its task's next wake-up (or is gone).
    armed: AtomicBool,
    polling: AtomicBool,
    repoll: AtomicBool,
    /// In the fallback driver's queue already: one entry is enough.
    queued: AtomicBool,
    /// This actor's place in its thread's fallback driver.
    key: usize,
    queue: Arc<FallbackQueue>,
}

impl Signal {
    fn wake_pollers(&self) {
        self.body.wake();
        if self.armed.load(SeqCst) {
            self.wake_fallback();
        }
    }

    fn wake_fallback(&self) {
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

impl BodyDriven {
    /// Takes over `actor` (the actor's context future) and puts it in the care of this
    /// thread's fallback driver.
    pub(crate) fn start(actor: ActorFuture) -> Rc<BodyDriven> {
        let fallback = Fallback::current();
        let key = fallback.reserve();
        let signal = Arc::new(Signal {
            body: AtomicWaker::new(),
            armed: AtomicBool::new(false),
            polling: AtomicBool::new(false),
            // The first poll starts the actor.
            repoll: AtomicBool::new(true),
            queued: AtomicBool::new(false),
            key,
            queue: fallback.queue.clone(),
        });
        let driven = Rc::new(BodyDriven {
            actor: RefCell::new(Some(actor)),
            waker: Waker::from(signal.clone()),
            signal,
            fallback: fallback.clone(),
        });
        fallback.actors.borrow_mut()[key] = Some(driven.clone());
        driven
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

    /// The body stream is gone: from now on the fallback driver drives the actor to its end.
    pub(crate) fn body_gone(&self) {
        self.signal.armed.store(true, SeqCst);
        if !self.ended() {
            self.signal.wake_fallback();
        }
    }

    /// Polls the actor until it has nothing more to do. Returns whether it has ended.
    pub(crate) fn drive(&self) -> bool {
        // The body stream and the fallback driver are tasks of one thread, never nested; a
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
                self.fallback.release(signal.key);
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

/// Where wake-ups from any thread leave work for a thread's fallback driver.
struct FallbackQueue {
    keys: Mutex<Vec<usize>>,
    waker: AtomicWaker,
}

/// A thread's fallback driver: the actors that have not ended, and the queue of those to
/// drive. Holding them keeps an actor whose body is gone alive to its end.
struct Fallback {
    actors: RefCell<Vec<Option<Rc<BodyDriven>>>>,
    free: RefCell<Vec<usize>>,
    queue: Arc<FallbackQueue>,
    /// Its task is running; false once the runtime that ran it has dropped it.
    alive: Cell<bool>,
}

thread_local! {
    static FALLBACK: RefCell<Option<Rc<Fallback>>> = const { RefCell::new(None) };
}

impl Fallback {
    /// This thread's fallback driver, started with its task on first use (and again after
    /// the runtime that ran the previous one ended).
    fn current() -> Rc<Fallback> {
        FALLBACK.with(|slot| {
            let mut slot = slot.borrow_mut();
            if let Some(fallback) = slot.as_ref().filter(|f| f.alive.get()) {
                return fallback.clone();
            }
            let fallback = Rc::new(Fallback {
                actors: RefCell::new(Vec::new()),
                free: RefCell::new(Vec::new()),
                queue: Arc::new(FallbackQueue { keys: Mutex::new(Vec::new()), waker: AtomicWaker::new() }),
                alive: Cell::new(true),
            });
            actix::spawn(FallbackDriver { fallback: fallback.clone(), keys: Vec::new() });
            *slot = Some(fallback.clone());
            fallback
        })
    }

    /// A free place for a new actor.
    fn reserve(&self) -> usize {
        if let Some(key) = self.free.borrow_mut().pop() {
            return key;
        }
        let mut actors = self.actors.borrow_mut();
        actors.push(None);
        actors.len() - 1
    }

    /// Forgets an actor that ended. A stale key still in the queue finds the place empty, or a
    /// newer actor with nothing to do.
    ///
    /// When the last actor goes, the table gives back what a peak of connections grew.
    fn release(&self, key: usize) {
        let driven = self.actors.borrow_mut().get_mut(key).and_then(Option::take);
        if driven.is_some() {
            let mut free = self.free.borrow_mut();
            free.push(key);
            let mut actors = self.actors.borrow_mut();
            if free.len() == actors.len() {
                *free = Vec::new();
                *actors = Vec::new();
            }
        }
        // Dropped here, outside the borrows: it may be the last reference to it.
        drop(driven);
    }

    #[cfg(test)]
    fn live(&self) -> usize {
        self.actors.borrow().iter().filter(|h| h.is_some()).count()
    }
}

/// The task of a thread's fallback driver: drives the actors woken while their body may not be
/// polled, and ends nothing of its own until the runtime drops it.
struct FallbackDriver {
    fallback: Rc<Fallback>,
    /// The keys taken from the queue, kept to reuse their allocation.
    keys: Vec<usize>,
}

impl Future for FallbackDriver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.fallback.queue.waker.register(cx.waker());
        let mut done = 0;
        loop {
            if this.keys.is_empty() {
                std::mem::swap(
                    &mut this.keys,
                    &mut this.fallback.queue.keys.lock().unwrap_or_else(|e| e.into_inner()),
                );
                if this.keys.is_empty() {
                    return Poll::Pending;
                }
                // Oldest first.
                this.keys.reverse();
            }
            while let Some(key) = this.keys.pop() {
                let driven = this.fallback.actors.borrow().get(key).and_then(|h| h.clone());
                let Some(driven) = driven else { continue };
                // Cleared first: a wake-up from now on queues it again.
                driven.signal.queued.store(false, SeqCst);
                if driven.ended() {
                    this.fallback.release(key);
                } else if driven.signal.armed.load(SeqCst) {
                    driven.drive();
                }
                done += 1;
                if done == FALLBACK_BATCH {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for FallbackDriver {
    fn drop(&mut self) {
        // The runtime is going away: the actors it ran go with it.
        self.fallback.alive.set(false);
        let actors = std::mem::take(&mut *self.fallback.actors.borrow_mut());
        self.fallback.free.borrow_mut().clear();
        drop(actors);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering::Relaxed;

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

    fn probe_actor(self_wakes: usize) -> (Rc<BodyDriven>, Rc<AtomicUsize>, WakerSlot) {
        let polls = Rc::new(AtomicUsize::new(0));
        let waker = Rc::new(RefCell::new(None));
        let probe = Probe { polls: polls.clone(), self_wakes, waker: waker.clone(), done: Rc::default() };
        (BodyDriven::start(Box::pin(probe)), polls, waker)
    }

    /// A driven actor that ends when told to.
    fn ending_actor() -> (Rc<BodyDriven>, Rc<Cell<bool>>, WakerSlot) {
        let done = Rc::new(Cell::new(false));
        let waker = Rc::new(RefCell::new(None));
        let probe = Probe { polls: Rc::default(), self_wakes: 0, waker: waker.clone(), done: done.clone() };
        (BodyDriven::start(Box::pin(probe)), done, waker)
    }

    /// The HTTP task (a counting waker) enters the body, as actix-web polling it would.
    fn body_polled(driven: &BodyDriven) -> (Arc<Count>, Waker) {
        let http = Arc::new(Count(AtomicUsize::new(0)));
        let http_waker = Waker::from(http.clone());
        driven.enter_body(&Context::from_waker(&http_waker));
        (http, http_waker)
    }

    #[actix_web::test]
    async fn wake_ups_during_a_poll_are_more_rounds_not_task_wake_ups() {
        let (driven, polls, _) = probe_actor(3);
        let (http, _) = body_polled(&driven);
        assert!(!driven.drive());
        assert_eq!(polls.load(Relaxed), 4, "one poll, then one more per wake-up during it");
        assert_eq!(http.0.load(Relaxed), 0, "the polling task was not rescheduled");
        // Nothing woke the actor since: polling it again would be wasted work.
        assert!(!driven.drive());
        assert_eq!(polls.load(Relaxed), 4);
    }

    #[actix_web::test]
    async fn an_actor_that_keeps_waking_itself_yields_after_a_few_rounds() {
        let (driven, polls, _) = probe_actor(usize::MAX);
        let (http, _) = body_polled(&driven);
        driven.drive();
        assert_eq!(polls.load(Relaxed), ROUNDS);
        assert_eq!(http.0.load(Relaxed), 1, "the HTTP task is asked to come back");
    }

    #[actix_web::test]
    async fn a_later_wake_up_reaches_the_http_task_and_while_armed_the_watchdog() {
        let (driven, polls, actor_waker) = probe_actor(0);
        let (http, http_waker) = body_polled(&driven);
        driven.drive();
        driven.body_pending();
        let wake = || actor_waker.borrow().clone().expect("polled once").wake();

        // The body answered Pending: the HTTP task polls it on its next wake-up.
        wake();
        assert_eq!(http.0.load(Relaxed), 1);
        actix_web::rt::task::yield_now().await;
        assert_eq!(polls.load(Relaxed), 1, "the fallback driver stays out of it");

        // The body handed out a chunk and may not be polled again soon: the fallback driver
        // drives the actor.
        driven.enter_body(&Context::from_waker(&http_waker));
        wake();
        actix_web::rt::task::yield_now().await;
        assert_eq!(polls.load(Relaxed), 2);
        assert_eq!(http.0.load(Relaxed), 2);
    }

    #[actix_web::test]
    async fn one_watchdog_serves_the_thread_and_forgets_ended_actors() {
        let (a, a_done, _) = ending_actor();
        let (b, b_done, b_waker) = ending_actor();
        let (c, _, _) = ending_actor();
        assert!(Rc::ptr_eq(&a.fallback, &b.fallback) && Rc::ptr_eq(&b.fallback, &c.fallback));
        let fallback = a.fallback.clone();
        let before = fallback.live();
        assert!(before >= 3);
        for h in [&a, &b, &c] {
            body_polled(h);
            h.drive();
            h.body_pending();
        }

        // Ending in the body's poll: it leaves the fallback driver at once.
        a_done.set(true);
        a.signal.repoll.store(true, SeqCst);
        assert!(a.drive());
        assert_eq!(fallback.live(), before - 1);

        // Woken while its body waits to be polled: that is the HTTP task's job...
        b_done.set(true);
        b_waker.borrow().clone().expect("polled once").wake();
        actix_web::rt::task::yield_now().await;
        assert!(!b.ended(), "the fallback driver stays out while the body may be polled");
        // ...but the HTTP task drops the body instead: the fallback driver drives the actor to
        // its end, then forgets it.
        b.body_gone();
        actix_web::rt::task::yield_now().await;
        assert!(b.ended());
        assert_eq!(fallback.live(), before - 2);
        drop(c);
    }

    #[actix_web::test]
    async fn the_watchdog_table_shrinks_when_its_last_host_ends() {
        let actors: Vec<_> = (0..100).map(|_| ending_actor()).collect();
        let fallback = actors[0].0.fallback.clone();
        assert!(fallback.actors.borrow().capacity() >= 100);
        for (driven, done, _) in &actors {
            done.set(true);
            assert!(driven.drive());
        }
        assert_eq!(fallback.live(), 0);
        assert_eq!(fallback.actors.borrow().capacity(), 0);
        assert_eq!(fallback.free.borrow().capacity(), 0);
        // The table works on from empty.
        let (next, _, _) = ending_actor();
        assert!(Rc::ptr_eq(&next.fallback, &fallback));
        assert_eq!(fallback.live(), 1);
    }
}
