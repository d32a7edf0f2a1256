//! The messages a connection exchanges with its target and its writers.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use actix_http::header::HeaderMap;
use bytes::Bytes;

use crate::protocol::CloseCode;
use crate::ConnectionId;

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

/// A message from the peer, as its connection's target receives it (Ergo's `Message`,
/// incoming). Text and binary only: the connection answers pings and handles closes itself.
///
/// ```
/// # use actix::{Actor, Context, Handler};
/// # use actix_meta_websocket::{WsMessage, MessageConnect, MessageDisconnect};
/// struct Echo;
/// # impl Actor for Echo { type Context = Context<Self>; }
/// # impl Handler<MessageConnect> for Echo { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
/// # impl Handler<MessageDisconnect> for Echo { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
/// impl Handler<WsMessage> for Echo {
///     type Result = ();
///     fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
///         let (id, same) = m.into_parts();
///         id.send(same); // the same kind and body, back to where it came from
///     }
/// }
/// ```
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct WsMessage {
    /// The connection it came from: write to it to answer.
    pub id: ConnectionId,
    /// Text or binary.
    pub kind: MessageKind,
    /// The payload; valid UTF-8 for text.
    pub body: Bytes,
}

impl WsMessage {
    pub(crate) fn new(id: ConnectionId, kind: MessageKind, body: Bytes) -> Self {
        WsMessage { id, kind, body }
    }

    /// The body as text, for text messages.
    pub fn as_text(&self) -> Option<&str> {
        as_text(self.kind, &self.body)
    }

    /// The body, text or binary, read as JSON into a `T` (feature `serde`).
    ///
    /// ```
    /// # #[cfg(feature = "serde")] fn demo(m: actix_meta_websocket::WsMessage) {
    /// #[derive(serde::Deserialize)]
    /// struct Move { x: i32, y: i32 }
    /// match m.json::<Move>() {
    ///     Ok(mv) => println!("to {},{}", mv.x, mv.y),
    ///     Err(e) => eprintln!("not a move: {e}"), // e.g. "missing field `y` at line 1 column 8"
    /// }
    /// # }
    /// ```
    #[cfg(feature = "serde")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The connection, and the same kind and body as a message to write: an echo without
    /// a copy.
    ///
    /// ```no_run
    /// # fn echo(m: actix_meta_websocket::WsMessage) {
    /// let (id, same) = m.into_parts();
    /// id.send(same);
    /// # }
    /// ```
    pub fn into_parts(self) -> (ConnectionId, Outgoing) {
        (self.id, Outgoing { kind: self.kind, body: self.body })
    }
}

/// A message to write to a connection (Ergo's `Message`, outgoing): what
/// [`ConnectionId::send`] and its kin take. Text when the kind is not set.
///
/// ```
/// use actix_meta_websocket::{MessageKind, Outgoing};
/// let m = Outgoing::text("hello");
/// assert_eq!((m.kind, m.as_text()), (MessageKind::Text, Some("hello")));
/// assert_eq!(Outgoing::default().kind, MessageKind::Text); // an unset kind means text
/// // Plain values convert: &str and String to text, bytes to binary.
/// assert_eq!(Outgoing::from("hi").kind, MessageKind::Text);
/// assert_eq!(Outgoing::from(vec![1u8, 2]).kind, MessageKind::Binary);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
// As large as a `WsMessage`: their actix envelopes then share an allocator size class, so
// a reply reuses the memory its incoming message just freed instead of missing the cache.
#[repr(align(16))]
pub struct Outgoing {
    /// What kind of message this is.
    pub kind: MessageKind,
    /// The payload.
    pub body: Bytes,
}

impl Outgoing {
    /// A text message.
    pub fn text(body: impl Into<String>) -> Self {
        Outgoing { kind: MessageKind::Text, body: Bytes::from(body.into()) }
    }

    /// A binary message.
    pub fn binary(body: impl Into<Bytes>) -> Self {
        Outgoing { kind: MessageKind::Binary, body: body.into() }
    }

    /// A ping (at most 125 bytes).
    pub fn ping(body: impl Into<Bytes>) -> Self {
        Outgoing { kind: MessageKind::Ping, body: body.into() }
    }

    /// A pong (at most 125 bytes).
    pub fn pong(body: impl Into<Bytes>) -> Self {
        Outgoing { kind: MessageKind::Pong, body: body.into() }
    }

    /// A close with `code` and `reason` (cut to fit the frame). A code that may not be sent
    /// is refused when the message is written ([`ConnectionId::send_wait`] returns
    /// [`WriteError::Invalid`](crate::WriteError::Invalid)); [`ConnectionId::close`] checks it
    /// at once.
    pub fn close(code: impl Into<CloseCode>, reason: &str) -> Self {
        let code = code.into();
        let reason = crate::protocol::truncate_reason(reason);
        let mut body = Vec::with_capacity(2 + reason.len());
        body.extend_from_slice(&code.0.to_be_bytes());
        body.extend_from_slice(reason.as_bytes());
        Outgoing { kind: MessageKind::Close, body: Bytes::from(body) }
    }

    /// A close frame without a code or reason.
    ///
    /// ```
    /// use actix_meta_websocket::{MessageKind, Outgoing};
    /// let m = Outgoing::close_bare();
    /// assert_eq!((m.kind, m.body.len()), (MessageKind::Close, 0));
    /// ```
    pub fn close_bare() -> Self {
        Outgoing { kind: MessageKind::Close, body: Bytes::new() }
    }

    /// The body as text, for text messages.
    pub fn as_text(&self) -> Option<&str> {
        as_text(self.kind, &self.body)
    }

    /// `value` as a JSON text message (feature `serde`).
    ///
    /// ```
    /// # #[cfg(feature = "serde")] {
    /// use actix_meta_websocket::Outgoing;
    /// #[derive(serde::Serialize)]
    /// struct Price { symbol: &'static str, bid: f64 }
    /// let m = Outgoing::json(&Price { symbol: "EURUSD", bid: 1.0841 }).unwrap();
    /// assert_eq!(m.as_text(), Some(r#"{"symbol":"EURUSD","bid":1.0841}"#));
    /// # }
    /// ```
    #[cfg(feature = "serde")]
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Outgoing { kind: MessageKind::Text, body: Bytes::from(serde_json::to_vec(value)?) })
    }
}

fn as_text(kind: MessageKind, body: &[u8]) -> Option<&str> {
    match kind {
        MessageKind::Text => std::str::from_utf8(body).ok(),
        _ => None,
    }
}

/// Echoes: the same kind and body.
impl From<WsMessage> for Outgoing {
    fn from(m: WsMessage) -> Self {
        Outgoing { kind: m.kind, body: m.body }
    }
}

impl From<&str> for Outgoing {
    fn from(text: &str) -> Self {
        Outgoing::text(text)
    }
}

impl From<String> for Outgoing {
    fn from(text: String) -> Self {
        Outgoing::text(text)
    }
}

impl From<Bytes> for Outgoing {
    fn from(bytes: Bytes) -> Self {
        Outgoing::binary(bytes)
    }
}

impl From<Vec<u8>> for Outgoing {
    fn from(bytes: Vec<u8>) -> Self {
        Outgoing::binary(bytes)
    }
}

/// A value attached at upgrade time (e.g. the authenticated user), with its type's name
/// for the error a wrong type gets.
#[derive(Clone)]
pub(crate) struct ConnectData {
    value: Arc<dyn Any + Send + Sync>,
    type_name: &'static str,
}

impl ConnectData {
    pub(crate) fn new<T: Any + Send + Sync>(value: T) -> Self {
        ConnectData { value: Arc::new(value), type_name: std::any::type_name::<T>() }
    }
}

/// [`MessageConnect::data`] asked for a type that was not attached. Its text names both
/// types without their module paths; the fields keep the full names.
///
/// ```
/// # use actix_meta_websocket::DataTypeError;
/// # fn demo(e: DataTypeError) {
/// eprintln!("{e}"); // "MessageConnect carries String, not Vec<User>"
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MessageConnect carries {}, not {}", short_type_name(attached), short_type_name(expected))]
#[non_exhaustive]
pub struct DataTypeError {
    /// The type asked for, with its path (`my_app::auth::User`).
    pub expected: &'static str,
    /// The type attached, with its path, or `"nothing"`.
    pub attached: &'static str,
}

/// `alloc::vec::Vec<my_app::User>` as `Vec<User>`: each path cut to its last name.
fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut path = String::new();
    let flush = |path: &mut String, out: &mut String| {
        out.push_str(path.rsplit("::").next().unwrap_or_default());
        path.clear();
    };
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            path.push(c);
        } else {
            flush(&mut path, &mut out);
            out.push(c);
        }
    }
    flush(&mut path, &mut out);
    out
}

/// Sent to the target when a connection starts, before any [`WsMessage`] of it.
///
/// A target made from one actor ([`Target::from_addr`](crate::Target::from_addr)) gets it
/// first in its mailbox, and the connection reads from the peer at once; when the
/// recipients may be different actors
/// ([`Target::from_recipients`](crate::Target::from_recipients)), the connection starts
/// reading only once it has been handled.
#[derive(Clone, actix::Message)]
#[rtype(result = "()")]
#[non_exhaustive]
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
    /// The value attached with the upgrade (see [`Upgrade::data`](crate::Upgrade::data)).
    pub(crate) data: Option<ConnectData>,
}

impl MessageConnect {
    /// The value attached with the upgrade, as a `T`; asking for another type than the one
    /// attached (or when none was) is an error that names both.
    ///
    /// ```
    /// # use actix::{Actor, Context};
    /// # use actix_meta_websocket::*;
    /// struct User(String); // attached by your route: `Upgrade::new().data(User(name))`
    ///
    /// struct Chat;
    /// # impl Actor for Chat { type Context = Context<Self>; }
    /// impl actix::Handler<MessageConnect> for Chat {
    ///     type Result = ();
    ///     fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
    ///         match m.data::<User>() {
    ///             Ok(user) => m.id.send(format!("welcome, {}", user.0)),
    ///             Err(e) => eprintln!("{e}"), // e.g. "MessageConnect carries nothing, not User"
    ///         }
    ///     }
    /// }
    /// ```
    pub fn data<T: Any + Send + Sync>(&self) -> Result<&T, DataTypeError> {
        let expected = std::any::type_name::<T>();
        match &self.data {
            None => Err(DataTypeError { expected, attached: "nothing" }),
            Some(d) => d.value.downcast_ref().ok_or(DataTypeError { expected, attached: d.type_name }),
        }
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
#[non_exhaustive]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_in_errors_lose_their_paths() {
        for (full, short) in [
            ("my_app::auth::User", "User"),
            ("nothing", "nothing"),
            ("alloc::vec::Vec<my_app::User>", "Vec<User>"),
            ("core::option::Option<(u32, alloc::string::String)>", "Option<(u32, String)>"),
            ("&str", "&str"),
            ("[u8; 4]", "[u8; 4]"),
        ] {
            assert_eq!(short_type_name(full), short, "{full}");
        }
        let e = DataTypeError { expected: "my_app::User", attached: "nothing" };
        assert_eq!(e.to_string(), "MessageConnect carries nothing, not User");
    }

    #[test]
    fn replies_and_incoming_messages_have_one_size() {
        // See the comment on `Outgoing`: an echo's envelope reuses the incoming one's memory.
        assert_eq!(std::mem::size_of::<Outgoing>(), std::mem::size_of::<WsMessage>());
    }
}
