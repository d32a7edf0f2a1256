//! How the node's link to Redis stands, as the node's task last saw it: for readiness
//! checks, status pages and the metrics. A link can be connected and still carry
//! nothing (a subscription lost in a failover, a server that stopped); the node's own
//! heartbeat coming back on its subscription is what tells.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// This node's link to Redis now: [`Cluster::broker_status`](super::Cluster::broker_status).
///
/// ```no_run
/// # use actix_meta_websocket::Cluster;
/// # fn demo(cluster: &Cluster) {
/// let s = cluster.broker_status();
/// println!("{} via {:?}, {} reconnects, last outage {:?}", s.up, s.server, s.reconnects, s.last_outage);
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStatus {
    /// Whether the link is made: subscriptions and presence written.
    pub up: bool,
    /// The server in use, or last used (`host:port`; under Sentinel, the primary it named).
    pub server: Option<String>,
    /// How long the node's last heartbeat has been waiting to come back on its
    /// subscription, when it is overdue (more than two heartbeats): the link may be
    /// silent, and is re-made at the probe timeout.
    pub silent_for: Option<Duration>,
    /// Times the link was lost and made again.
    pub reconnects: u64,
    /// The last outage, from the loss to the link made again.
    pub last_outage: Option<Duration>,
    /// Times the link was re-made because its subscription carried nothing back.
    pub probe_timeouts: u64,
}

#[derive(Default)]
struct Seen {
    server: Option<String>,
    /// When the oldest heartbeat not yet back on the subscription was sent.
    waiting_since: Option<Instant>,
    down_since: Option<Instant>,
    reconnects: u64,
    last_outage: Option<Duration>,
    probe_timeouts: u64,
}

/// What the task writes and the handle reads.
pub(crate) struct Health {
    seen: Mutex<Seen>,
    /// Overdue past this: two heartbeats.
    overdue: Duration,
}

impl Health {
    pub(crate) fn new(heartbeat: Duration) -> Self {
        Health { seen: Mutex::default(), overdue: heartbeat * 2 }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        // Plain values: whole after a panic elsewhere.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The link is made, to `server`; the outage it ends, if it ends one.
    pub(crate) fn connected(&self, server: &str) -> Option<Duration> {
        let mut seen = self.seen();
        seen.server = Some(server.to_owned());
        seen.waiting_since = None;
        let outage = seen.down_since.take().map(|t| t.elapsed());
        if let Some(outage) = outage {
            seen.reconnects += 1;
            seen.last_outage = Some(outage);
            crate::telemetry::cluster_outage(outage);
        }
        outage
    }

    /// The link is lost: the outage counts from the oldest heartbeat that did not come
    /// back, when one was waiting (a silent subscription is an outage already).
    pub(crate) fn lost(&self) {
        let mut seen = self.seen();
        let since = seen.waiting_since.take().unwrap_or_else(Instant::now);
        seen.down_since.get_or_insert(since);
    }

    /// A heartbeat went out; `Some` with how long the oldest one has waited, past `timeout`.
    pub(crate) fn heartbeat_sent(&self, timeout: Duration) -> Option<Duration> {
        let mut seen = self.seen();
        let waited = seen.waiting_since.get_or_insert_with(Instant::now).elapsed();
        if waited <= timeout {
            return None;
        }
        seen.probe_timeouts += 1;
        crate::telemetry::cluster_probe_timeout();
        Some(waited)
    }

    /// A heartbeat of this node's came back on its subscription.
    pub(crate) fn heartbeat_back(&self) {
        self.seen().waiting_since = None;
    }

    pub(crate) fn status(&self, up: bool) -> BrokerStatus {
        let seen = self.seen();
        let silent_for = seen.waiting_since.map(|t| t.elapsed()).filter(|w| *w > self.overdue);
        BrokerStatus {
            up,
            server: seen.server.clone(),
            silent_for: if up { silent_for } else { None },
            reconnects: seen.reconnects,
            last_outage: seen.last_outage,
            probe_timeouts: seen.probe_timeouts,
        }
    }
}
