//! What a node tells the actors that subscribe to it.

use std::sync::Arc;

use super::ids::{GlobalId, NodeId};
use crate::groups::{PresenceChange, Unrecoverable};

/// One member of a group anywhere in the cluster, as
/// [`Cluster::members`](super::Cluster::members) lists them.
///
/// ```no_run
/// # use actix_meta_websocket::{cluster::{ClusterError, ClusterMember}, Cluster};
/// # async fn demo(cluster: Cluster) -> Result<(), ClusterError> {
/// let here: Vec<ClusterMember> = cluster.members("lobby").await?;
/// let mine = here.iter().filter(|m| m.id.node() == cluster.node()).count();
/// println!("{} in the lobby, {mine} on this node", here.len());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterMember {
    /// Its connection, on whichever node holds it.
    pub id: GlobalId,
    /// The metadata it joined with.
    pub meta: Arc<str>,
}

/// What happened in the cluster: sent to the actors given to
/// [`Cluster::subscribe`](super::Cluster::subscribe) (everything but presence) and
/// [`Cluster::watch`](super::Cluster::watch) (one group's presence).
///
/// ```
/// use actix::prelude::*;
/// use actix_meta_websocket::cluster::{ClusterEvent, GapCause};
///
/// struct Ops;
/// impl Actor for Ops { type Context = Context<Self>; }
/// impl Handler<ClusterEvent> for Ops {
///     type Result = ();
///     fn handle(&mut self, e: ClusterEvent, _: &mut Context<Self>) {
///         match e {
///             ClusterEvent::Gap(GapCause::Reconnected { outage }) => println!("Redis was away {outage:?}: resync"),
///             ClusterEvent::Gap(cause) => println!("messages may be lost ({cause:?}): resync"),
///             ClusterEvent::NodeDown(node) => println!("{node} is gone"),
///             other => println!("{other:?}"),
///         }
///     }
/// }
/// ```
#[derive(Clone, Debug, actix::Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A member of a watched group, on any node, joined, changed its metadata or left.
    Presence {
        /// The group.
        group: Arc<str>,
        /// The member.
        member: ClusterMember,
        /// What happened.
        change: PresenceChange,
    },
    /// A node was heard from for the first time (or again after it was taken for dead).
    NodeUp(NodeId),
    /// A node said goodbye, or was not heard from for the node timeout: its connections are
    /// gone from presence (in Redis, within the node timeout of its last heartbeat).
    NodeDown(NodeId),
    /// This node lost Redis: remote sends fail with
    /// [`ClusterSendError::BrokerDown`](super::ClusterSendError::BrokerDown), broadcasts
    /// reach local members only, and it reconnects by itself.
    BrokerDown,
    /// This node has Redis again, its subscriptions and presence re-made.
    BrokerUp,
    /// Messages to or from other nodes may have been lost: resync what matters.
    Gap(GapCause),
    /// This node's members of a group with history missed broadcasts that history could
    /// not give back (it started afresh, or they had left it): they were closed with 1012,
    /// so that their clients reconnect and recover, or learn that they cannot.
    HistoryGap {
        /// The group.
        group: Arc<str>,
        /// Why history could not fill the gap.
        reason: Unrecoverable,
        /// Members closed.
        closed: usize,
    },
}

/// Why a [`ClusterEvent::Gap`] was signalled (the example of [`ClusterEvent`] tells
/// them apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GapCause {
    /// The link to Redis was lost and is back (an outage, a restart, a failover, Redis
    /// cutting this node for reading too slowly, or a subscription that fell silent): what
    /// was published meanwhile did not reach it, and what it broadcast meanwhile reached
    /// only its own members. Groups with history read back what they missed.
    Reconnected {
        /// From the loss to the link made again (subscriptions and presence re-made).
        outage: std::time::Duration,
    },
    /// More than [`max_queued`](super::ClusterOptions::max_queued) bytes waited for Redis,
    /// and broadcasts or sends beyond them were dropped.
    Overflow,
    /// That node could not publish some of its broadcasts (it lost Redis, or overflowed):
    /// its members' messages to groups may be missing here.
    Missed(NodeId),
}

impl ClusterEvent {
    /// Tells the metrics recorder of a gap, or of the nodes alive now (`alive`, this one
    /// included) when one came or went.
    pub(crate) fn record(&self, alive: impl FnOnce() -> usize) {
        match self {
            ClusterEvent::Gap(cause) => crate::telemetry::cluster_gap(match cause {
                GapCause::Reconnected { .. } => "reconnected",
                GapCause::Overflow => "overflow",
                GapCause::Missed(_) => "missed",
            }),
            ClusterEvent::NodeUp(_) | ClusterEvent::NodeDown(_) => crate::telemetry::cluster_nodes(alive()),
            _ => {}
        }
    }
}
