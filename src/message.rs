//! What is written to a connection and why a connection ends: plain data, shared by the
//! connection, its writers and its target. (What the target receives is in
//! `connection::events`.)

use bytes::Bytes;

use crate::protocol::CloseCode;

/// The kind of a WebSocket message, numbered as in RFC 6455 (and Ergo's `MessageType`).
/// See [`Outgoing`]'s example.
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

/// A message to write to a connection (Ergo's `Message`, outgoing): what
/// [`ConnectionId::send`](crate::ConnectionId::send) and its kin take. Text when the kind is not set.
///
/// ```
/// use actix_meta_websocket::{MessageKind, Outgoing};
/// let m = Outgoing::text("hello");
/// assert_eq!((m.kind, m.as_text()), (MessageKind::Text, Some("hello")));
/// assert_eq!(Outgoing::default().kind, MessageKind::Text); // an unset kind means text
/// // Plain values convert: &str and String to text, bytes to binary.
/// assert_eq!(Outgoing::from("hi").kind, MessageKind::Text);
/// assert_eq!(Outgoing::from(vec![1u8, 2]).kind, MessageKind::Binary);
/// // Pings and pongs by hand (the connection answers pings and sends its own already).
/// assert_eq!(Outgoing::ping("are you there").kind, MessageKind::Ping);
/// assert_eq!(Outgoing::pong(vec![]).kind as u8, 10);
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
    /// is refused when the message is written ([`ConnectionId::send_wait`](crate::ConnectionId::send_wait) returns
    /// [`WriteError::Invalid`](crate::WriteError::Invalid)); [`ConnectionId::close`](crate::ConnectionId::close) checks it
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

pub(crate) fn as_text(kind: MessageKind, body: &[u8]) -> Option<&str> {
    match kind {
        MessageKind::Text => std::str::from_utf8(body).ok(),
        _ => None,
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

/// [`MessageConnect::data`](crate::MessageConnect::data) or [`ConnectionId::data`](crate::ConnectionId::data) asked for a type that was not attached. Its text names both
/// types without their module paths; the fields keep the full names.
///
/// ```
/// # use actix_meta_websocket::DataTypeError;
/// # fn demo(e: DataTypeError) {
/// eprintln!("{e}"); // "the connection carries String, not Vec<User>"
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the connection carries {}, not {}", short_type_name(attached), short_type_name(expected))]
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

/// Which side started the closing handshake. Displays as "the peer" or "this side".
/// See [`DisconnectReason`]'s example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// The peer sent the first close frame.
    Peer,
    /// This end did (a `Close` message, shutdown, a limit).
    Local,
}

/// Why a connection ended.
///
/// ```
/// use actix::prelude::*;
/// use actix_meta_websocket::{DisconnectReason, Initiator, MessageDisconnect};
///
/// struct Worker;
/// impl Actor for Worker { type Context = Context<Self>; }
/// impl Handler<MessageDisconnect> for Worker {
///     type Result = ();
///     fn handle(&mut self, m: MessageDisconnect, _: &mut Context<Self>) {
///         match &m.reason {
///             DisconnectReason::Closed { initiator: Initiator::Peer, code, .. } => println!("{} left ({code})", m.id),
///             DisconnectReason::SlowConsumer => println!("{} could not keep up", m.id),
///             other => println!("{} ended: {other}", m.id), // Display says it in words
///         }
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// A closing handshake: the code and reason of the first close frame.
    ///
    /// ```
    /// use actix_meta_websocket::{DisconnectReason, Initiator};
    /// let r = DisconnectReason::Closed { initiator: Initiator::Peer, code: 1001.into(), reason: "bye".into() };
    /// assert_eq!(r.to_string(), "closed by the peer with 1001 (going away): bye");
    /// let r = DisconnectReason::Closed { initiator: Initiator::Local, code: 1000.into(), reason: String::new() };
    /// assert_eq!(r.to_string(), "closed by this side with 1000 (normal closure)");
    /// ```
    #[error("closed by {initiator} with {code}{}{}", code_meaning(*code), reason_suffix(reason))]
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

impl std::fmt::Display for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Initiator::Peer => "the peer",
            Initiator::Local => "this side",
        })
    }
}

/// " (going away)" for a code RFC 6455 names; nothing for others.
fn code_meaning(code: CloseCode) -> String {
    let name = match code.0 {
        1000 => "normal closure",
        1001 => "going away",
        1002 => "protocol error",
        1003 => "unsupported data",
        1005 => "no status",
        1006 => "abnormal closure",
        1007 => "invalid payload",
        1008 => "policy violation",
        1009 => "message too big",
        1010 => "extension required",
        1011 => "internal error",
        1012 => "service restart",
        1013 => "try again later",
        1014 => "bad gateway",
        1015 => "TLS handshake",
        _ => return String::new(),
    };
    format!(" ({name})")
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
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
        assert_eq!(e.to_string(), "the connection carries nothing, not User");
    }
}
