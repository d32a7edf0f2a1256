//! Connections and groups across nodes, through Redis (feature `cluster`).
//!
//! [`Cluster`] is the entry point (re-exported at the crate root, with
//! [`ClusterOptions`]); the rest of this module is what it takes and gives back: ids that
//! name a connection or a node anywhere ([`GlobalId`], [`NodeId`]), what subscribers and
//! watchers are told ([`ClusterEvent`], [`GapCause`], [`ClusterMember`]), how the link to
//! Redis stands ([`BrokerStatus`]) and its errors ([`ClusterError`],
//! [`ClusterSendError`]).
//!
//! The guide's chapter [the cluster](crate::guide::ch06_cluster) shows a two-node
//! cluster, what is local and what spans nodes, the Redis topologies and what each
//! failure costs.
//!
//! ```
//! use actix_meta_websocket::cluster::{GlobalId, NodeId};
//!
//! let id: GlobalId = "3f9a2b1c7d4e5f60-42".parse().unwrap();
//! assert_eq!(id.node(), "3f9a2b1c7d4e5f60".parse::<NodeId>().unwrap());
//! assert!("3f9a2b1c7d4e5f60".parse::<GlobalId>().is_err()); // a node, not a connection
//! ```

// For maintainers:
// Connections and groups across nodes, through Redis (feature `cluster`).
//
// ```text
// worker threads ──commands──> node task (own thread) ──PUBLISH/HSET──> Redis
// ^                           │  <──SUBSCRIBE (nodes, own node, groups with members)
// └── thread inboxes, connections <──┘
// ```
//
// - `ids`: node ids and global connection ids, printed and parsed.
// - `options`: the URL (kept out of logs) and the timings.
// - `endpoint`: which Redis to use: the one at the URL, or the primary Sentinel names;
//   `seeds`: under Redis Cluster, the seed nodes and the map of slots they give;
//   `slots`: which slot a key hashes to and which primary serves it (sans-IO).
// - `health`: how the link stands (up, server, silent, outages), for `broker_status`.
// - `link`: what the handle, the groups and the task share (queue, bound, index).
// - `node`: the task: Redis calls, subscriptions, reconnects, heartbeats.
// - `wire`: the frames on the bus, checked like peer input.
// - `keys`: the channel and key names.
// - `events`, `error`: what users are told.

mod endpoint;
mod error;
mod events;
mod health;
mod ids;
mod keys;
mod link;
mod node;
mod options;
mod seeds;
mod slots;
mod wire;

use std::fmt;
use std::sync::Arc;

use actix::Recipient;
use tokio::sync::oneshot;

pub use error::{ClusterError, ClusterSendError};
pub use events::{ClusterEvent, ClusterMember, GapCause};
pub use health::{BrokerStatus, ShardStatus};
pub use ids::{GlobalId, NodeId};
pub use options::ClusterOptions;

use endpoint::Endpoint;
use link::{Cmd, Link};
use node::Node;

use crate::connection::ConnectionId;
use crate::groups::Groups;
use crate::prepared::PreparedMessage;

/// This server's place in a cluster of nodes that share one Redis (or the primary a
/// Redis Sentinel set names, or a Redis Cluster: see [`ClusterOptions::new`]).
///
/// - **Global ids.** [`global_id`](Self::global_id) names a connection for every node;
///   [`send`](Self::send) and [`send_wait`](Self::send_wait) reach it from any of them.
///   A [`ConnectionId`] stays local, and its sends never touch the network.
/// - **Groups.** [`groups`](Self::groups) are [`Groups`] whose broadcasts also reach the
///   members on other nodes (one Redis message per broadcast, read once by each node
///   with members, framed once there), and whose members are listed cluster-wide by
///   [`members`](Self::members). A node subscribes to a group's channel only while it has
///   members or watchers there.
/// - **Liveness.** Each node sends a heartbeat; presence entries in Redis expire unless
///   their node's heartbeats refresh them, so a crashed node's members are gone within
///   the node timeout.
/// - **Delivery.** At most once across nodes, in order per publishing node while its
///   link to Redis holds. Messages can be lost while Redis is away, around a reconnect,
///   when Redis cuts a node that reads too slowly, and when the owning node dies; each
///   of these is signalled ([`ClusterEvent`]), and [`broker_status`](Self::broker_status)
///   says how the link stands now. Nothing is queued without bound: while
///   Redis is away, remote sends fail at once with [`ClusterSendError::BrokerDown`].
///
/// ```no_run
/// use actix_meta_websocket::*;
/// use actix_meta_websocket::cluster::ClusterError;
///
/// # async fn demo() -> Result<(), ClusterError> {
/// let cluster = Cluster::join(ClusterOptions::new("redis://127.0.0.1:6379")).await?;
/// let groups = cluster.groups().clone(); // into each worker's actor, like a local Groups
/// groups.broadcast("lobby", "hello, every node");
/// for m in cluster.members("lobby").await? {
///     println!("{} ({})", m.id, m.meta); // ids on every node
/// }
/// # Ok(()) }
/// ```
///
/// Reaching one connection on any node, and watching the link:
///
/// ```no_run
/// use actix::prelude::*;
/// use actix_meta_websocket::*;
/// use actix_meta_websocket::cluster::{ClusterError, ClusterEvent, ClusterSendError, GlobalId};
///
/// struct Ops;
/// impl Actor for Ops { type Context = Context<Self>; }
/// impl Handler<ClusterEvent> for Ops {
///     type Result = ();
///     fn handle(&mut self, e: ClusterEvent, _: &mut Context<Self>) { println!("{e:?}") }
/// }
///
/// # async fn demo(id: ConnectionId, peer: &str) -> Result<(), ClusterError> {
/// let cluster = Cluster::join(ClusterOptions::new("redis://127.0.0.1:6379")).await?;
/// cluster.subscribe(Ops.start().recipient()); // NodeUp for each node there, then changes
///
/// // Give a connection's global id to its peers (a string), and write to theirs.
/// id.send(format!("you are {}", cluster.global_id(&id)));
/// let to: GlobalId = peer.parse().expect("a global id");
/// match cluster.send_wait(&to, "a direct message").await {
///     Ok(()) => {} // in its connection's write buffer, on its node
///     Err(ClusterSendError::NoSuchConnection | ClusterSendError::NoSuchNode(_)) => println!("{to} is gone"),
///     Err(e) => println!("not sent: {e}"),
/// }
///
/// println!("{} other nodes; broker up: {}", cluster.nodes().len(), cluster.is_broker_up());
/// let link = cluster.broker_status();
/// println!("on {:?}, {} reconnects, last outage {:?}", link.server, link.reconnects, link.last_outage);
/// cluster.leave().await; // presence gone from Redis now, the others told
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    link: Arc<Link>,
    groups: Groups,
    opts: ClusterOptions,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle: the node says goodbye and its task ends.
        self.link.push(Cmd::Stop { reply: None });
    }
}

impl Cluster {
    /// Joins the cluster on the Redis at `opts`' URL as a new node: connects, subscribes,
    /// and starts the node's task on a thread of its own; once joined, the node reconnects
    /// by itself.
    ///
    /// A Redis that does not answer now (connection refused, or no answer within a second)
    /// does not keep the node from starting: it serves its own connections and groups, and
    /// joins the cluster when Redis answers, with [`ClusterEvent::BrokerUp`]; until then
    /// [`is_broker_up`](Self::is_broker_up) is false and what needs Redis fails with
    /// `BrokerDown`. A Redis that answers and refuses (wrong password, a certificate not
    /// trusted) is an error: retrying would not help.
    pub async fn join(opts: ClusterOptions) -> Result<Cluster, ClusterError> {
        opts.check().map_err(ClusterError::Invalid)?;
        let endpoint = Endpoint::new(&opts.url, opts.tls_root.as_deref(), opts.sentinel_auth.as_ref())
            .map_err(ClusterError::Redis)?;
        let me = NodeId::random();
        let (link, rx) = Link::new(me, opts.max_queued, opts.heartbeat);
        let groups = Groups::with_broker(link.clone());
        let mut node = Node::new(link.clone(), opts.clone(), endpoint, groups.clone());
        let (ready, joined) = oneshot::channel();
        let started = std::thread::Builder::new().name(format!("amw-cluster-{me}")).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return drop(ready.send(Err(ClusterError::Redis(e.to_string())))),
            };
            rt.block_on(async move {
                match node.connect_within().await {
                    Ok(redis) => {
                        let _ = ready.send(Ok(()));
                        node.run(rx, Some(redis)).await;
                    }
                    Err(e) if e.is_connection_refusal() || e.is_timeout() => {
                        tracing::warn!(error = %e, "cluster: redis does not answer; the node starts without it and joins when it does");
                        let _ = ready.send(Ok(()));
                        node.run(rx, None).await;
                    }
                    Err(e) => drop(ready.send(Err(ClusterError::Redis(e.to_string())))),
                }
            });
        });
        if let Err(e) = started {
            return Err(ClusterError::Redis(format!("no thread for the node: {e}")));
        }
        joined.await.unwrap_or(Err(ClusterError::Stopped))?;
        tracing::info!(node = %me, url = %opts.redacted_url(), "cluster: joined");
        Ok(Cluster { inner: Arc::new(Inner { link, groups, opts }) })
    }

    /// This node.
    pub fn node(&self) -> NodeId {
        self.inner.link.me
    }

    /// Groups that span the cluster; clone it into the actors that need it.
    ///
    /// - `join`, `leave`, `broadcast`, `broadcast_except` and `send_to` work as on one
    ///   node, and besides, broadcasts reach the members on every other node, and joins
    ///   and leaves are written to Redis.
    /// - What they return, and `members`, `count`, `contains`, `groups_of` and `watch`,
    ///   are this node's: `broadcast` returns how many members *here* it was handed to.
    ///   [`members`](Self::members) and [`watch`](Self::watch) here span every node.
    /// - Keep a `Cluster` handle for as long as the node serves: when the last one is
    ///   dropped the node leaves the cluster, and these groups go on for this node only.
    pub fn groups(&self) -> &Groups {
        &self.inner.groups
    }

    /// The id of `id` across the cluster; from now on, other nodes can send to it.
    ///
    /// ```no_run
    /// # use actix_meta_websocket::{Cluster, ConnectionId};
    /// # fn demo(cluster: &Cluster, id: &ConnectionId) {
    /// let global = cluster.global_id(id).to_string(); // keep it, hand it out
    /// # }
    /// ```
    pub fn global_id(&self, id: &ConnectionId) -> GlobalId {
        self.inner.link.register(id);
        GlobalId { node: self.node(), seq: id.seq() }
    }

    /// The local connection `to` names, if it is on this node and still known.
    pub fn local(&self, to: &GlobalId) -> Option<ConnectionId> {
        (to.node == self.node()).then(|| self.inner.link.local(to.seq)).flatten()
    }

    /// Writes `msg` to the connection `to`, on whichever node it is, without waiting for
    /// an answer. On this node it is a local send; for another node it is published at
    /// once, or refused at once (Redis down, or too much waiting for it).
    ///
    /// ```no_run
    /// # use actix_meta_websocket::{Cluster, cluster::GlobalId};
    /// # fn demo(cluster: &Cluster, stored: &str) {
    /// if let Ok(to) = stored.parse::<GlobalId>() {
    ///     if let Err(e) = cluster.send(&to, "you have mail") {
    ///         tracing::warn!(%to, %e, "not sent");
    ///     }
    /// }
    /// # }
    /// ```
    pub fn send(&self, to: &GlobalId, msg: impl Into<PreparedMessage>) -> Result<(), ClusterSendError> {
        let msg = msg.into();
        if to.node == self.node() {
            return self.inner.link.deliver(to.seq, msg, false);
        }
        self.inner.link.push_bounded(Cmd::Send { to: *to, msg, reply: None })
    }

    /// Writes `msg` to the connection `to` and waits until its node accepted it into the
    /// connection's write buffer, or said why not: the connection is gone, closing, or
    /// behind on its writes ([`TrySendError`](crate::error::TrySendError) semantics), its node is not there, Redis is
    /// down, or no answer came within the send timeout.
    pub async fn send_wait(
        &self,
        to: &GlobalId,
        msg: impl Into<PreparedMessage>,
    ) -> Result<(), ClusterSendError> {
        let msg = msg.into();
        if to.node == self.node() {
            return self.inner.link.deliver(to.seq, msg, true);
        }
        let (reply, answer) = oneshot::channel();
        self.inner.link.push_bounded(Cmd::Send { to: *to, msg, reply: Some(reply) })?;
        match tokio::time::timeout(self.inner.opts.send_timeout, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(ClusterSendError::Stopped),
            Err(_) => Err(ClusterSendError::Timeout),
        }
    }

    /// Every member of `group` on every node, read from Redis (by node, then by number).
    pub async fn members(&self, group: &str) -> Result<Vec<ClusterMember>, ClusterError> {
        if !self.is_broker_up() {
            return Err(ClusterError::BrokerDown);
        }
        let (reply, answer) = oneshot::channel();
        if !self.inner.link.push(Cmd::Members { group: group.into(), reply }) {
            return Err(ClusterError::Stopped);
        }
        answer.await.unwrap_or(Err(ClusterError::Stopped))
    }

    /// Sends `watcher` the members of `group` on every node, then a
    /// [`ClusterEvent::Presence`] for every change on any node, until the watcher's actor
    /// stops; this node then receives the group's traffic even without members.
    ///
    /// - **First the members there now**, each as
    ///   [`PresenceChange::Present`](crate::groups::PresenceChange::Present) (read from Redis, a
    ///   moment after this call), so a watcher that comes late misses nobody.
    /// - **Then every join, update and leave**, each once. A member whose node dies (or
    ///   stalls past the node timeout) is told `Disconnected` when the node is taken for
    ///   dead, and `Joined` again if the node comes back.
    /// - **After a lost link to Redis**, on either side, the watcher is told what changed
    ///   meanwhile (joins, and leaves as `Disconnected`) once the link is back. When Redis
    ///   itself lost its data (a restart without persistence), the nodes write their
    ///   members again one after the other, and a watcher may see some members go and
    ///   come back meanwhile.
    ///
    /// ```no_run
    /// # use actix::prelude::*;
    /// # use actix_meta_websocket::*;
    /// # use actix_meta_websocket::{cluster::{ClusterEvent, GlobalId}, groups::PresenceChange};
    /// # use std::collections::HashMap;
    /// struct Roster { present: HashMap<GlobalId, String> }
    /// # impl Actor for Roster { type Context = Context<Self>; }
    /// impl Handler<ClusterEvent> for Roster {
    ///     type Result = ();
    ///     fn handle(&mut self, e: ClusterEvent, _: &mut Context<Self>) {
    ///         if let ClusterEvent::Presence { member, change, .. } = e {
    ///             match change {
    ///                 PresenceChange::Present | PresenceChange::Joined | PresenceChange::Updated => {
    ///                     self.present.insert(member.id, member.meta.to_string());
    ///                 }
    ///                 _ => { self.present.remove(&member.id); }
    ///             }
    ///         }
    ///     }
    /// }
    /// # fn demo(cluster: &Cluster, roster: Addr<Roster>) {
    /// cluster.watch("lobby", roster.recipient());
    /// # }
    /// ```
    pub fn watch(&self, group: &str, watcher: Recipient<ClusterEvent>) {
        self.inner.link.push(Cmd::Watch { group: group.into(), watcher });
    }

    /// Sends `subscriber` the cluster's other events: nodes up and down, Redis down and
    /// back, and gaps. It is first told the state it joins: `NodeUp` for every node heard
    /// from now, and `BrokerDown` if Redis is away now; so subscribing late misses nothing.
    pub fn subscribe(&self, subscriber: Recipient<ClusterEvent>) {
        self.inner.link.push(Cmd::Subscribe(subscriber));
    }

    /// The other nodes this node hears from now (their heartbeats are at most the node
    /// timeout old), in id order; an actor given to [`subscribe`](Self::subscribe) after
    /// they came up learns of them here.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.inner.link.peers()
    }

    /// Whether this node has its link to Redis now.
    pub fn is_broker_up(&self) -> bool {
        self.inner.link.is_up()
    }

    /// How this node's link to Redis stands: the server in use, whether its subscription
    /// still carries the node's heartbeats back, reconnects and the last outage.
    pub fn broker_status(&self) -> BrokerStatus {
        self.inner.link.health.status(self.is_broker_up())
    }

    /// For a readiness check: the link to Redis is up and its subscription is not silent
    /// (the node's last heartbeat came back within two heartbeats). While it is false,
    /// broadcasts from here may reach only this node's members.
    ///
    /// ```no_run
    /// use actix_web::{web, HttpResponse};
    /// # use actix_meta_websocket::Cluster;
    /// async fn ready(cluster: web::Data<Cluster>) -> HttpResponse {
    ///     if cluster.is_ready() { HttpResponse::Ok().finish() } else { HttpResponse::ServiceUnavailable().finish() }
    /// }
    /// ```
    pub fn is_ready(&self) -> bool {
        let s = self.broker_status();
        s.up && s.silent_for.is_none()
    }

    /// Leaves the cluster: this node's presence goes from Redis now, the others are told,
    /// and its task ends. (Dropping the last handle does the same without waiting.)
    pub async fn leave(self) {
        let (reply, done) = oneshot::channel();
        if self.inner.link.push(Cmd::Stop { reply: Some(reply) }) {
            let _ = done.await;
        }
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node())
            .field("url", &self.inner.opts.redacted_url())
            .field("broker_up", &self.is_broker_up())
            .finish()
    }
}
