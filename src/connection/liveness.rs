//! When the peer was last heard from, and what the periodic check must do about it: a
//! ping when it has been quiet for the heartbeat, the end at the idle timeout. Plain data
//! and time arithmetic; knows nothing of timers, sockets or actors.

use crate::settings::ConnectionSettings;

/// What the periodic check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    Nothing,
    Ping,
    IdleTimeout,
}

/// When the peer was last heard from, and when we last pinged it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Liveness {
    last_activity: std::time::Instant,
    last_ping: std::time::Instant,
}

impl Liveness {
    pub(super) fn new(now: std::time::Instant) -> Self {
        Liveness { last_activity: now, last_ping: now }
    }

    /// Something arrived (bytes from the peer, or the target's answer).
    pub(super) fn heard(&mut self, now: std::time::Instant) {
        self.last_activity = now;
    }

    /// What a check at `now` must do.
    pub(super) fn check(&mut self, now: std::time::Instant, config: &ConnectionSettings) -> Due {
        let idle = now.saturating_duration_since(self.last_activity);
        if config.idle_timeout.is_some_and(|limit| idle >= limit) {
            return Due::IdleTimeout;
        }
        match config.heartbeat {
            Some(every) if idle >= every && now.saturating_duration_since(self.last_ping) >= every => {
                self.last_ping = now;
                Due::Ping
            }
            _ => Due::Nothing,
        }
    }
}

/// Settings with this heartbeat and idle timeout, in seconds, for the tests of the check
/// and of what runs it.
#[cfg(test)]
pub(super) fn config(heartbeat: u64, idle: u64) -> ConnectionSettings {
    use std::time::Duration;
    ConnectionSettings {
        heartbeat: Some(Duration::from_secs(heartbeat)),
        idle_timeout: Some(Duration::from_secs(idle)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_quiet_peer_is_pinged_once_per_period_then_timed_out() {
        let start = std::time::Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let cfg = config(30, 90);
        let mut l = Liveness::new(start);
        assert_eq!(l.check(at(29), &cfg), Due::Nothing);
        assert_eq!(l.check(at(30), &cfg), Due::Ping);
        assert_eq!(l.check(at(45), &cfg), Due::Nothing, "one ping per heartbeat");
        assert_eq!(l.check(at(60), &cfg), Due::Ping);
        assert_eq!(l.check(at(90), &cfg), Due::IdleTimeout);
    }

    #[test]
    fn hearing_from_the_peer_restarts_the_clock() {
        let start = std::time::Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let cfg = config(30, 90);
        let mut l = Liveness::new(start);
        l.heard(at(80));
        assert_eq!(l.check(at(100), &cfg), Due::Nothing);
        assert_eq!(l.check(at(110), &cfg), Due::Ping);
        assert_eq!(l.check(at(170), &cfg), Due::IdleTimeout);
    }
}
