//! Errors of the public API.

use crate::message::Outgoing;
use crate::protocol::{DeflateNegotiationError, EncodeError};

/// A string that is not what it was parsed as: a history [`Position`](crate::groups::Position),
/// or a cluster id (`GlobalId`, `NodeId`).
///
/// ```
/// use actix_meta_websocket::{ParseError, groups::Position};
/// let err: ParseError = "yesterday".parse::<Position>().unwrap_err();
/// assert_eq!(err.to_string(), r#"not a history position (expected <16 hex digits>:<offset>): "yesterday""#);
/// assert_eq!(err.input(), "yesterday");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a {what} (expected {expected}): {input:?}")]
pub struct ParseError {
    what: &'static str,
    expected: &'static str,
    /// The start of the input (64 characters at most: it may come from a peer).
    input: String,
}

impl ParseError {
    pub(crate) fn new(what: &'static str, expected: &'static str, input: &str) -> Self {
        ParseError { what, expected, input: input.chars().take(64).collect() }
    }

    /// The start of the string refused (64 characters at most).
    pub fn input(&self) -> &str {
        &self.input
    }
}

/// A message could not be written.
///
/// ```no_run
/// # use actix_meta_websocket::{ConnectionId, Outgoing, WriteError};
/// # async fn demo(id: ConnectionId) {
/// match id.send_wait(Outgoing::text("hello")).await {
///     Ok(()) => {}
///     Err(WriteError::Closed) => {}        // gone: its MessageDisconnect is on its way
///     Err(WriteError::SlowConsumer) => {}  // closed with 1008: the peer stopped reading
///     Err(WriteError::Invalid(why)) => panic!("a bug on our side: {why}"),
///     Err(_) => {}
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The connection is closing or gone.
    #[error("connection closed (its MessageDisconnect says why): drop its id")]
    Closed,
    /// The peer did not read for longer than the write timeout; the connection was closed.
    #[error("peer too slow: its outgoing buffer stayed full past the write timeout, so it was closed (raise write_timeout or max_write_buffer for slow but live peers)")]
    SlowConsumer,
    /// The message cannot be encoded (control body over 125 bytes, invalid close code or
    /// payload, text that is not UTF-8).
    #[error("invalid message: {0}")]
    Invalid(String),
}

/// A [`ConnectionId::try_send`](crate::ConnectionId::try_send) that did not write; the
/// message comes back (that method's example takes it back).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TrySendError {
    /// The peer is behind: the connection holds `max_write_buffer` bytes it has not taken.
    /// Nothing was closed.
    #[error("the connection's outgoing buffer is full (max_write_buffer): retry later, drop the message, or await send_wait")]
    Full(Outgoing),
    /// The connection is gone.
    #[error("connection closed (its MessageDisconnect says why): drop its id")]
    Closed(Outgoing),
}

impl TrySendError {
    /// The message that was not written (see [`ConnectionId::try_send`](crate::ConnectionId::try_send)).
    pub fn into_message(self) -> Outgoing {
        match self {
            TrySendError::Full(m) | TrySendError::Closed(m) => m,
        }
    }
}

/// A setting that cannot work, named by its field (or, for a [`Pool`](crate::Pool), the
/// argument: `targets`).
///
/// ```
/// use actix_meta_websocket::ConnectionSettings;
/// let cfg = ConnectionSettings { max_write_buffer: 0, ..Default::default() };
/// let err = cfg.validate().unwrap_err();
/// assert_eq!(err.field, "max_write_buffer");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{field}`: {reason}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The field, as written in [`ConnectionSettings`](crate::ConnectionSettings) (nested
    /// fields with a dot: `limits.max_frame_size`).
    pub field: &'static str,
    /// Why its value cannot work.
    pub reason: &'static str,
}

impl ConnectError {
    /// Whether dialling again later may succeed: the network, the server or a proxy had a
    /// passing problem (refused or reset TCP, a timeout, HTTP 408, 429 or 5xx). Mistakes in
    /// the options, a server that answers in a way we refuse, TLS failures and a pool with no
    /// live target are not worth retrying.
    ///
    /// ```
    /// use actix_meta_websocket::ConnectError;
    /// assert!(ConnectError::Status { status: 503, body: String::new() }.is_retryable());
    /// assert!(!ConnectError::Status { status: 404, body: "no such room".into() }.is_retryable());
    /// assert!(ConnectError::Timeout(std::time::Duration::from_secs(15)).is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Connect { .. } | ConnectError::Timeout(_) | ConnectError::Http(_) => true,
            ConnectError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            ConnectError::Proxy { status, .. } => {
                status.split_whitespace().nth(1).is_some_and(|code| code.starts_with('5'))
            }
            ConnectError::Url { .. }
            | ConnectError::Config(_)
            | ConnectError::NoTarget
            | ConnectError::Tls { .. }
            | ConnectError::Handshake(_)
            | ConnectError::Deflate(_) => false,
        }
    }
}

impl From<ConfigError> for std::io::Error {
    fn from(e: ConfigError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

impl From<EncodeError> for WriteError {
    fn from(e: EncodeError) -> Self {
        WriteError::Invalid(e.to_string())
    }
}

/// A dial that failed; nothing was started.
///
/// ```
/// # use actix::{Actor, Context};
/// # use actix_meta_websocket::*;
/// # struct Worker;
/// # impl Actor for Worker { type Context = Context<Self>; }
/// # impl actix::Handler<MessageConnect> for Worker { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
/// # impl actix::Handler<WsMessage> for Worker { type Result = (); fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {} }
/// # impl actix::Handler<MessageDisconnect> for Worker { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
/// # #[actix::main] async fn main() {
/// let target = Target::from_addr(Worker.start());
/// // Nothing listens on port 1 of the loopback: the TCP step fails, with its address.
/// let url = url::Url::parse("ws://127.0.0.1:1/ws").unwrap();
/// match connect(DialOptions::new(url, target.clone())).await {
///     Err(ConnectError::Connect { addr, .. }) => assert_eq!(addr, "127.0.0.1:1"),
///     other => panic!("{other:?}"),
/// }
/// let url = url::Url::parse("http://127.0.0.1/ws").unwrap();
/// assert!(matches!(connect(DialOptions::new(url, target)).await, Err(ConnectError::Url { .. })));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not a usable `ws://` or `wss://` URL.
    #[error("invalid URL {url}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The options hold a setting that cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No target: the pool's actors are all gone.
    #[error("no live target in the pool: every actor in it has stopped")]
    NoTarget,
    /// The TCP connection (or proxy tunnel) could not be made.
    #[error("connect to {addr} failed: {source}")]
    Connect {
        /// Host and port (or the proxy's).
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// TLS failed.
    #[error("TLS handshake with {host} failed: {reason}")]
    Tls {
        /// Server name.
        host: String,
        /// The cause.
        reason: String,
    },
    /// The handshake (DNS, TCP, proxy, TLS and upgrade together) took longer than allowed:
    /// the handshake timeout, or, with a caller's awc client, the time after which that
    /// client's own timeout gave up.
    #[error("handshake timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The server answered with something other than 101: `body` is what it said, the
    /// first kilobyte of its answer's body as text (empty when it said nothing, or when the
    /// dial used a caller's own awc client).
    ///
    /// ```
    /// use actix_meta_websocket::ConnectError;
    /// let e = ConnectError::Status { status: 401, body: "bad or missing token".into() };
    /// assert_eq!(e.to_string(), "server answered HTTP 401 instead of 101 Switching Protocols: bad or missing token");
    /// ```
    #[error("server answered HTTP {status} instead of 101 Switching Protocols{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        /// The status code.
        status: u16,
        /// The head of the answer's body (at most 1 KiB), as text.
        body: String,
    },
    /// The 101 answer does not match the request.
    #[error("bad handshake answer: {0}")]
    Handshake(String),
    /// The server's permessage-deflate answer is not acceptable.
    #[error(transparent)]
    Deflate(#[from] DeflateNegotiationError),
    /// The proxy refused the CONNECT tunnel.
    #[error("proxy {proxy} refused CONNECT: {status}")]
    Proxy {
        /// The proxy.
        proxy: String,
        /// Its status line.
        status: String,
    },
    /// Another HTTP-level failure.
    #[error("HTTP error: {0}")]
    Http(String),
}
