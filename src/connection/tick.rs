//! When the connection's periodic check runs: a timer that costs next to nothing on the
//! polls it did not cause (what the check finds is the session's: see `liveness`).
//!
//! actix's `run_interval` polls its timer on every poll of the actor, twice per echoed
//! message, and a tokio `Sleep` poll registers the waker anew each time. A timer polled
//! once keeps the waker it was given, so this one is polled again only when it has
//! elapsed or the actor's waker has changed.

use std::pin::Pin;
use std::task::{Context as TaskContext, Waker};
use std::time::Duration;

use tokio::time::{sleep, Instant, Sleep};

use crate::settings::ConnectionSettings;

pub(super) struct Tick {
    every: Duration,
    timer: Pin<Box<Sleep>>,
    /// The waker the timer holds; `None` until its first poll.
    registered: Option<Waker>,
    /// With `metrics`, the timer runs at least once a second for the traffic report, and
    /// the check proper every `checks.1`-th time (never with `u32::MAX`): the check does
    /// what it did without the feature, as often.
    #[cfg(feature = "metrics")]
    checks: (u32, u32),
}

impl Tick {
    /// A check every `period(config)`, if any; needs a tokio runtime.
    #[cfg(not(feature = "metrics"))]
    pub(super) fn for_config(config: &ConnectionSettings) -> Option<Self> {
        let every = period(config)?;
        Some(Tick { every, timer: Box::pin(sleep(every)), registered: None })
    }

    /// A traffic report at least once a second, and the check every `period(config)`.
    #[cfg(feature = "metrics")]
    pub(super) fn for_config(config: &ConnectionSettings) -> Option<Self> {
        let check = period(config);
        let every = check.map_or(REPORT_EVERY, |c| c.min(REPORT_EVERY));
        let nth =
            check.map_or(u32::MAX, |c| (c.as_millis() / every.as_millis()).clamp(1, u32::MAX as u128) as u32);
        Some(Tick { every, timer: Box::pin(sleep(every)), registered: None, checks: (0, nth) })
    }

    /// Whether this time the check proper is due too (always, without `metrics`).
    pub(super) fn is_check(&mut self) -> bool {
        #[cfg(feature = "metrics")]
        {
            self.checks.0 += 1;
            if self.checks.0 < self.checks.1 {
                return false;
            }
            self.checks.0 = 0;
        }
        true
    }

    /// Whether the check is due; called at the start of every I/O loop poll.
    pub(super) fn poll(&mut self, task: &mut TaskContext<'_>) -> bool {
        let current = matches!(&self.registered, Some(w) if w.will_wake(task.waker()));
        if current && !self.timer.is_elapsed() {
            return false;
        }
        // With tokio's cooperative budget spent, the poll returns early without taking the
        // waker (and has the task polled again).
        let registers = tokio::task::coop::has_budget_remaining();
        let mut due = false;
        // Loops at most twice: a freshly reset timer is not elapsed.
        while std::future::Future::poll(self.timer.as_mut(), task).is_ready() {
            due = true;
            let next = Instant::now() + self.every;
            self.timer.as_mut().reset(next);
        }
        self.registered = registers.then(|| task.waker().clone());
        due
    }
}

/// The check's period: the heartbeat, or a quarter of the idle timeout if shorter; `None`
/// when both are off.
fn period(config: &ConnectionSettings) -> Option<Duration> {
    let every = match (config.heartbeat, config.idle_timeout) {
        (None, None) => return None,
        (Some(h), None) => h,
        (None, Some(i)) => i / 4,
        (Some(h), Some(i)) => h.min(i / 4),
    };
    Some(every.max(Duration::from_millis(5)))
}

/// How often, at least, a connection's traffic is added to the metrics' counters.
#[cfg(feature = "metrics")]
const REPORT_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::liveness::config;

    #[test]
    fn the_period_follows_the_shorter_timer() {
        assert_eq!(period(&config(30, 90)), Some(Duration::from_millis(22_500)));
        assert_eq!(period(&config(10, 90)), Some(Duration::from_secs(10)));
        let off = ConnectionSettings { heartbeat: None, idle_timeout: None, ..Default::default() };
        assert_eq!(period(&off), None);
    }

    #[tokio::test]
    #[cfg(feature = "metrics")]
    async fn with_metrics_the_timer_runs_once_a_second_and_the_check_as_often_as_without() {
        let t = Tick::for_config(&config(30, 90)).expect("a tick");
        assert_eq!((t.every, t.checks.1), (Duration::from_secs(1), 22));
        let mut t = Tick::for_config(&config(1, 2)).expect("a tick");
        assert_eq!((t.every, t.checks.1), (Duration::from_millis(500), 1));
        assert!(t.is_check() && t.is_check());
        let off = ConnectionSettings { heartbeat: None, idle_timeout: None, ..Default::default() };
        let mut t = Tick::for_config(&off).expect("a tick for the report alone");
        assert_eq!(t.every, Duration::from_secs(1));
        assert!((0..100).all(|_| !t.is_check()));
        let mut t = Tick::for_config(&config(5, 90)).expect("a tick");
        let checks: Vec<bool> = (0..10).map(|_| t.is_check()).collect();
        assert_eq!(checks.iter().filter(|c| **c).count(), 2, "every fifth: {checks:?}");
    }
}
