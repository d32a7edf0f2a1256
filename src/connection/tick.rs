//! The connection's periodic check (heartbeat and idle timeout), as an actor future that
//! costs next to nothing on the polls its timer did not cause.
//!
//! actix's `run_interval` polls its timer on every poll of the actor, that is, twice per
//! echoed message; a tokio `Sleep` poll registers the waker anew each time. A timer polled
//! once keeps the waker it was given, so this one is polled again only when it has
//! elapsed or the actor's waker has changed.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use actix::prelude::*;
use tokio::time::{sleep, Instant, Sleep};

use super::WsConnection;

pub(super) struct Tick {
    every: Duration,
    timer: Pin<Box<Sleep>>,
    /// The waker the timer holds; `None` until its first poll.
    registered: Option<Waker>,
}

impl Tick {
    pub(super) fn new(every: Duration) -> Self {
        Tick { every, timer: Box::pin(sleep(every)), registered: None }
    }
}

impl ActorFuture<WsConnection> for Tick {
    type Output = ();

    fn poll(
        mut self: Pin<&mut Self>,
        act: &mut WsConnection,
        ctx: &mut Context<WsConnection>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        if act.finished {
            return Poll::Ready(());
        }
        let this = &mut *self;
        let current = matches!(&this.registered, Some(w) if w.will_wake(task.waker()));
        if current && !this.timer.is_elapsed() {
            return Poll::Pending;
        }
        // With tokio's cooperative budget spent, the poll returns early without taking the
        // waker (and has the task polled again).
        let registers = tokio::task::coop::has_budget_remaining();
        // Loops at most twice: a freshly reset timer is not elapsed.
        while std::future::Future::poll(this.timer.as_mut(), task).is_ready() {
            act.on_tick(ctx);
            let next = Instant::now() + this.every;
            this.timer.as_mut().reset(next);
        }
        this.registered = registers.then(|| task.waker().clone());
        Poll::Pending
    }
}
