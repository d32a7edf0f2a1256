//! How a `WsHandler` accepts connections: `HandlerOptions`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpRequest;

use crate::pool::Pool;
use crate::settings::ConnectionSettings;

/// A predicate on the upgrade request that allows (true) or refuses (false) its origin
/// ([`HandlerOptions::check_origin`] makes one from a closure).
///
/// ```
/// use std::sync::Arc;
/// use actix_meta_websocket::OriginCheck;
/// let ours: OriginCheck = Arc::new(|req| {
///     req.headers().get("origin").is_some_and(|o| o.as_bytes().ends_with(b".example.com"))
/// });
/// ```
pub type OriginCheck = Arc<dyn Fn(&HttpRequest) -> bool + Send + Sync>;

/// How a [`WsHandler`](crate::WsHandler) accepts connections (Ergo's `HandlerOptions`).
///
/// ```
/// # use actix::{Actor, Addr, Context};
/// # use actix_meta_websocket::*;
/// # struct Worker;
/// # impl Actor for Worker { type Context = Context<Self>; }
/// # impl actix::Handler<MessageConnect> for Worker { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
/// # impl actix::Handler<WsMessage> for Worker { type Result = (); fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {} }
/// # impl actix::Handler<MessageDisconnect> for Worker { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
/// # #[actix::main] async fn main() {
/// let pool = Pool::new([Worker.start(), Worker.start()]).unwrap();
/// let options = HandlerOptions::new(pool)
///     .compression(true)
///     .protocols(["chat.v1"])
///     .check_origin(|req| {
///         req.headers().get("origin").map_or(true, |o| o.as_bytes() == b"https://example.com")
///     })
///     .handshake_timeout(std::time::Duration::from_secs(5))
///     .settings(ConnectionSettings { idle_timeout: Some(std::time::Duration::from_secs(60)), ..Default::default() })
///     .max_connections(10_000); // further upgrades get 503
/// let handler = WsHandler::new(options).unwrap();
/// assert_eq!(handler.connections(), 0); // live connections of this handler
/// # }
/// ```
#[derive(Clone)]
pub struct HandlerOptions {
    /// The targets of new connections, round-robin; `None` when every upgrade chooses its
    /// own with [`Upgrade::target`](crate::Upgrade::target) (see [`Default`](#impl-Default-for-HandlerOptions)).
    pub pool: Option<Pool>,
    /// Bound on the opening handshake (default 15 s). actix-web reads request headers
    /// before the handler runs, so give the same value to
    /// `HttpServer::client_request_timeout` (see [`WsHandler::handshake_timeout`](crate::WsHandler::handshake_timeout)).
    pub handshake_timeout: Duration,
    /// Accept permessage-deflate offers (default off).
    pub compression: bool,
    /// Origin policy; `None` refuses a request whose `Origin` host differs from its `Host`.
    pub check_origin: Option<OriginCheck>,
    /// Subprotocols in order of preference; the first one the client also lists is chosen.
    pub protocols: Vec<String>,
    /// Limits, timers and buffers of each connection.
    pub settings: ConnectionSettings,
    /// How many connections of this handler may be open at once; further upgrades are
    /// answered 503 (default: no bound but the server's).
    pub max_connections: Option<usize>,
}

impl HandlerOptions {
    /// Options with defaults and the given pool (or a single [`Target`](crate::Target)).
    pub fn new(pool: impl Into<Pool>) -> Self {
        HandlerOptions { pool: Some(pool.into()), ..HandlerOptions::default() }
    }

    setters! {
        /// Sets [`compression`](Self::compression).
        compression: bool,
        /// Sets [`handshake_timeout`](Self::handshake_timeout).
        handshake_timeout: Duration,
        /// Sets the per-connection settings.
        settings: ConnectionSettings,
    }

    /// Sets [`max_connections`](Self::max_connections).
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// Sets the origin predicate.
    pub fn check_origin(mut self, f: impl Fn(&HttpRequest) -> bool + Send + Sync + 'static) -> Self {
        self.check_origin = Some(Arc::new(f));
        self
    }

    /// Sets the supported subprotocols, most preferred first.
    pub fn protocols<I: IntoIterator<Item = S>, S: Into<String>>(mut self, protocols: I) -> Self {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }
}

/// Options with defaults and no pool, for handlers whose every upgrade chooses its target
/// with [`Upgrade::target`](crate::Upgrade::target) (say, the room in the path). An upgrade
/// that chooses none is answered 500 ([`HandshakeError::NoTarget`](crate::HandshakeError::NoTarget)).
///
/// ```
/// # use actix_meta_websocket::*;
/// let handler = WsHandler::new(HandlerOptions::default().compression(true)).unwrap();
/// ```
impl Default for HandlerOptions {
    fn default() -> Self {
        HandlerOptions {
            pool: None,
            handshake_timeout: Duration::from_secs(15),
            compression: false,
            check_origin: None,
            protocols: Vec::new(),
            settings: ConnectionSettings::default(),
            max_connections: None,
        }
    }
}

impl fmt::Debug for HandlerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerOptions")
            .field("pool", &self.pool)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("compression", &self.compression)
            .field("check_origin", &self.check_origin.is_some())
            .field("protocols", &self.protocols)
            .field("connection", &self.settings)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}
