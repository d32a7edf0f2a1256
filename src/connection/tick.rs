//! The connection's periodic check (heartbeat and idle timeout), run by the pump, that
//! costs next to nothing on the polls its timer did not cause.
//!
//! actix's `run_interval` polls its timer on every poll of the actor, that is, twice per
//! echoed message, and as an item of the actor's context of its own; a tokio `Sleep` poll
//! registers the waker anew each time. A timer polled once keeps the waker it was given,
//! so this one is polled again only when it has elapsed or the actor's waker has changed.

use std::pin::Pin;
use std::task::{Context as TaskContext, Waker};
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

    /// Runs `on_tick` if the timer has elapsed; called at the start of every pump poll.
    pub(super) fn poll(
        &mut self,
        act: &mut WsConnection,
        ctx: &mut Context<WsConnection>,
        task: &mut TaskContext<'_>,
    ) {
        let current = matches!(&self.registered, Some(w) if w.will_wake(task.waker()));
        if current && !self.timer.is_elapsed() {
            return;
        }
        // With tokio's cooperative budget spent, the poll returns early without taking the
        // waker (and has the task polled again).
        let registers = tokio::task::coop::has_budget_remaining();
        // Loops at most twice: a freshly reset timer is not elapsed.
        while std::future::Future::poll(self.timer.as_mut(), task).is_ready() {
            act.on_tick(ctx);
            let next = Instant::now() + self.every;
            self.timer.as_mut().reset(next);
        }
        self.registered = registers.then(|| task.waker().clone());
    }
}
