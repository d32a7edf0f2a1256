//! The metrics' names, as constants for dashboards and tests, and their descriptions.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Gauge, by `role` (`accepted`, `dialled`): connections open now.
pub const CONNECTIONS: &str = "amw_connections";
/// Counter, by `role`: connections opened since the start.
pub const CONNECTIONS_OPENED: &str = "amw_connections_opened_total";
/// Counter, by `outcome`: upgrade requests a `WsHandler` answered (`upgraded`,
/// `bad_request`, `method_not_allowed`, `bad_version`, `refused_origin`, `shut_down`,
/// `unavailable`, `no_target`). A request the application refuses before handing it to
/// the handler, or whose head does not arrive within the handshake timeout (answered by
/// the HTTP layer), is not counted here.
pub const HANDSHAKES: &str = "amw_handshakes_total";
/// Counter, by `outcome` (`connected`, `failed`): dials.
pub const DIALS: &str = "amw_dials_total";
/// Counter, by `role`: data messages received (and handed to the target).
pub const MESSAGES_RECEIVED: &str = "amw_messages_received_total";
/// Counter, by `role`: messages accepted for writing (data, ping and pong).
pub const MESSAGES_SENT: &str = "amw_messages_sent_total";
/// Counter, by `role`: payload bytes of the data messages received, after inflating.
pub const PAYLOAD_RECEIVED: &str = "amw_payload_received_bytes_total";
/// Counter, by `role`: payload bytes of the messages accepted for writing.
pub const PAYLOAD_SENT: &str = "amw_payload_sent_bytes_total";
/// Counter, by `role`: bytes read from the wire (frame headers and compressed payloads).
pub const WIRE_RECEIVED: &str = "amw_wire_received_bytes_total";
/// Counter, by `role`: bytes written to the wire.
pub const WIRE_SENT: &str = "amw_wire_sent_bytes_total";
/// Gauge: bytes waiting to be written, encoded or queued, over all connections.
pub const WRITE_QUEUE: &str = "amw_write_queue_bytes";
/// Counter, by `code` (`1000` to `1015`, `3xxx`, `4xxx`, `other`) and `initiator` (`peer`,
/// `local`, `none` when TCP ended without a closing handshake): connections ended.
pub const CLOSES: &str = "amw_closes_total";
/// Counter: connections closed with 1008 because the peer did not take what was written.
pub const SLOW_CONSUMER_CLOSES: &str = "amw_slow_consumer_closes_total";
/// Gauge: groups on this node, with members, watchers or history (every `Groups` and the
/// cluster's).
pub const GROUPS: &str = "amw_groups";
/// Gauge: memberships on this node (a connection in three groups counts three times).
pub const GROUP_MEMBERS: &str = "amw_group_members";
/// Counter: broadcasts to a group, on the node that delivers them.
pub const BROADCASTS: &str = "amw_broadcasts_total";
/// Counter: connections a broadcast was handed to.
pub const DELIVERIES: &str = "amw_deliveries_total";
/// Counter: deliveries of broadcasts skipped because the member's worker thread was too
/// far behind (`Groups::with_thread_backlog`); a member of a group with history is closed
/// with 1013 instead, and recovers.
pub const BACKLOG_SKIPS: &str = "amw_backlog_skips_total";
/// Counter, by `result` (`recovered`, `other_epoch`, `too_old`, `too_far_behind`, `ahead`,
/// `unavailable`): joins since a position.
pub const RECOVERIES: &str = "amw_recoveries_total";
/// Counter: members closed because history could not give back what they would miss.
pub const HISTORY_GAP_CLOSES: &str = "amw_history_gap_closes_total";
/// Gauge: 1 while the cluster's link to Redis is up, 0 otherwise.
pub const CLUSTER_LINK_UP: &str = "amw_cluster_link_up";
/// Histogram: Redis round trips of the cluster's commands, in seconds.
pub const CLUSTER_REDIS_ROUND_TRIP: &str = "amw_cluster_redis_round_trip_seconds";
/// Counter: messages this node published to Redis.
pub const CLUSTER_PUBLISHED: &str = "amw_cluster_published_total";
/// Counter: messages this node received from Redis.
pub const CLUSTER_RECEIVED: &str = "amw_cluster_received_total";
/// Counter, by `cause` (`reconnected`, `overflow`, `missed`): `ClusterEvent::Gap`s.
pub const CLUSTER_GAPS: &str = "amw_cluster_gaps_total";
/// Gauge: nodes of the cluster this node sees alive, itself included.
pub const CLUSTER_NODES: &str = "amw_cluster_nodes";
/// Histogram: outages of the link to Redis, from the loss to the link made again (seconds).
pub const CLUSTER_OUTAGE: &str = "amw_cluster_outage_seconds";
/// Counter: links to Redis re-made because the node's heartbeat did not come back on its
/// subscription (a silent subscription).
pub const CLUSTER_PROBE_TIMEOUTS: &str = "amw_cluster_probe_timeouts_total";
/// Gauge, by `server` (a primary's `host:port`): under Redis Cluster, 1 while this node's
/// link to that shard is up, 0 once it is lost or the primary left the map of slots.
pub const CLUSTER_SHARD_UP: &str = "amw_cluster_shard_up";
/// Gauge, by `server`: under Redis Cluster, how long that shard's subscription had carried
/// nothing at the node's last heartbeat (seconds; past three heartbeats the shard is
/// overdue, and past the probe timeout the node remakes its links).
pub const CLUSTER_SHARD_QUIET: &str = "amw_cluster_shard_quiet_seconds";
/// Counter: broadcasts that no node received (the group's channel had no subscriber, not
/// even the sender's node).
pub const CLUSTER_UNHEARD: &str = "amw_cluster_unheard_total";

/// The buckets, in seconds, that suit [`CLUSTER_REDIS_ROUND_TRIP`] (loopback to a distant
/// region), for the exporter's histogram settings.
pub const ROUND_TRIP_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Gives the installed recorder a description and unit of every metric, for the `# HELP`
/// lines of a Prometheus scrape. Call it after installing the recorder.
///
/// ```no_run
/// use actix_meta_websocket::telemetry;
/// use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let round_trips = Matcher::Full(telemetry::CLUSTER_REDIS_ROUND_TRIP.into());
/// let handle = PrometheusBuilder::new()
///     .set_buckets_for_metric(round_trips, telemetry::ROUND_TRIP_BUCKETS)?
///     .install_recorder()?;
/// telemetry::describe();
/// let text = handle.render(); // Prometheus text, for /metrics
/// # Ok(()) }
/// ```
pub fn describe() {
    describe_gauge!(CONNECTIONS, Unit::Count, "Connections open now");
    describe_counter!(CONNECTIONS_OPENED, Unit::Count, "Connections opened");
    describe_counter!(HANDSHAKES, Unit::Count, "Upgrade requests answered, by outcome");
    describe_counter!(DIALS, Unit::Count, "Dials, by outcome");
    describe_counter!(MESSAGES_RECEIVED, Unit::Count, "Data messages received");
    describe_counter!(MESSAGES_SENT, Unit::Count, "Messages accepted for writing");
    describe_counter!(PAYLOAD_RECEIVED, Unit::Bytes, "Payload bytes received, after inflating");
    describe_counter!(PAYLOAD_SENT, Unit::Bytes, "Payload bytes accepted for writing");
    describe_counter!(WIRE_RECEIVED, Unit::Bytes, "Bytes read from the wire");
    describe_counter!(WIRE_SENT, Unit::Bytes, "Bytes written to the wire");
    describe_gauge!(WRITE_QUEUE, Unit::Bytes, "Bytes waiting to be written");
    describe_counter!(CLOSES, Unit::Count, "Connections ended, by close code and initiator");
    describe_counter!(
        SLOW_CONSUMER_CLOSES,
        Unit::Count,
        "Connections closed for not taking what was written"
    );
    describe_gauge!(GROUPS, Unit::Count, "Groups on this node");
    describe_gauge!(GROUP_MEMBERS, Unit::Count, "Memberships on this node");
    describe_counter!(BROADCASTS, Unit::Count, "Broadcasts delivered on this node");
    describe_counter!(DELIVERIES, Unit::Count, "Connections broadcasts were handed to");
    describe_counter!(BACKLOG_SKIPS, Unit::Count, "Deliveries skipped for a worker thread too far behind");
    describe_counter!(RECOVERIES, Unit::Count, "Joins since a position, by result");
    describe_counter!(HISTORY_GAP_CLOSES, Unit::Count, "Members closed before a gap history cannot fill");
    describe_gauge!(CLUSTER_LINK_UP, Unit::Count, "1 while the link to Redis is up");
    describe_histogram!(CLUSTER_REDIS_ROUND_TRIP, Unit::Seconds, "Redis round trips");
    describe_counter!(CLUSTER_PUBLISHED, Unit::Count, "Messages published to Redis");
    describe_counter!(CLUSTER_RECEIVED, Unit::Count, "Messages received from Redis");
    describe_counter!(CLUSTER_GAPS, Unit::Count, "Cluster gaps, by cause");
    describe_gauge!(CLUSTER_NODES, Unit::Count, "Cluster nodes alive, this one included");
    describe_histogram!(CLUSTER_OUTAGE, Unit::Seconds, "Outages of the link to Redis");
    describe_counter!(CLUSTER_PROBE_TIMEOUTS, Unit::Count, "Links re-made for a silent subscription");
    describe_counter!(CLUSTER_UNHEARD, Unit::Count, "Broadcasts no node received");
    describe_gauge!(CLUSTER_SHARD_UP, Unit::Count, "Redis Cluster: 1 while the link to this shard is up");
    describe_gauge!(
        CLUSTER_SHARD_QUIET,
        Unit::Seconds,
        "Redis Cluster: how long this shard's subscription had carried nothing"
    );
}
