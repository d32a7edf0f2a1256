//! The messages a connection exchanges with its target and its writers, and the id that
//! addresses a connection.

use std::any::Any;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::Addr;
use actix_http::header::HeaderMap;
use bytes::Bytes;

use crate::connection::{SendMessage, WsConnection};
use crate::protocol::CloseCode;
use crate::{SendError, Stats, TrySendError};

/// Identifies one connection and lets its holder write to it, like the `gen.Alias` of
/// Ergo's meta-process.
///
/// Cheap to clone (one shared allocation holding a number and an actor address), usable as
/// a map key; equality and hashing use the number only.
///
/// ```no_run
/// # use actix_meta_websocket::{ConnectionId, Message};
/// # async fn demo(id: ConnectionId) -> Result<(), actix_meta_websocket::SendError> {
/// id.send(Message::text("fire and forget"));
/// id.send_wait(Message::binary(vec![1, 2, 3])).await?; // Ok once accepted for writing
/// id.close(1000, "bye")?;
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
    /// The connection has sent its close frame: it writes nothing more.
    closing: AtomicBool,
}

impl ConnectionId {
    pub(crate) fn new(seq: u64, addr: Addr<WsConnection>, write_limit: usize) -> Self {
        ConnectionId(Arc::new(IdInner {
            seq,
            addr,
            backlog: AtomicUsize::new(0),
            write_limit,
            closing: AtomicBool::new(false),
        }))
    }

    pub(crate) fn mark_closing(&self) {
        self.0.closing.store(true, Ordering::Relaxed);
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
    /// [`ConnectionConfig`](crate::ConnectionConfig)).
    pub fn send(&self, msg: Message) {
        self.0.addr.do_send(msg);
    }

    /// Writes `msg` without waiting, unless the peer is behind: when the connection already
    /// holds `max_write_buffer` bytes the peer has not taken, the message comes back as
    /// [`TrySendError::Full`] and nothing is closed, so a producer can skip, coalesce or
    /// retry later instead of queueing. Once the connection has sent its close frame, the
    /// message comes back as [`TrySendError::Closed`].
    ///
    /// ```no_run
    /// # use actix_meta_websocket::{ConnectionId, Message, TrySendError};
    /// # fn demo(id: &ConnectionId, tick: String) {
    /// match id.try_send(Message::text(tick)) {
    ///     Ok(()) => {}
    ///     Err(TrySendError::Full(_)) => { /* the peer is behind: drop this tick, send the next */ }
    ///     Err(TrySendError::Closed(_)) => { /* gone */ }
    /// }
    /// # }
    /// ```
    pub fn try_send(&self, msg: Message) -> Result<(), TrySendError> {
        if self.0.closing.load(Ordering::Relaxed) || !self.0.addr.connected() {
            return Err(TrySendError::Closed(msg));
        }
        if self.backlog() >= self.0.write_limit {
            return Err(TrySendError::Full(msg));
        }
        self.0.addr.do_send(msg);
        Ok(())
    }

    /// Writes `msg` and waits until the connection accepted it into its outgoing buffer.
    /// While the buffer is over its bound this waits for the peer to read; a peer stuck for
    /// longer than the write timeout gets the connection closed and this returns an error.
    ///
    /// ```no_run
    /// # use actix_meta_websocket::{ConnectionId, Message, SendError};
    /// # async fn demo(id: ConnectionId, rows: Vec<Vec<u8>>) {
    /// // A producer that slows down to the peer's pace instead of buffering without end.
    /// for row in rows {
    ///     match id.send_wait(Message::binary(row)).await {
    ///         Ok(()) => {}
    ///         Err(SendError::SlowConsumer) => break, // closed with 1008: the peer stopped reading
    ///         Err(e) => { eprintln!("{id}: {e}"); break }
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn send_wait(&self, msg: Message) -> Result<(), SendError> {
        match self.0.addr.send(SendMessage(msg)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Closed),
        }
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
    pub fn send_prepared(&self, msg: &crate::PreparedMessage) {
        self.0.addr.do_send(crate::connection::SendPrepared(msg.clone()));
    }

    /// Starts the closing handshake with `code` and `reason` (cut to fit the frame), after
    /// the writes queued before it. A code that may not be sent (below 1000, 1004-1006,
    /// 1015, 1016-2999, 5000 and up) is refused here with [`SendError::Invalid`].
    ///
    /// ```no_run
    /// # use actix_meta_websocket::{ConnectionId, SendError};
    /// # fn demo(id: &ConnectionId) {
    /// id.close(4000, "game over").unwrap();
    /// assert!(matches!(id.close(1006, "abnormal"), Err(SendError::Invalid(_)))); // never on the wire
    /// # }
    /// ```
    pub fn close(&self, code: impl Into<CloseCode>, reason: &str) -> Result<(), SendError> {
        let code = code.into();
        if !code.is_valid_on_wire() {
            return Err(SendError::Invalid(format!("close code {code} may not be sent")));
        }
        self.send(Message::close(code, reason));
        Ok(())
    }

    /// Starts the closing handshake with a close frame that has no code (the peer sees
    /// 1005, no status).
    pub fn close_bare(&self) {
        self.send(Message::close_bare());
    }

    /// Addresses, counters and age of the running connection.
    ///
    /// ```no_run
    /// # use actix_meta_websocket::ConnectionId;
    /// # async fn demo(id: ConnectionId) {
    /// match id.stats().await {
    ///     Ok(s) => println!("{id}: {} in, {} out, {} B waiting", s.messages_in, s.messages_out, s.buffered_out),
    ///     Err(_) => println!("{id} has ended"),
    /// }
    /// # }
    /// ```
    pub async fn stats(&self) -> Result<Stats, SendError> {
        self.0.addr.send(crate::connection::GetStats).await.map_err(|_| SendError::Closed)
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

/// The kind of a WebSocket message, numbered as in RFC 6455 (and Ergo's `MessageType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum MessageKind {
    /// UTF-8 text (the default).
    #[default]
    Text = 1,
    /// Binary data.
    Binary = 2,
    /// Close: the body is a close payload (2-byte code, UTF-8 reason) or empty.
    Close = 8,
    /// Ping: at most 125 bytes of body.
    Ping = 9,
    /// Pong: at most 125 bytes of body.
    Pong = 10,
}

/// A WebSocket message, incoming (from the peer, to the target) or outgoing (to the
/// connection, to be written).
///
/// ```
/// use actix_meta_websocket::{Message, MessageKind};
/// let m = Message::text("hello");
/// assert_eq!(m.kind, MessageKind::Text);
/// assert_eq!(m.as_text(), Some("hello"));
/// assert_eq!(Message::default().kind, MessageKind::Text); // an unset kind means text
/// ```
#[derive(Debug, Clone, Default, actix::Message)]
#[rtype(result = "()")]
pub struct Message {
    /// The connection the message came from; ignored on outgoing messages.
    pub id: Option<ConnectionId>,
    /// What kind of message this is.
    pub kind: MessageKind,
    /// The payload. For incoming text it is valid UTF-8.
    pub body: Bytes,
}

impl Message {
    /// A text message.
    pub fn text(body: impl Into<String>) -> Self {
        Message { id: None, kind: MessageKind::Text, body: Bytes::from(body.into()) }
    }

    /// A binary message.
    pub fn binary(body: impl Into<Bytes>) -> Self {
        Message { id: None, kind: MessageKind::Binary, body: body.into() }
    }

    /// A ping (at most 125 bytes).
    pub fn ping(body: impl Into<Bytes>) -> Self {
        Message { id: None, kind: MessageKind::Ping, body: body.into() }
    }

    /// A pong (at most 125 bytes).
    pub fn pong(body: impl Into<Bytes>) -> Self {
        Message { id: None, kind: MessageKind::Pong, body: body.into() }
    }

    /// A close with `code` and `reason` (cut to fit the frame). A code that may not be sent
    /// is refused when the message is written ([`ConnectionId::send_wait`] returns
    /// [`SendError::Invalid`]); [`ConnectionId::close`] checks it at once.
    pub fn close(code: impl Into<CloseCode>, reason: &str) -> Self {
        let code = code.into();
        let reason = crate::protocol::truncate_reason(reason);
        let mut body = Vec::with_capacity(2 + reason.len());
        body.extend_from_slice(&code.0.to_be_bytes());
        body.extend_from_slice(reason.as_bytes());
        Message { id: None, kind: MessageKind::Close, body: Bytes::from(body) }
    }

    /// A close frame without a code or reason.
    ///
    /// ```
    /// use actix_meta_websocket::{Message, MessageKind};
    /// let m = Message::close_bare();
    /// assert_eq!((m.kind, m.body.len()), (MessageKind::Close, 0));
    /// ```
    pub fn close_bare() -> Self {
        Message { id: None, kind: MessageKind::Close, body: Bytes::new() }
    }

    /// The body as text, for text messages.
    pub fn as_text(&self) -> Option<&str> {
        match self.kind {
            MessageKind::Text => std::str::from_utf8(&self.body).ok(),
            _ => None,
        }
    }
}

/// A value attached at upgrade time (e.g. the authenticated user), delivered in
/// [`MessageConnect::data`].
pub type ConnectData = Arc<dyn Any + Send + Sync>;

/// Sent to the target when a connection starts, before any [`Message`] of it.
///
/// A target made from one actor ([`Target::from_addr`](crate::Target::from_addr)) gets it
/// first in its mailbox, and the connection reads from the peer at once; when the
/// recipients may be different actors
/// ([`Target::from_recipients`](crate::Target::from_recipients)), the connection starts
/// reading only once it has been handled.
#[derive(Clone, actix::Message)]
#[rtype(result = "()")]
pub struct MessageConnect {
    /// The connection.
    pub id: ConnectionId,
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
    /// Our end's address.
    pub local_addr: Option<SocketAddr>,
    /// The request path and query (server) or the dialled URL (client).
    pub uri: String,
    /// The upgrade request's headers (server) or the server's 101 response headers (client).
    pub headers: HeaderMap,
    /// The negotiated subprotocol, if any.
    pub protocol: Option<String>,
    /// Whether permessage-deflate was negotiated.
    pub compressed: bool,
    /// The value attached with the upgrade, if any.
    pub data: Option<ConnectData>,
}

impl MessageConnect {
    /// The attached value, if there is one of type `T`.
    ///
    /// ```
    /// # use actix::{Actor, Context};
    /// # use actix_meta_websocket::*;
    /// struct User(String); // attached by your route: `handler.upgrade_with(&req, body, User(name))`
    ///
    /// struct Chat;
    /// # impl Actor for Chat { type Context = Context<Self>; }
    /// impl actix::Handler<MessageConnect> for Chat {
    ///     type Result = ();
    ///     fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
    ///         let name = m.data::<User>().map_or("anonymous", |u| u.0.as_str());
    ///         m.id.send(Message::text(format!("welcome, {name}")));
    ///     }
    /// }
    /// ```
    pub fn data<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.data.as_deref().and_then(|d| d.downcast_ref())
    }
}

impl fmt::Debug for MessageConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageConnect")
            .field("id", &self.id)
            .field("remote_addr", &self.remote_addr)
            .field("local_addr", &self.local_addr)
            .field("uri", &self.uri)
            .field("protocol", &self.protocol)
            .field("compressed", &self.compressed)
            .field("data", &self.data.is_some())
            .finish_non_exhaustive()
    }
}

/// Sent to the target exactly once, when a connection has ended.
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
pub struct MessageDisconnect {
    /// The connection.
    pub id: ConnectionId,
    /// Why it ended.
    pub reason: DisconnectReason,
}

/// Which side started the closing handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// The peer sent the first close frame.
    Peer,
    /// This end did (a `Close` message, shutdown, a limit).
    Local,
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// A closing handshake: the code and reason of the first close frame.
    #[error("closed by {initiator:?} with {code}: {reason:?}")]
    Closed {
        /// Who sent the first close frame.
        initiator: Initiator,
        /// Its code (1005 when it had none).
        code: CloseCode,
        /// Its reason.
        reason: String,
    },
    /// The peer broke the protocol or a limit; the connection was failed with `code`.
    #[error("protocol error ({code}): {error}")]
    Protocol {
        /// The close code sent.
        code: CloseCode,
        /// What was wrong.
        error: crate::protocol::ProtocolError,
    },
    /// Nothing was received within the idle timeout.
    #[error("idle timeout")]
    IdleTimeout,
    /// The peer took no byte for the write timeout while bytes waited for it, or writes
    /// queued past `max_write_queue`; the connection was closed with 1008.
    #[error("slow consumer: the peer did not take what was written")]
    SlowConsumer,
    /// The target actor stopped; the connection was closed with 1011.
    #[error("target actor is gone")]
    TargetGone,
    /// The target did not handle `MessageConnect` within the idle timeout; the connection
    /// was closed with 1011.
    #[error("target did not handle MessageConnect in time")]
    TargetTimeout,
    /// The handler was shut down; the connection was closed with 1001.
    #[error("shutdown")]
    Shutdown,
    /// The peer's close handshake did not complete in time after ours.
    #[error("closing handshake timed out")]
    CloseTimeout,
    /// The TCP connection ended without a closing handshake (1006).
    #[error("connection lost: {0}")]
    ConnectionLost(String),
}

impl DisconnectReason {
    /// The close code that describes the ending (1006 when no close frame was exchanged).
    ///
    /// ```
    /// use actix_meta_websocket::{protocol::CloseCode, DisconnectReason};
    /// assert_eq!(DisconnectReason::IdleTimeout.code(), CloseCode::GOING_AWAY);
    /// assert_eq!(DisconnectReason::SlowConsumer.code(), CloseCode(1008));
    /// ```
    pub fn code(&self) -> CloseCode {
        match self {
            DisconnectReason::Closed { code, .. } | DisconnectReason::Protocol { code, .. } => *code,
            DisconnectReason::IdleTimeout | DisconnectReason::Shutdown => CloseCode::GOING_AWAY,
            DisconnectReason::SlowConsumer => CloseCode::POLICY_VIOLATION,
            DisconnectReason::TargetGone | DisconnectReason::TargetTimeout => CloseCode::INTERNAL_ERROR,
            DisconnectReason::CloseTimeout | DisconnectReason::ConnectionLost(_) => CloseCode::ABNORMAL,
        }
    }
}
