//! `ConnectionId`: the id that addresses one connection and lets its holder write to it,
//! with what writers read of the connection without asking it (how far behind its peer
//! is, whether it is closing or gone) and its part in the delivery of broadcasts.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{oneshot, Notify};

use actix::Addr;

use super::events::ConnectData;
use super::mailbox::GetStats;
use super::WsConnection;
use crate::delivery::{Pending, Subscriber};
use crate::error::{TrySendError, WriteError};
use crate::message::{DataTypeError, Outgoing};
use crate::prepared::PreparedMessage;
use crate::protocol::CloseCode;
use crate::stats::Stats;

/// Identifies one connection and lets its holder write to it, like the `gen.Alias` of
/// Ergo's meta-process.
///
/// Cheap to clone (one shared allocation holding a number and an actor address), usable as
/// a map key; equality and hashing use the number only.
///
/// ```no_run
/// # use actix_meta_websocket::{ConnectionId, Outgoing};
/// # async fn demo(id: ConnectionId) -> Result<(), actix_meta_websocket::WriteError> {
/// id.send(Outgoing::text("fire and forget"));
/// id.send_wait(Outgoing::binary(vec![1, 2, 3])).await?; // Ok once accepted for writing
/// if id.is_connected() && id.backlog() > 1 << 20 {
///     // The peer is a megabyte behind: tell it so, then let it go.
///     println!("connection {} ({:?}) is behind", id.seq(), id.addr());
///     id.close(1000, "bye")?;
/// } else {
///     id.close_bare(); // a close frame with no code: the peer sees 1005
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ConnectionId(Arc<IdInner>);

// Shared rather than cloned: every delivered message carries the id, and cloning an actix
// `Addr` registers a new sender (two allocations) where an `Arc` clone is one increment.
struct IdInner {
    seq: u64,
    addr: Addr<WsConnection>,
    /// Outgoing bytes the connection holds and the peer has not taken, as of its latest
    /// poll; written by the connection, read by `try_send`.
    backlog: AtomicUsize,
    /// The connection's `max_write_buffer`.
    write_limit: usize,
    /// The actor has stopped (its `MessageDisconnect` is on its way).
    ended: AtomicBool,
    /// Created by the first `closed()` waiter only.
    ended_notify: OnceLock<Arc<Notify>>,
    /// Broadcasts handed to it, the groups it is in, and whether its close frame is out
    /// (it then writes nothing more).
    subscriber: Arc<Subscriber>,
    /// What the upgrade attached (`Upgrade::data`).
    data: Option<ConnectData>,
}

impl ConnectionId {
    pub(crate) fn new(
        seq: u64,
        addr: Addr<WsConnection>,
        write_limit: usize,
        data: Option<ConnectData>,
    ) -> Self {
        ConnectionId(Arc::new(IdInner {
            seq,
            addr,
            backlog: AtomicUsize::new(0),
            write_limit,
            ended: AtomicBool::new(false),
            ended_notify: OnceLock::new(),
            subscriber: Subscriber::new(seq),
            data,
        }))
    }

    /// The value attached with the upgrade ([`Upgrade::data`](crate::Upgrade::data)), as a
    /// `T`: the authenticated user, say, on every [`WsMessage`](crate::WsMessage) through
    /// its id, with no map from id to user to keep. Asking for another type than the one
    /// attached (or when none was) is an error that names both.
    ///
    /// ```
    /// # use actix::{Actor, Context};
    /// # use actix_meta_websocket::*;
    /// struct User(String); // attached by your route: `Upgrade::new().data(User(name))`
    ///
    /// struct Room;
    /// # impl Actor for Room { type Context = Context<Self>; }
    /// impl actix::Handler<WsMessage> for Room {
    ///     type Result = ();
    ///     fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
    ///         if let (Ok(user), Some(text)) = (m.id.data::<User>(), m.as_text()) {
    ///             println!("{}: {text}", user.0);
    ///         }
    ///     }
    /// }
    /// ```
    pub fn data<T: std::any::Any + Send + Sync>(&self) -> Result<&T, DataTypeError> {
        ConnectData::get(self.0.data.as_ref())
    }

    pub(crate) fn has_data(&self) -> bool {
        self.0.data.is_some()
    }

    /// The connection as the delivery of broadcasts sees it.
    pub(crate) fn subscriber(&self) -> &Arc<Subscriber> {
        &self.0.subscriber
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.0.subscriber.is_closed()
    }

    /// The actor has stopped: wakes whoever awaits `closed()`.
    pub(crate) fn mark_ended(&self) {
        self.0.ended.store(true, Ordering::SeqCst);
        if let Some(notify) = self.0.ended_notify.get() {
            notify.notify_waiters();
        }
    }

    /// Resolves once the connection has ended (its actor stopped), at once if it has.
    ///
    /// ```no_run
    /// # async fn demo(id: actix_meta_websocket::ConnectionId) {
    /// id.close(1000, "done").unwrap();
    /// id.closed().await; // the closing handshake is over, TCP is gone
    /// # }
    /// ```
    pub async fn closed(&self) {
        let notify = self.0.ended_notify.get_or_init(|| Arc::new(Notify::new())).clone();
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Read after the waiter is enabled: `mark_ended` stores before it notifies.
            if self.0.ended.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn mark_closing(&self) {
        self.0.subscriber.close();
    }

    pub(crate) fn set_backlog(&self, bytes: usize) {
        // Written only when it changed: readers on other threads keep their cached copy.
        if self.0.backlog.load(Ordering::Relaxed) != bytes {
            self.0.backlog.store(bytes, Ordering::Relaxed);
        }
    }

    /// Outgoing bytes the connection holds that the peer has not taken yet (encoded,
    /// handed to the HTTP layer, or queued), as of the connection's latest turn.
    pub fn backlog(&self) -> usize {
        self.0.backlog.load(Ordering::Relaxed)
    }

    /// The process-wide unique number of this connection.
    pub fn seq(&self) -> u64 {
        self.0.seq
    }

    /// The connection actor's address.
    pub fn addr(&self) -> &Addr<WsConnection> {
        &self.0.addr
    }

    /// Whether the connection actor is still running.
    pub fn is_connected(&self) -> bool {
        self.0.addr.connected()
    }

    /// Writes `msg` without waiting. Text, binary, ping and pong are queued; close starts
    /// the closing handshake after the writes queued before it. A message for a connection
    /// that is gone or closing is dropped (use [`send_wait`](Self::send_wait) to learn about
    /// that). Over the outgoing buffer's bound, messages wait in order for the peer to read,
    /// so a burst reaches a reading peer whole; a peer that takes nothing for the write
    /// timeout is closed as a slow consumer (the policy is on
    /// [`ConnectionSettings`](crate::ConnectionSettings)).
    ///
    /// Writes by id from one writer keep their order (`send`, `send_wait`,
    /// `send_prepared`, `close`): they go straight to the connection's own queue, not
    /// through its actix mailbox. `Outgoing` sent to [`addr`](Self::addr) takes the mailbox
    /// and is not ordered with them.
    pub fn send(&self, msg: impl Into<Outgoing>) {
        // Straight to the connection's queue: no actix envelope per write.
        if self.0.subscriber.write_message(msg.into(), None).is_err() {
            tracing::trace!(connection = self.0.seq, "message for a closing connection dropped");
        }
    }

    /// Writes `value` as a JSON text message without waiting (feature `serde`); an error
    /// only if it cannot be serialized.
    ///
    /// ```no_run
    /// # use actix_meta_websocket::ConnectionId;
    /// # fn demo(id: ConnectionId) -> Result<(), serde_json::Error> {
    /// #[derive(serde::Serialize)]
    /// struct Tick<'a> { symbol: &'a str, price: f64 }
    /// id.send_json(&Tick { symbol: "ACME", price: 101.5 })?; // {"symbol":"ACME","price":101.5}
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "serde")]
    pub fn send_json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), serde_json::Error> {
        self.send(Outgoing::json(value)?);
        Ok(())
    }

    /// Writes `msg` without waiting, unless the peer is behind: when the connection already
    /// holds `max_write_buffer` bytes the peer has not taken, the message comes back as
    /// [`TrySendError::Full`] and nothing is closed, so a producer can skip, coalesce or
    /// retry later instead of queueing. Once the connection has sent its close frame, the
    /// message comes back as [`TrySendError::Closed`].
    ///
    /// ```no_run
    /// # use actix_meta_websocket::{ConnectionId, Outgoing, TrySendError};
    /// # fn demo(id: &ConnectionId, tick: String, later: &mut Vec<Outgoing>) {
    /// match id.try_send(Outgoing::text(tick)) {
    ///     Ok(()) => {}
    ///     Err(TrySendError::Full(_)) => { /* the peer is behind: drop this tick, send the next */ }
    ///     Err(e) => later.push(e.into_message()), // closed: keep it for the next connection
    /// }
    /// # }
    /// ```
    pub fn try_send(&self, msg: impl Into<Outgoing>) -> Result<(), TrySendError> {
        let msg = msg.into();
        if self.is_closing() || !self.0.addr.connected() {
            return Err(TrySendError::Closed(msg));
        }
        if self.backlog() >= self.0.write_limit {
            return Err(TrySendError::Full(msg));
        }
        self.0.subscriber.write_message(msg, None).map_err(TrySendError::Closed)
    }

    /// Writes `msg` and waits until the connection accepted it into its outgoing buffer.
    /// While the buffer is over its bound this waits for the peer to read; a peer stuck for
    /// longer than the write timeout gets the connection closed and this returns an error.
    ///
    /// ```no_run
    /// # use actix_meta_websocket::{ConnectionId, Outgoing, WriteError};
    /// # async fn demo(id: ConnectionId, rows: Vec<Vec<u8>>) {
    /// // A producer that slows down to the peer's pace instead of buffering without end.
    /// for row in rows {
    ///     match id.send_wait(Outgoing::binary(row)).await {
    ///         Ok(()) => {}
    ///         Err(WriteError::SlowConsumer) => break, // closed with 1008: the peer stopped reading
    ///         Err(e) => { eprintln!("{id}: {e}"); break }
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn send_wait(&self, msg: impl Into<Outgoing>) -> Result<(), WriteError> {
        let (tx, rx) = oneshot::channel();
        if self.0.subscriber.write_message(msg.into(), Some(tx)).is_err() {
            return Err(WriteError::Closed);
        }
        // Answered when written, or when the connection closes (a stuck peer is closed by
        // the stall watch within 1.25 write timeouts); a connection that ends unanswered
        // drops the answer.
        rx.await.unwrap_or(Err(WriteError::Closed))
    }

    /// Writes a message prepared once for many connections, without waiting; the same
    /// policy as [`send`](Self::send).
    ///
    /// ```no_run
    /// # use actix_meta_websocket::{ConnectionId, PreparedMessage};
    /// # fn demo(room: &[ConnectionId]) {
    /// let news = PreparedMessage::text(r#"{"price":101.5}"#); // framed once
    /// for id in room {
    ///     id.send_prepared(&news);
    /// }
    /// # }
    /// ```
    pub fn send_prepared(&self, msg: &PreparedMessage) {
        if self.0.subscriber.write(Pending::Prepared(msg.clone())).is_err() {
            tracing::trace!(connection = self.0.seq, "message for a closing connection dropped");
        }
    }

    /// Starts the closing handshake with `code` and `reason` (cut to fit the frame), after
    /// the writes queued before it. A code that may not be sent (below 1000, 1004-1006,
    /// 1015, 1016-2999, 5000 and up) is refused here with [`WriteError::Invalid`].
    ///
    /// ```no_run
    /// # use actix_meta_websocket::{ConnectionId, WriteError};
    /// # fn demo(id: &ConnectionId) {
    /// id.close(4000, "game over").unwrap();
    /// assert!(matches!(id.close(1006, "abnormal"), Err(WriteError::Invalid(_)))); // never on the wire
    /// # }
    /// ```
    pub fn close(&self, code: impl Into<CloseCode>, reason: &str) -> Result<(), WriteError> {
        let code = code.into();
        if !code.is_valid_on_wire() {
            return Err(WriteError::Invalid(format!("close code {code} may not be sent")));
        }
        self.send(Outgoing::close(code, reason));
        Ok(())
    }

    /// Closes with `code` and `reason` after what it holds now, and hands it nothing more
    /// (broadcasts included) from this call on: for members closed because they missed
    /// broadcasts, whose stream must end before the gap.
    pub(crate) fn close_before_gap(&self, code: CloseCode, reason: &str) {
        if self.0.subscriber.write_last(Pending::Message(Outgoing::close(code, reason), None)).is_err() {
            tracing::trace!(connection = self.0.seq, "close for a closing connection dropped");
        }
    }

    /// Starts the closing handshake with a close frame that has no code (the peer sees
    /// 1005, no status).
    pub fn close_bare(&self) {
        self.send(Outgoing::close_bare());
    }

    /// Addresses, counters and age of the running connection. Writes made through any id
    /// of the connection before this call are counted (encoded, or queued for room).
    ///
    /// ```no_run
    /// # use actix_meta_websocket::{Buffers, ConnectionId, Stats, Traffic};
    /// # async fn demo(id: ConnectionId) {
    /// match id.stats().await {
    ///     Ok(Stats { traffic: Traffic { messages_in, messages_out, .. }, buffers: Buffers { outgoing, .. }, age, .. }) => {
    ///         println!("{id}: {messages_in} in, {messages_out} out, {outgoing} B waiting, up {age:?}")
    ///     }
    ///     Err(_) => println!("{id} has ended"),
    /// }
    /// # }
    /// ```
    pub async fn stats(&self) -> Result<Stats, WriteError> {
        self.0.addr.send(GetStats).await.map_err(|_| WriteError::Closed)
    }
}

impl PartialEq for ConnectionId {
    fn eq(&self, other: &Self) -> bool {
        self.0.seq == other.0.seq
    }
}
impl Eq for ConnectionId {}
impl Hash for ConnectionId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.seq.hash(state)
    }
}
impl PartialOrd for ConnectionId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ConnectionId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.seq.cmp(&other.0.seq)
    }
}
impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({})", self.0.seq)
    }
}
impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ws#{}", self.0.seq)
    }
}
