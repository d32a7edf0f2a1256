//! What a connection tells its target: `MessageConnect` first, every `WsMessage`, and one
//! `MessageDisconnect` last; and the value an upgrade attaches for `MessageConnect`.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use actix_http::header::HeaderMap;
use bytes::Bytes;

use super::id::ConnectionId;
use crate::message::{as_text, DataTypeError, DisconnectReason, MessageKind, Outgoing};

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
///         if m.as_text() == Some("/quit") {
///             let _ = m.id.close(1000, "bye");
///             return;
///         }
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

/// A value attached at upgrade time (e.g. the authenticated user), with its type's name
/// for the error a wrong type gets. One pointer, so that an id without data costs nothing.
#[derive(Clone)]
pub(crate) struct ConnectData(Arc<Attached>);

struct Attached {
    value: Box<dyn Any + Send + Sync>,
    type_name: &'static str,
}

impl ConnectData {
    pub(crate) fn new<T: Any + Send + Sync>(value: T) -> Self {
        ConnectData(Arc::new(Attached { value: Box::new(value), type_name: std::any::type_name::<T>() }))
    }

    /// The value as a `T`, or an error that names both types.
    pub(crate) fn get<T: Any>(data: Option<&ConnectData>) -> Result<&T, DataTypeError> {
        let expected = std::any::type_name::<T>();
        match data {
            None => Err(DataTypeError { expected, attached: "nothing" }),
            Some(d) => d.0.value.downcast_ref().ok_or(DataTypeError { expected, attached: d.0.type_name }),
        }
    }
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
}

impl MessageConnect {
    /// The query of [`uri`](Self::uri), without the `?`; empty when there is none.
    ///
    /// ```
    /// # use actix_meta_websocket::*;
    /// # use actix_meta_websocket::groups::Since;
    /// # fn demo(m: MessageConnect) -> Result<(), ParseError> {
    /// // ws://host/ws/lobby?since=...: the room from the path, and where the client left off.
    /// let room = m.path().rsplit('/').next().unwrap_or("lobby");
    /// let since = Since::from_query(m.query(), "since")?.unwrap_or(Since::Now);
    /// # Ok(()) }
    /// ```
    pub fn query(&self) -> &str {
        let uri = self.uri.split('#').next().unwrap_or_default();
        uri.split_once('?').map_or("", |(_, q)| q)
    }

    /// The path of [`uri`](Self::uri): `/ws/lobby` for `/ws/lobby?token=...` (server) and
    /// for `wss://host/ws/lobby?token=...` (client). The example of [`query`](Self::query)
    /// reads a room from it.
    pub fn path(&self) -> &str {
        let uri = self.uri.split(['?', '#']).next().unwrap_or_default();
        match uri.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]),
            None => uri,
        }
    }

    /// The value attached with the upgrade, as a `T`; asking for another type than the one
    /// attached (or when none was) is an error that names both. Every message's id carries
    /// it too: [`ConnectionId::data`](crate::ConnectionId::data).
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
    ///             Err(e) => eprintln!("{e}"), // e.g. "the connection carries nothing, not User"
    ///         }
    ///     }
    /// }
    /// ```
    pub fn data<T: Any + Send + Sync>(&self) -> Result<&T, DataTypeError> {
        self.id.data()
    }
}

impl fmt::Debug for MessageConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageConnect")
            .field("id", &self.id)
            .field("remote_addr", &self.remote_addr)
            .field("local_addr", &self.local_addr)
            .field("uri", &crate::redact::for_logs(&self.uri))
            .field("protocol", &self.protocol)
            .field("compressed", &self.compressed)
            .field("data", &self.id.has_data())
            .finish_non_exhaustive()
    }
}

/// Sent to the target exactly once, when a connection has ended; [`DisconnectReason`]'s
/// example handles one.
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct MessageDisconnect {
    /// The connection.
    pub id: ConnectionId,
    /// Why it ended.
    pub reason: DisconnectReason,
}

/// Echoes: the same kind and body.
impl From<WsMessage> for Outgoing {
    fn from(m: WsMessage) -> Self {
        Outgoing { kind: m.kind, body: m.body }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_incoming_messages_have_one_size() {
        // See the comment on `Outgoing`: an echo's envelope reuses the incoming one's memory.
        assert_eq!(std::mem::size_of::<Outgoing>(), std::mem::size_of::<WsMessage>());
    }
}
