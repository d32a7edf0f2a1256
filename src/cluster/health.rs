//! How the node's link to Redis stands, as the node's task last saw it: for readiness
//! checks, status pages and the metrics. A link can be connected and still carry
//! nothing (a subscription lost in a failover, a server that stopped); the node's own
//! heartbeat coming back on its subscription is what tells.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// subscription, when it is overdue (more than two heartbeats), or under Redis
    /// Cluster how long a shard has carried nothing, past three heartbeats (the longer
    /// of the two): the link may be silent, and is re-made at the probe timeout.
    pub silent_for: Option<Duration>,
    /// Times the link was lost and made again.
    pub reconnects: u64,
    /// The last outage, from the loss to the link made again.
    pub last_outage: Option<Duration>,
    /// Times the link was re-made because its subscription carried nothing back.
    pub probe_timeouts: u64,
    /// Under Redis Cluster, each primary the node listens to and how long its shard's
    /// subscription has carried nothing (a shard quiet past three heartbeats has not
    /// carried back the probe sent to it: [`silent_for`](Self::silent_for) says so too).
    /// Empty on other deployments, and while the link is down.
    pub shards: Vec<ShardStatus>,
}

/// One shard's subscription, in [`BrokerStatus::shards`].
///
/// ```no_run
/// # use actix_meta_websocket::Cluster;
/// # fn demo(cluster: &Cluster) {
/// for shard in cluster.broker_status().shards {
///     println!("{}: quiet for {:?}", shard.server, shard.quiet_for);
/// }
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardStatus {
    /// The shard's primary (`host:port`).
    pub server: String,
    /// Since its subscription last carried anything: a message, a node's heartbeat (each
    /// goes to one shard, in turn) or a probe, another node's or this node's own.
    pub quiet_for: Duration,
}

/// When each shard's subscription last carried something, written by the subscription
/// reader for every message (an atomic store, no lock) and read by the status.
pub(crate) struct ShardClock {
    base: Instant,
    servers: Vec<String>,
    /// Milliseconds after `base`.
    heard: Vec<AtomicU64>,
}

impl ShardClock {
    pub(crate) fn new(servers: Vec<String>) -> Arc<Self> {
        let heard = servers.iter().map(|_| AtomicU64::new(0)).collect();
        Arc::new(ShardClock { base: Instant::now(), servers, heard })
    }

    pub(crate) fn len(&self) -> usize {
        self.heard.len()
    }

    pub(crate) fn server(&self, shard: usize) -> &str {
        self.servers.get(shard).map_or("", String::as_str)
    }

    /// `shard` carried something now.
    pub(crate) fn heard(&self, shard: usize) {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Some(h) = self.heard.get(shard) {
            h.store(now, Ordering::Relaxed);
        }
    }

    /// When `shard` last carried something.
    pub(crate) fn last(&self, shard: usize) -> Instant {
        let ms = self.heard.get(shard).map_or(0, |h| h.load(Ordering::Relaxed));
        self.base + Duration::from_millis(ms)
    }

    fn status(&self) -> Vec<ShardStatus> {
        (0..self.len())
            .map(|shard| ShardStatus {
                server: self.server(shard).to_owned(),
                quiet_for: self.last(shard).elapsed(),
            })
            .collect()
    }
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
    shards: Option<Arc<ShardClock>>,
    /// The primaries last given to the metrics, to report those that go.
    reported: Vec<String>,
}

/// What the task writes and the handle reads.
pub(crate) struct Health {
    seen: Mutex<Seen>,
    /// Overdue past this: two heartbeats.
    overdue: Duration,
    /// A shard is overdue past this: three heartbeats (probed once quiet for one and a
    /// half, at the next heartbeat).
    shard_overdue: Duration,
}

impl Health {
    pub(crate) fn new(heartbeat: Duration) -> Self {
        Health { seen: Mutex::default(), overdue: heartbeat * 2, shard_overdue: heartbeat * 3 }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        // Plain values: whole after a panic elsewhere.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The link is made, to `server` (and to the shards `shards` watches, under Redis
    /// Cluster); the outage it ends, if it ends one.
    pub(crate) fn connected(&self, server: &str, shards: Option<Arc<ShardClock>>) -> Option<Duration> {
        let mut seen = self.seen();
        seen.server = Some(server.to_owned());
        seen.shards = shards;
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
        seen.shards = None;
        let since = seen.waiting_since.take().unwrap_or_else(Instant::now);
        seen.down_since.get_or_insert(since);
        Self::report(&mut seen);
    }

    /// Under Redis Cluster, at a heartbeat: each shard's link to the metrics.
    pub(crate) fn report_shards(&self) {
        Self::report(&mut self.seen());
    }

    fn report(seen: &mut Seen) {
        let now = seen.shards.as_ref().map(|c| c.status()).unwrap_or_default();
        if now.is_empty() && seen.reported.is_empty() {
            return;
        }
        for gone in seen.reported.iter().filter(|&r| !now.iter().any(|s| s.server == *r)) {
            crate::telemetry::cluster_shard(gone, None);
        }
        for shard in &now {
            crate::telemetry::cluster_shard(&shard.server, Some(shard.quiet_for));
        }
        seen.reported = now.into_iter().map(|s| s.server).collect();
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

    /// Under Redis Cluster, a shard's subscription has carried nothing (not even the
    /// node's probe) since `since`: a probe timeout, and the outage counts from then.
    pub(crate) fn shard_silent(&self, since: Instant) {
        let mut seen = self.seen();
        seen.probe_timeouts += 1;
        crate::telemetry::cluster_probe_timeout();
        seen.waiting_since = Some(seen.waiting_since.map_or(since, |w| w.min(since)));
    }

    /// A heartbeat of this node's came back on its subscription.
    pub(crate) fn heartbeat_back(&self) {
        self.seen().waiting_since = None;
    }

    pub(crate) fn status(&self, up: bool) -> BrokerStatus {
        let seen = self.seen();
        let shards = match (&seen.shards, up) {
            (Some(clock), true) => clock.status(),
            _ => Vec::new(),
        };
        let heartbeat = seen.waiting_since.map(|t| t.elapsed()).filter(|w| *w > self.overdue);
        let shard = shards.iter().map(|s| s.quiet_for).filter(|q| *q > self.shard_overdue).max();
        let silent_for = heartbeat.max(shard);
        BrokerStatus {
            up,
            server: seen.server.clone(),
            silent_for: if up { silent_for } else { None },
            reconnects: seen.reconnects,
            last_outage: seen.last_outage,
            probe_timeouts: seen.probe_timeouts,
            shards,
        }
    }
}
