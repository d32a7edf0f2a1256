//! Running an accepted connection's actor inside actix-web's HTTP task.
//!
//! An accepted connection's actor is polled by the response body stream, so a message
//! read from the socket, handled and answered costs no hand-over between tasks (the way
//! `actix-web-actors` hosts its `WebsocketContext`). actix-web only polls a response body
//! while its write buffer has room and while the connection lives, though; a stalled
//! peer would then also stall the actor's timers (write timeout, heartbeat) and mailbox.
//! A small watchdog task covers those moments: every wake-up reaches it too while the
//! body may not be polled, and it drives the actor until the body is polled again or,
//! once the body is gone, to its end.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Polls of the actor in one go before yielding to the rest of the thread.
const ROUNDS: usize = 8;

type ActorFuture = Pin<Box<dyn Future<Output = ()>>>;

/// Shared by the body stream and the watchdog.
pub(crate) struct Host {
    actor: RefCell<Option<ActorFuture>>,
    signal: Arc<Signal>,
    waker: Waker,
}

/// The waker the actor sees. Wake-ups during a poll ask for another round instead of
/// rescheduling the HTTP task, which is the one polling.
struct Signal {
    body: AtomicWaker,
    watchdog: AtomicWaker,
    /// The body may not be polled on its task's next wake-up (or is gone).
    armed: AtomicBool,
    polling: AtomicBool,
    repoll: AtomicBool,
}

impl Signal {
    fn wake_pollers(&self) {
        self.body.wake();
        if self.armed.load(SeqCst) {
            self.watchdog.wake();
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
    /// Takes over `actor` (the actor's context future) and starts its watchdog.
    pub(crate) fn start(actor: ActorFuture) -> Rc<Host> {
        let signal = Arc::new(Signal {
            body: AtomicWaker::new(),
            watchdog: AtomicWaker::new(),
            armed: AtomicBool::new(false),
            polling: AtomicBool::new(false),
            // The first poll starts the actor.
            repoll: AtomicBool::new(true),
        });
        let host =
            Rc::new(Host { actor: RefCell::new(Some(actor)), waker: Waker::from(signal.clone()), signal });
        actix::spawn(Watchdog(host.clone()));
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
        self.signal.watchdog.wake();
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
                // Lets the watchdog see the end and finish.
                signal.watchdog.wake();
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

/// Drives the actor while the body stream may not be polled; ends with the actor.
struct Watchdog(Rc<Host>);

impl Future for Watchdog {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let host = &self.0;
        host.signal.watchdog.register(cx.waker());
        if host.ended() || (host.signal.armed.load(SeqCst) && host.drive()) {
            return Poll::Ready(());
        }
        Poll::Pending
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
    struct Probe {
        polls: Rc<AtomicUsize>,
        self_wakes: usize,
        waker: Rc<RefCell<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Relaxed);
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            if self.self_wakes > 0 {
                self.self_wakes -= 1;
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        }
    }

    fn host(self_wakes: usize) -> (Rc<Host>, Rc<AtomicUsize>, Rc<RefCell<Option<Waker>>>) {
        let polls = Rc::new(AtomicUsize::new(0));
        let waker = Rc::new(RefCell::new(None));
        let probe = Probe { polls: polls.clone(), self_wakes, waker: waker.clone() };
        (Host::start(Box::pin(probe)), polls, waker)
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
}
