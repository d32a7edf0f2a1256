//! The server half: the `WsHandler` that upgrades actix-web requests into `WsConnection`
//! actors (Ergo's `CreateHandler`), and its shutdown.

mod options;
mod request;
mod socket_claim;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix_service::{IntoServiceFactory, Service, ServiceFactory};
use actix_web::body::MessageBody;
use actix_web::dev::AppConfig;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, HttpServer};

pub use options::{HandlerOptions, OriginCheck};
pub(crate) use request::LocalAddr;
pub use request::{record_local_addr, HandshakeError};
pub(crate) use socket_claim::{Pending, SocketClaim};

use crate::connection::{copy_headers, ConnectData, ConnectionId, Setup, Shutdown, Target, WsConnection};
use crate::error::ConfigError;
use crate::registry::{Registration, Registry};
use crate::settings::ConnectionSettings;
use request::{check_request, local_addr, Accepted};

/// What one upgrade chooses for itself (see [`WsHandler::upgrade_with`], whose example
/// makes one).
#[derive(Default)]
#[must_use]
pub struct Upgrade {
    target: Option<Target>,
    data: Option<ConnectData>,
}

impl Upgrade {
    /// The handler's defaults: the pool's next target, nothing attached (see
    /// [`WsHandler::upgrade_with`]).
    pub fn new() -> Self {
        Upgrade::default()
    }

    /// This connection's target instead of the pool's next one: an actor's `Addr` or a
    /// [`Target`].
    pub fn target(mut self, target: impl Into<Target>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// A value for [`MessageConnect::data`](crate::MessageConnect::data), read back with
    /// its type (`m.data::<T>()`); what an extractor or middleware established, such as the
    /// authenticated user.
    pub fn data<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.data = Some(ConnectData::new(value));
        self
    }
}

impl fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrade").field("target", &self.target).field("data", &self.data.is_some()).finish()
    }
}

struct Inner {
    options: HandlerOptions,
    /// `options.settings`, shared by every connection instead of copied into each.
    settings: Arc<ConnectionSettings>,
    registry: Registry<ConnectionId>,
}

/// Upgrades actix-web requests to WebSocket connections, one [`WsConnection`] actor each.
///
/// Cheap to clone; clones share the live-connection set and the shutdown state.
///
/// Three `HttpServer` settings matter to WebSockets; [`configure_server`](Self::configure_server)
/// applies them in one call:
/// - `client_request_timeout(handler.handshake_timeout())`: actix-web reads the upgrade
///   request's head before any handler runs, so this is what bounds a client that stalls
///   mid-handshake.
/// - `client_disconnect_timeout(Duration::ZERO)`: after the closing handshake the server
///   should close TCP first (RFC 6455 7.1.1). actix-web lingers instead, for this timeout
///   (default 1 s), waiting for the client to close; with zero it closes at once.
/// - `on_connect(record_local_addr)`: records each accepted socket's own address, which
///   [`MessageConnect::local_addr`](crate::MessageConnect::local_addr) reports (without
///   it, the listener's address, `0.0.0.0:port` on a wildcard bind).
///
/// ```no_run
/// # use actix::{Actor, Addr, Context};
/// # use actix_meta_websocket::*;
/// # use actix_web::{web, App, HttpRequest, HttpServer};
/// # struct Worker;
/// # impl Actor for Worker { type Context = Context<Self>; }
/// # impl actix::Handler<MessageConnect> for Worker { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
/// # impl actix::Handler<WsMessage> for Worker { type Result = (); fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {} }
/// # impl actix::Handler<MessageDisconnect> for Worker { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
/// # #[actix_web::main] async fn main() -> std::io::Result<()> {
/// let handler = WsHandler::new(HandlerOptions::new(Pool::new([Worker.start()]).unwrap()))?;
/// let h = handler.clone();
/// HttpServer::new(move || {
///     let h2 = h.clone();
///     App::new()
///         .route("/ws", h.route()) // one line
///         // or: your own route, auth first, then the upgrade with an attached value
///         .route("/private", web::get().to(move |req: HttpRequest, body: web::Payload| {
///             let h = h2.clone();
///             async move {
///                 let user = req.headers().get("x-user")
///                     .ok_or_else(|| HandshakeError::refuse(actix_web::http::StatusCode::UNAUTHORIZED, "who are you?"))?;
///                 let user = user.to_str().unwrap_or_default().to_owned();
///                 h.upgrade_with(&req, body, Upgrade::new().data(user))
///             }
///         }))
/// })
/// .client_request_timeout(handler.handshake_timeout())
/// .client_disconnect_timeout(std::time::Duration::ZERO)
/// .on_connect(record_local_addr)
/// .shutdown_signal(handler.shutdown_on(async { let _ = tokio::signal::ctrl_c().await; }))
/// .bind("127.0.0.1:8080")?
/// .run()
/// .await
/// # }
/// ```
#[derive(Clone)]
pub struct WsHandler {
    inner: Arc<Inner>,
}

impl fmt::Debug for WsHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsHandler")
            .field("options", &self.inner.options)
            .field("connections", &self.connections())
            .field("shut_down", &self.is_shut_down())
            .finish()
    }
}

type UpgradeFuture = std::future::Ready<Result<HttpResponse, HandshakeError>>;

/// The shortest handshake timeout of every handler made in this process, in
/// milliseconds (`u64::MAX`: none yet).
static SHORTEST_HANDSHAKE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

/// The shortest handshake timeout of the handlers made so far: what a server that reads a
/// request's head before any handler sees it must bound that read by.
pub(crate) fn shortest_handshake_timeout() -> Option<Duration> {
    match SHORTEST_HANDSHAKE_MS.load(std::sync::atomic::Ordering::Relaxed) {
        u64::MAX => None,
        ms => Some(Duration::from_millis(ms)),
    }
}

impl WsHandler {
    /// A handler with `options`, or the setting in `options.settings` that cannot work.
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
    /// let mut options = HandlerOptions::new(Target::from_addr(Worker.start()));
    /// options.settings.max_write_buffer = 0;
    /// let err = WsHandler::new(options).unwrap_err();
    /// assert_eq!(err.field, "max_write_buffer");
    /// # }
    /// ```
    pub fn new(options: HandlerOptions) -> Result<Self, ConfigError> {
        options.settings.validate()?;
        let ms = options.handshake_timeout.as_millis().min(u64::MAX as u128) as u64;
        SHORTEST_HANDSHAKE_MS.fetch_min(ms, std::sync::atomic::Ordering::Relaxed);
        Ok(WsHandler {
            inner: Arc::new(Inner {
                settings: Arc::new(options.settings.clone()),
                options,
                registry: Registry::default(),
            }),
        })
    }

    /// Applies the `HttpServer` settings a WebSocket server needs (see the type's docs):
    /// the handshake timeout as `client_request_timeout`, no lingering after the closing
    /// handshake, and [`record_local_addr`] as `on_connect` (call it from your own
    /// `on_connect` if you have one).
    ///
    /// ```no_run
    /// # use actix::{Actor, Context};
    /// # use actix_meta_websocket::*;
    /// # use actix_web::{App, HttpServer};
    /// # struct Worker;
    /// # impl Actor for Worker { type Context = Context<Self>; }
    /// # impl actix::Handler<MessageConnect> for Worker { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
    /// # impl actix::Handler<WsMessage> for Worker { type Result = (); fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {} }
    /// # impl actix::Handler<MessageDisconnect> for Worker { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
    /// # #[actix_web::main] async fn main() -> std::io::Result<()> {
    /// let handler = WsHandler::new(HandlerOptions::new(Target::from_addr(Worker.start())))?;
    /// let h = handler.clone();
    /// handler
    ///     .configure_server(HttpServer::new(move || App::new().route("/ws", h.route())))
    ///     .bind("127.0.0.1:8080")?
    ///     .run()
    ///     .await
    /// # }
    /// ```
    pub fn configure_server<F, I, S, B>(&self, server: HttpServer<F, I, S, B>) -> HttpServer<F, I, S, B>
    where
        F: Fn() -> I + Send + Clone + 'static,
        I: IntoServiceFactory<S, actix_http::Request>,
        S: ServiceFactory<actix_http::Request, Config = AppConfig> + 'static,
        S::Error: Into<actix_web::Error> + 'static,
        S::InitError: fmt::Debug,
        S::Response: Into<actix_http::Response<B>> + 'static,
        <S::Service as Service<actix_http::Request>>::Future: 'static,
        S::Service: 'static,
        B: MessageBody + 'static,
    {
        server
            .client_request_timeout(self.handshake_timeout())
            .client_disconnect_timeout(Duration::ZERO)
            .on_connect(record_local_addr)
    }

    /// An actix-web route (any method; non-GET is answered 405) that upgrades every request.
    pub fn route(&self) -> actix_web::Route {
        let h = self.clone();
        web::route().to(move |req: HttpRequest, payload: web::Payload| -> UpgradeFuture {
            std::future::ready(h.upgrade(&req, payload))
        })
    }

    /// Upgrades one request: checks it, answers 101 and starts its connection actor, whose
    /// target is the pool's next live member.
    pub fn upgrade(&self, req: &HttpRequest, payload: web::Payload) -> Result<HttpResponse, HandshakeError> {
        self.upgrade_with(req, payload, Upgrade::new())
    }

    /// Like [`upgrade`](Self::upgrade), with choices made for this request: its target
    /// (say, the actor of the room in the path) and a value for
    /// [`MessageConnect::data`](crate::MessageConnect::data) (say, the authenticated user).
    /// A handler whose every upgrade chooses its target needs no pool
    /// ([`HandlerOptions::default`](crate::HandlerOptions)).
    ///
    /// ```no_run
    /// # use actix::{Actor, Addr, Context};
    /// # use actix_meta_websocket::*;
    /// # use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    /// # use std::collections::HashMap;
    /// # struct Room;
    /// # impl Actor for Room { type Context = Context<Self>; }
    /// # impl actix::Handler<MessageConnect> for Room { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
    /// # impl actix::Handler<WsMessage> for Room { type Result = (); fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {} }
    /// # impl actix::Handler<MessageDisconnect> for Room { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
    /// struct User(String);
    ///
    /// async fn join(
    ///     req: HttpRequest,
    ///     body: web::Payload,
    ///     room: web::Path<String>,
    ///     rooms: web::Data<HashMap<String, Addr<Room>>>,
    ///     handler: web::Data<WsHandler>,
    /// ) -> Result<HttpResponse, HandshakeError> {
    ///     let target = rooms.get(room.as_str()).ok_or_else(|| HandshakeError::not_found(format!("no room {room}")))?;
    ///     let user = User(req.headers().get("x-user").and_then(|v| v.to_str().ok()).unwrap_or("guest").into());
    ///     handler.upgrade_with(&req, body, Upgrade::new().target(target.clone()).data(user))
    /// }
    ///
    /// #[actix_web::main]
    /// async fn main() -> std::io::Result<()> {
    ///     let rooms: HashMap<String, Addr<Room>> = ["lobby", "games"].map(|n| (n.to_owned(), Room.start())).into();
    ///     let rooms = web::Data::new(rooms);
    ///     let handler = WsHandler::new(HandlerOptions::default())?; // no pool: each upgrade picks its room
    ///     let data = web::Data::new(handler.clone());
    ///     handler
    ///         .configure_server(HttpServer::new(move || {
    ///             App::new()
    ///                 .app_data(rooms.clone()) // what the extractors above take
    ///                 .app_data(data.clone())
    ///                 .route("/rooms/{room}", web::get().to(join))
    ///         }))
    ///         .bind("127.0.0.1:8080")?
    ///         .run()
    ///         .await
    /// }
    /// ```
    pub fn upgrade_with(
        &self,
        req: &HttpRequest,
        payload: web::Payload,
        upgrade: Upgrade,
    ) -> Result<HttpResponse, HandshakeError> {
        let answer = self.answer(req, payload, upgrade);
        crate::telemetry::handshake(match &answer {
            Ok(_) => "upgraded",
            Err(e) => e.outcome(),
        });
        answer
    }

    fn answer(
        &self,
        req: &HttpRequest,
        payload: web::Payload,
        upgrade: Upgrade,
    ) -> Result<HttpResponse, HandshakeError> {
        let opts = &self.inner.options;
        let accepted = check_request(req, opts)?;
        // Checked again, under the registry's lock, when the connection joins it.
        if self.is_shut_down() {
            return Err(HandshakeError::Unavailable("shutting down"));
        }
        if opts.max_connections.is_some_and(|max| self.connections() >= max) {
            return Err(HandshakeError::Unavailable("too many connections"));
        }
        let target = match upgrade.target {
            Some(t) if t.is_alive() => t,
            Some(_) => return Err(HandshakeError::Unavailable("the chosen target is gone")),
            None => match &opts.pool {
                Some(pool) => pool.pick().ok_or(HandshakeError::Unavailable("no live target in the pool"))?,
                None => return Err(HandshakeError::NoTarget),
            },
        };
        let mut res = accepted.switching_protocols();
        let setup = self.setup(req, accepted, target, upgrade.data);
        // Joined before the connection does anything, under the lock shutdown takes: a
        // shutdown that began meanwhile is told to the connection at once.
        let told = |(registration, shutting_down): (Registration<ConnectionId>, bool), id: &ConnectionId| {
            if shutting_down {
                id.addr().do_send(Shutdown);
            }
            Some(registration)
        };
        let claim = req.extensions().get::<SocketClaim>().cloned();
        if let Some(claim) = claim {
            // The server takes the socket over once this 101 is written, and the connection
            // starts then: its place is held from now, so that a shutdown beginning in
            // between waits for it.
            let reservation =
                self.inner.registry.reserve().ok_or(HandshakeError::Unavailable("shutting down"))?;
            let join = move |id: &ConnectionId| told(reservation.join(id.seq(), id.clone()), id);
            claim.leave(Pending { setup, join: Box::new(join) });
            return Ok(res.finish());
        }
        let registry = self.inner.registry.clone();
        let join = move |id: &ConnectionId| told(registry.join(id.seq(), id.clone()), id);
        let (_, body) = WsConnection::accept(setup, payload.into_inner(), join);
        Ok(res.streaming(body))
    }

    /// What the connection of the accepted request `req` starts with.
    fn setup(
        &self,
        req: &HttpRequest,
        accepted: Accepted,
        target: Target,
        data: Option<ConnectData>,
    ) -> Setup {
        let uri =
            req.uri().path_and_query().map_or_else(|| req.path().to_owned(), |pq| pq.as_str().to_owned());
        Setup {
            target,
            config: self.inner.settings.clone(),
            deflate: accepted.deflate.map(|(p, _)| p),
            protocol: accepted.protocol,
            local_addr: Some(local_addr(req)),
            remote_addr: req.peer_addr(),
            uri,
            headers: copy_headers(req.headers()),
            data,
        }
    }

    /// The configured handshake timeout, for `HttpServer::client_request_timeout`.
    pub fn handshake_timeout(&self) -> Duration {
        self.inner.options.handshake_timeout
    }

    /// Number of live connections started by this handler (see
    /// [`HandlerOptions`](crate::HandlerOptions)'s example).
    pub fn connections(&self) -> usize {
        self.inner.registry.len()
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.registry.is_shutting_down()
    }

    /// Stops accepting (new upgrades get 503), closes every open connection with 1001
    /// Going Away, and resolves when all of them have ended (each target has been sent
    /// its `MessageDisconnect`). An upgrade accepted while shutdown begins is closed with
    /// 1001 too, and waited for.
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
    /// let handler = WsHandler::new(HandlerOptions::new(Target::from_addr(Worker.start()))).unwrap();
    /// handler.shutdown().await; // no connections: resolves at once
    /// assert!(handler.is_shut_down());
    /// assert_eq!(handler.connections(), 0);
    /// # }
    /// ```
    pub fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        let conns = self.inner.registry.begin_shutdown();
        tracing::info!(connections = conns.len(), "websocket handler shutting down");
        for id in conns {
            id.addr().do_send(Shutdown);
        }
        let registry = self.inner.registry.clone();
        async move { registry.wait_empty().await }
    }

    /// A future for `HttpServer::shutdown_signal`: waits for `signal`, then runs
    /// [`shutdown`](Self::shutdown), so stopping the server closes every connection with
    /// 1001 before the server stops.
    pub fn shutdown_on<F>(&self, signal: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let h = self.clone();
        async move {
            signal.await;
            h.shutdown().await;
        }
    }
}
