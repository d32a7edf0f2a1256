//! What the handle, the groups and the node's task share: the queue of commands for the
//! task, its bound, whether Redis is up, and the node's connections by number.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix::Recipient;
use tokio::sync::{mpsc, oneshot};

use super::error::{ClusterError, ClusterSendError};
use super::events::{ClusterEvent, ClusterMember};
use super::health::Health;
use super::ids::{GlobalId, NodeId};
use crate::connection::ConnectionId;
use crate::error::TrySendError;
use crate::groups::{
    Answer, Broker, Build, Groups, HistoryError, HistoryLimits, PresenceChange, Published, Recovered,
    RecoveryError, Since,
};
use crate::prepared::PreparedMessage;

/// Bytes a queued broadcast or send is counted for beyond its payload.
const OVERHEAD: usize = 64;

pub(crate) type Reply<T> = oneshot::Sender<T>;
pub(crate) type SendReply = Reply<Result<(), ClusterSendError>>;
pub(crate) type MembersReply = Reply<Result<Vec<ClusterMember>, ClusterError>>;
pub(crate) type PublishReply = Reply<Result<Published, HistoryError>>;
pub(crate) type JoinReply = Reply<Result<Recovered, RecoveryError>>;

/// A broadcast to a group with history, waiting for its place in it.
pub(crate) struct Publish {
    pub(crate) group: Arc<str>,
    pub(crate) limits: HistoryLimits,
    pub(crate) build: Build,
    /// The member on this node it is not for (the sender).
    pub(crate) except: Option<u64>,
    pub(crate) reply: PublishReply,
    /// Bytes it counts toward `max_queued` (the first build's payload).
    pub(crate) cost: usize,
}

/// A join with recovery, waiting for history to be read.
pub(crate) struct JoinSince {
    pub(crate) group: Arc<str>,
    pub(crate) id: ConnectionId,
    pub(crate) meta: Arc<str>,
    pub(crate) since: Since,
    pub(crate) limits: HistoryLimits,
    pub(crate) reply: JoinReply,
}

impl JoinSince {
    /// Answers the join (and tells the metrics recorder how it ended).
    pub(crate) fn answer(self, outcome: Result<crate::groups::Recovered, crate::groups::RecoveryError>) {
        crate::groups::note_recovery(&outcome);
        let _ = self.reply.send(outcome);
    }
}

/// Work for the node's task, in the order it was asked for.
pub(crate) enum Cmd {
    Changed { group: Arc<str>, seq: u64, meta: Arc<str>, change: PresenceChange },
    Broadcast { group: Arc<str>, msg: PreparedMessage },
    Send { to: GlobalId, msg: PreparedMessage, reply: Option<SendReply> },
    Watch { group: Arc<str>, watcher: Recipient<ClusterEvent> },
    Subscribe(Recipient<ClusterEvent>),
    Members { group: Arc<str>, reply: MembersReply },
    Publish(Publish),
    JoinSince(JoinSince),
    Stop { reply: Option<Reply<()>> },
}

impl Cmd {
    /// What it counts toward `max_queued`.
    pub(crate) fn cost(&self) -> usize {
        match self {
            Cmd::Broadcast { msg, .. } | Cmd::Send { msg, .. } => msg.body().len() + OVERHEAD,
            Cmd::Publish(p) => p.cost,
            _ => 0,
        }
    }
}

pub(crate) struct Link {
    pub(crate) me: NodeId,
    tx: mpsc::UnboundedSender<Cmd>,
    up: AtomicBool,
    queued: AtomicUsize,
    max_queued: usize,
    /// Something was dropped for `max_queued` since the task last looked.
    overflowed: AtomicBool,
    /// Broadcasts not published (Redis down, or over `max_queued`), ever.
    dropped: AtomicU64,
    /// The node's connections that have a global id or a group, by seq.
    index: Mutex<HashMap<u64, ConnectionId>>,
    /// The other nodes heard from, as the task last saw them.
    peers: Mutex<Vec<NodeId>>,
    pub(crate) health: Health,
}

impl Link {
    pub(crate) fn new(
        me: NodeId,
        max_queued: usize,
        heartbeat: Duration,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Cmd>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let link = Link {
            me,
            tx,
            up: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            max_queued,
            overflowed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            index: Mutex::default(),
            peers: Mutex::default(),
            health: Health::new(heartbeat),
        };
        (Arc::new(link), rx)
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub(crate) fn set_up(&self, up: bool) {
        crate::telemetry::cluster_link(up);
        self.up.store(up, Ordering::Release);
    }

    /// Queues a command that costs nothing; `false` once the task has ended.
    pub(crate) fn push(&self, cmd: Cmd) -> bool {
        self.tx.send(cmd).is_ok()
    }

    /// Queues a broadcast or send, unless Redis is down or too much waits already:
    /// nothing waits for a broker that is not there.
    pub(crate) fn push_bounded(&self, cmd: Cmd) -> Result<(), ClusterSendError> {
        self.reserve(cmd.cost())?;
        self.push_reserved(cmd)
    }

    /// Counts `cost` toward `max_queued`, unless Redis is down or the bound is reached.
    fn reserve(&self, cost: usize) -> Result<(), ClusterSendError> {
        if !self.is_up() {
            return Err(ClusterSendError::BrokerDown);
        }
        if self.queued.fetch_add(cost, Ordering::AcqRel) + cost > self.max_queued {
            self.queued.fetch_sub(cost, Ordering::AcqRel);
            self.overflowed.store(true, Ordering::Release);
            return Err(ClusterSendError::Overflow);
        }
        Ok(())
    }

    /// Queues `cmd`, whose cost is reserved.
    fn push_reserved(&self, cmd: Cmd) -> Result<(), ClusterSendError> {
        let cost = cmd.cost();
        self.tx.send(cmd).map_err(|_| {
            self.queued.fetch_sub(cost, Ordering::AcqRel);
            ClusterSendError::Stopped
        })
    }

    /// The task took `cmd` off the queue.
    pub(crate) fn taken(&self, cmd: &Cmd) {
        self.queued.fetch_sub(cmd.cost(), Ordering::AcqRel);
    }

    /// Broadcasts this node failed to publish, ever: told to the others, whom a rise
    /// tells of a gap.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Acquire)
    }

    pub(crate) fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn set_peers(&self, mut peers: Vec<NodeId>) {
        peers.sort_unstable();
        *self.peers.lock().unwrap_or_else(|e| e.into_inner()) = peers;
    }

    pub(crate) fn peers(&self) -> Vec<NodeId> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn index(&self) -> MutexGuard<'_, HashMap<u64, ConnectionId>> {
        // A plain map: whole after a panic elsewhere.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn register(&self, id: &ConnectionId) {
        self.index().entry(id.seq()).or_insert_with(|| id.clone());
    }

    pub(crate) fn local(&self, seq: u64) -> Option<ConnectionId> {
        self.index().get(&seq).cloned()
    }

    /// Hands a message from any node to this node's connection `seq`. With `wait`, only
    /// if the connection has room (`try_send`), and the answer says what happened.
    pub(crate) fn deliver(&self, seq: u64, msg: PreparedMessage, wait: bool) -> Result<(), ClusterSendError> {
        let id = self.local(seq).ok_or(ClusterSendError::NoSuchConnection)?;
        if !wait {
            id.send_prepared(&msg);
            return Ok(());
        }
        match id.try_send(msg.to_outgoing()) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ClusterSendError::Full),
            Err(_) => Err(ClusterSendError::Closed),
        }
    }

    /// Forgets the connections that have ended.
    pub(crate) fn sweep(&self) {
        self.index().retain(|_, id| id.is_connected());
    }
}

impl Link {
    /// Queues a broadcast to `group`'s history (see `Broker::publish`); whether it was
    /// taken (if not, `reply` has been told why).
    fn queue_publish(
        &self,
        group: &str,
        limits: HistoryLimits,
        build: Build,
        except: Option<u64>,
        reply: PublishReply,
    ) -> bool {
        // Counted for a message of middling size: its payload is made only once its
        // position is known.
        let cost = OVERHEAD + 1024;
        if let Err(e) = self.reserve(cost) {
            let _ = reply.send(Err(HistoryError::NotPublished(e.to_string())));
            return false;
        }
        let p = Publish { group: group.into(), limits, build, except, reply, cost };
        match self.tx.send(Cmd::Publish(p)) {
            Ok(()) => true,
            Err(e) => {
                self.queued.fetch_sub(cost, Ordering::AcqRel);
                if let Cmd::Publish(p) = e.0 {
                    let _ =
                        p.reply.send(Err(HistoryError::NotPublished(ClusterSendError::Stopped.to_string())));
                }
                false
            }
        }
    }
}

/// The broker of a cluster's groups: history in Redis, and every change and broadcast
/// queued for the node's task to carry to the other nodes.
impl Broker for Link {
    fn joined(&self, group: &Arc<str>, id: &ConnectionId, meta: &Arc<str>, fresh: bool) {
        // A member can be reached from other nodes by its global id.
        self.register(id);
        let change = if fresh { PresenceChange::Joined } else { PresenceChange::Updated };
        self.changed(group, id.seq(), meta, change);
    }

    fn changed(&self, group: &Arc<str>, seq: u64, meta: &Arc<str>, change: PresenceChange) {
        // Queued even while Redis is down: the task keeps its picture of this node's
        // members, and writes it to Redis when it is back.
        self.push(Cmd::Changed { group: group.clone(), seq, meta: meta.clone(), change });
    }

    fn broadcast(
        &self,
        groups: &Groups,
        group: &str,
        msg: &PreparedMessage,
        except: Option<&ConnectionId>,
        history: Option<HistoryLimits>,
    ) -> usize {
        let Some(limits) = history else {
            // Down or over the bound: the broadcast reaches this node's members only, and
            // the others learn of the gap.
            if self.push_bounded(Cmd::Broadcast { group: group.into(), msg: msg.clone() }).is_err() {
                self.dropped.fetch_add(1, Ordering::AcqRel);
            }
            return groups.publish_here(group, msg, except);
        };
        // Delivered here too once Redis has placed it in history (in order with the other
        // nodes' broadcasts); what it reaches here is counted now.
        let (reply, _) = oneshot::channel();
        let msg = msg.clone();
        let build = Box::new(move |_: &crate::groups::Position| msg.clone());
        if !self.queue_publish(group, limits, build, except.map(ConnectionId::seq), reply) {
            tracing::warn!(group, "broadcast to a group with history not published: Redis is away");
            return 0;
        }
        groups.count(group) - usize::from(except.is_some_and(|id| groups.contains(group, id)))
    }

    fn publish(
        &self,
        _: &Groups,
        group: &str,
        limits: HistoryLimits,
        build: Build,
    ) -> Answer<Result<Published, HistoryError>> {
        let (tx, rx) = oneshot::channel();
        self.queue_publish(group, limits, build, None, tx);
        Answer::Later(rx)
    }

    fn join_since(
        &self,
        _: &Groups,
        group: &str,
        id: &ConnectionId,
        meta: Arc<str>,
        since: Since,
        limits: HistoryLimits,
    ) -> Answer<Result<Recovered, RecoveryError>> {
        self.register(id);
        let (reply, rx) = oneshot::channel();
        let j = JoinSince { group: group.into(), id: id.clone(), meta, since, limits, reply };
        self.push(Cmd::JoinSince(j));
        Answer::Later(rx)
    }

    fn history_in_groups(&self) -> bool {
        false
    }
}
