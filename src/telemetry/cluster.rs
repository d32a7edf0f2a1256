//! What a cluster's node tells the metrics recorder: its link, Redis round trips, what it
//! publishes and receives, gaps, nodes, and members closed before a gap.

#[cfg(feature = "metrics")]
use metrics::{counter, gauge, histogram};

#[cfg(feature = "metrics")]
use super::*;

/// `n` members closed before a gap history cannot fill.
#[inline]
pub(crate) fn gap_closes(n: usize) {
    #[cfg(feature = "metrics")]
    counter!(HISTORY_GAP_CLOSES).increment(n as u64);
    let _ = n;
}

/// The cluster's link to Redis went up or down.
#[inline]
pub(crate) fn cluster_link(up: bool) {
    #[cfg(feature = "metrics")]
    gauge!(CLUSTER_LINK_UP).set(if up { 1.0 } else { 0.0 });
    let _ = up;
}

/// A Redis command of the cluster's took `took`.
#[inline]
pub(crate) fn redis_round_trip(took: std::time::Duration) {
    #[cfg(feature = "metrics")]
    histogram!(CLUSTER_REDIS_ROUND_TRIP).record(took.as_secs_f64());
    let _ = took;
}

/// The cluster published `n` messages to Redis.
#[inline]
pub(crate) fn cluster_published(n: usize) {
    #[cfg(feature = "metrics")]
    counter!(CLUSTER_PUBLISHED).increment(n as u64);
    let _ = n;
}

/// The cluster received a message from Redis.
#[inline]
pub(crate) fn cluster_received() {
    #[cfg(feature = "metrics")]
    counter!(CLUSTER_RECEIVED).increment(1);
}

/// The cluster told a `Gap` with `cause`.
#[inline]
pub(crate) fn cluster_gap(cause: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(CLUSTER_GAPS, "cause" => cause).increment(1);
    let _ = cause;
}

/// The cluster sees `n` nodes alive.
#[inline]
pub(crate) fn cluster_nodes(n: usize) {
    #[cfg(feature = "metrics")]
    gauge!(CLUSTER_NODES).set(n as f64);
    let _ = n;
}

/// The link to Redis is back after `outage`.
#[inline]
pub(crate) fn cluster_outage(outage: std::time::Duration) {
    #[cfg(feature = "metrics")]
    histogram!(CLUSTER_OUTAGE).record(outage.as_secs_f64());
    let _ = outage;
}

/// The link was re-made for a silent subscription.
#[inline]
pub(crate) fn cluster_probe_timeout() {
    #[cfg(feature = "metrics")]
    counter!(CLUSTER_PROBE_TIMEOUTS).increment(1);
}

/// `n` broadcasts reached no node.
#[inline]
pub(crate) fn cluster_unheard(n: usize) {
    #[cfg(feature = "metrics")]
    counter!(CLUSTER_UNHEARD).increment(n as u64);
    let _ = n;
}

/// Under Redis Cluster, the node's link to the shard whose primary is `server`: up, and
/// quiet (its subscription carrying nothing) for `quiet`, or no longer linked.
#[inline]
pub(crate) fn cluster_shard(server: &str, quiet: Option<std::time::Duration>) {
    #[cfg(feature = "metrics")]
    {
        let up = if quiet.is_some() { 1.0 } else { 0.0 };
        gauge!(CLUSTER_SHARD_UP, "server" => server.to_owned()).set(up);
        if let Some(quiet) = quiet {
            gauge!(CLUSTER_SHARD_QUIET, "server" => server.to_owned()).set(quiet.as_secs_f64());
        }
    }
    let _ = (server, quiet);
}
