//! What the crate tells a [`metrics`](https://docs.rs/metrics) recorder, with the feature
//! `metrics`: connections, handshakes, traffic, closes, groups, the cluster and history.
//!
//! Install a recorder (e.g. `metrics-exporter-prometheus`) before the first connection:
//! each connection adds its traffic to the counters on its periodic check (at least once
//! a second) and when it ends, never per message, so the counters cost the echo path
//! nothing and lag it by a second at most. Labels are bounded sets (no connection ids,
//! no group names). Without the feature, this module is empty and every call the crate
//! makes into it compiles to nothing.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `amw_connections` | gauge | `role` |
//! | `amw_connections_opened_total` | counter | `role` |
//! | `amw_handshakes_total` | counter | `outcome` |
//! | `amw_dials_total` | counter | `outcome` |
//! | `amw_messages_received_total`, `amw_messages_sent_total` | counter | `role` |
//! | `amw_payload_received_bytes_total`, `amw_payload_sent_bytes_total` | counter | `role` |
//! | `amw_wire_received_bytes_total`, `amw_wire_sent_bytes_total` | counter | `role` |
//! | `amw_write_queue_bytes` | gauge | |
//! | `amw_closes_total` | counter | `code`, `initiator` |
//! | `amw_slow_consumer_closes_total` | counter | |
//! | `amw_groups`, `amw_group_members` | gauge | |
//! | `amw_broadcasts_total`, `amw_deliveries_total`, `amw_backlog_skips_total` | counter | |
//! | `amw_recoveries_total` | counter | `result` |
//! | `amw_history_gap_closes_total` | counter | |
//! | `amw_cluster_link_up`, `amw_cluster_nodes` | gauge | |
//! | `amw_cluster_redis_round_trip_seconds` | histogram | |
//! | `amw_cluster_published_total`, `amw_cluster_received_total` | counter | |
//! | `amw_cluster_gaps_total` | counter | `cause` |
//! | `amw_cluster_outage_seconds` | histogram | |
//! | `amw_cluster_probe_timeouts_total`, `amw_cluster_unheard_total` | counter | |
//! | `amw_cluster_shard_up`, `amw_cluster_shard_quiet_seconds` (Redis Cluster) | gauge | `server` |
//!
//! The guide's chapter [operating](crate::guide::ch07_operating) installs a Prometheus
//! recorder with `describe()` and the round-trip buckets, and reads the figures.

#[cfg(feature = "metrics")]
mod names;
#[cfg(feature = "metrics")]
pub use names::*;

#[cfg(feature = "cluster")]
mod cluster;
#[cfg(feature = "cluster")]
pub(crate) use cluster::*;
mod traffic;
#[cfg(feature = "metrics")]
pub(crate) use traffic::Flow;
pub(crate) use traffic::Reported;

#[cfg(feature = "metrics")]
use std::sync::OnceLock;

#[cfg(feature = "metrics")]
use metrics::{counter, gauge, Counter, Gauge};

use crate::message::{DisconnectReason, Initiator};
use crate::protocol::Role;

#[cfg(feature = "metrics")]
fn role_label(role: Role) -> &'static str {
    role.label()
}

/// A connection started.
#[inline]
pub(crate) fn connection_opened(role: Role) {
    #[cfg(feature = "metrics")]
    {
        let h = traffic::handles(role);
        h.open.increment(1.0);
        h.opened.increment(1);
    }
    let _ = role;
}

/// A connection ended, for `reason`.
#[inline]
pub(crate) fn connection_closed(role: Role, reason: &DisconnectReason) {
    #[cfg(feature = "metrics")]
    {
        traffic::handles(role).open.decrement(1.0);
        let initiator = match reason {
            DisconnectReason::Closed { initiator: Initiator::Peer, .. } => 0,
            DisconnectReason::ConnectionLost(_) => 1,
            _ => 2,
        };
        closes(reason.code().0, initiator).increment(1);
        if *reason == DisconnectReason::SlowConsumer {
            counter!(SLOW_CONSUMER_CLOSES).increment(1);
        }
    }
    let _ = (role, reason, Initiator::Peer);
}

/// The bounded labels of close codes: the registered codes one by one, the rest by range.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
const CODE_LABELS: [&str; 19] = [
    "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010", "1011", "1012",
    "1013", "1014", "1015", "3xxx", "4xxx", "other",
];

/// `code`'s place in `CODE_LABELS`.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn code_index(code: u16) -> usize {
    match code {
        1000..=1015 => usize::from(code - 1000),
        3000..=3999 => 16,
        4000..=4999 => 17,
        _ => 18,
    }
}

/// The closes counter for `code` and initiator (0 peer, 1 none, 2 local), registered on
/// its first use: a label set seen once costs a lookup once.
#[cfg(feature = "metrics")]
fn closes(code: u16, initiator: usize) -> &'static metrics::Counter {
    use std::sync::OnceLock;
    const INITIATORS: [&str; 3] = ["peer", "none", "local"];
    static SLOTS: [[OnceLock<metrics::Counter>; 3]; 19] = [const { [const { OnceLock::new() }; 3] }; 19];
    let i = code_index(code);
    SLOTS[i][initiator]
        .get_or_init(|| counter!(CLOSES, "code" => CODE_LABELS[i], "initiator" => INITIATORS[initiator]))
}

/// An upgrade request answered with `outcome` (see [`HANDSHAKES`]).
#[inline]
pub(crate) fn handshake(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    {
        static UPGRADED: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
        match outcome {
            "upgraded" => UPGRADED.get_or_init(|| counter!(HANDSHAKES, "outcome" => "upgraded")).increment(1),
            _ => counter!(HANDSHAKES, "outcome" => outcome).increment(1),
        }
    }
    let _ = outcome;
}

/// A dial ended its handshake with `connected` or `failed`.
#[inline]
pub(crate) fn dial(connected: bool) {
    #[cfg(feature = "metrics")]
    counter!(DIALS, "outcome" => if connected { "connected" } else { "failed" }).increment(1);
    let _ = connected;
}

/// Groups on this node: one more (`+1`) or one fewer (`-1`).
#[inline]
pub(crate) fn groups(change: i8) {
    #[cfg(feature = "metrics")]
    {
        static GAUGE: OnceLock<Gauge> = OnceLock::new();
        GAUGE.get_or_init(|| gauge!(GROUPS)).increment(f64::from(change));
    }
    let _ = change;
}

/// Memberships on this node changed by `change`.
#[inline]
pub(crate) fn members(change: i64) {
    #[cfg(feature = "metrics")]
    {
        static GAUGE: OnceLock<Gauge> = OnceLock::new();
        GAUGE.get_or_init(|| gauge!(GROUP_MEMBERS)).increment(change as f64);
    }
    let _ = change;
}

/// A broadcast handed to `deliveries` connections on this node, and not to `skipped`
/// whose worker thread was too far behind.
#[inline]
pub(crate) fn broadcast(deliveries: usize, skipped: usize) {
    #[cfg(feature = "metrics")]
    {
        // Once per broadcast: registered once, not looked up each time.
        static BROADCASTED: OnceLock<(Counter, Counter)> = OnceLock::new();
        let (broadcasts, delivered) =
            BROADCASTED.get_or_init(|| (counter!(BROADCASTS), counter!(DELIVERIES)));
        broadcasts.increment(1);
        delivered.increment(deliveries as u64);
        if skipped > 0 {
            counter!(BACKLOG_SKIPS).increment(skipped as u64);
        }
    }
    let _ = (deliveries, skipped);
}

/// A join since a position ended with `result` (see [`RECOVERIES`]).
#[inline]
pub(crate) fn recovery(result: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(RECOVERIES, "result" => result).increment(1);
    let _ = result;
}

#[cfg(test)]
mod tests {
    use super::{code_index, CODE_LABELS};

    #[test]
    fn close_codes_make_a_bounded_label_set() {
        let code_label = |code| CODE_LABELS[code_index(code)];
        assert_eq!(code_label(1000), "1000");
        assert_eq!(code_label(1015), "1015");
        assert_eq!(code_label(1016), "other");
        assert_eq!(code_label(3000), "3xxx");
        assert_eq!(code_label(4999), "4xxx");
        assert_eq!(code_label(5000), "other");
        assert_eq!(code_label(0), "other");
    }
}
