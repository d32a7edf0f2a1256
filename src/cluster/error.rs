//! What can go wrong in a cluster.

use super::ids::NodeId;

/// Joining or asking the cluster failed (see [`Cluster`](super::Cluster)'s examples).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Redis could not be reached or refused us (the URL's password is never in this).
    #[error("redis: {0}")]
    Redis(String),
    /// The options cannot work (see [`ClusterOptions`](super::ClusterOptions)).
    #[error("invalid cluster options: {0}")]
    Invalid(String),
    /// The node has no link to Redis right now; it is reconnecting.
    #[error("the broker (Redis) is down; retry once ClusterEvent::BrokerUp is told")]
    BrokerDown,
    /// The cluster handle has been shut down.
    #[error("the cluster has been left (Cluster::leave): join again for a new handle")]
    Stopped,
}

/// Why a message for a [`GlobalId`](super::GlobalId) was not accepted (the second
/// example of [`Cluster`](super::Cluster) answers some).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterSendError {
    /// This node has no link to Redis right now: nothing is queued for later.
    #[error("the broker (Redis) is down: nothing was queued; retry once ClusterEvent::BrokerUp is told")]
    BrokerDown,
    /// No node by that id listens (it ended, or never was).
    #[error("node {0} is not in the cluster (it ended, or the id is stale): drop the id")]
    NoSuchNode(NodeId),
    /// The node is there, the connection is not (it ended).
    #[error("no such connection on its node (it ended): drop the id")]
    NoSuchConnection,
    /// The connection is behind on its writes ([`TrySendError::Full`](crate::TrySendError)).
    #[error("the connection's write buffer is full (its peer is behind): retry later or drop the message")]
    Full,
    /// The connection is closing.
    #[error("the connection is closing")]
    Closed,
    /// The owning node did not answer within the send timeout.
    #[error("no answer from the owning node within the send timeout: the message may or may not have been written")]
    Timeout,
    /// More than `max_queued` bytes wait for Redis already.
    #[error(
        "more than max_queued bytes wait for the broker: retry later, or raise ClusterOptions::max_queued"
    )]
    Overflow,
    /// The cluster handle has been shut down.
    #[error("the cluster has been left (Cluster::leave): join again for a new handle")]
    Stopped,
}
