//! The server half: the `Handler` that upgrades actix-web requests into `WsConnection`
//! actors (Ergo's `CreateHandler`), and its shutdown.

mod options;
mod request;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix_service::{IntoServiceFactory, Service, ServiceFactory};
use actix_web::body::MessageBody;
use actix_web::dev::AppConfig;
use actix_web::{web, HttpRequest, HttpResponse, HttpServer};

pub use options::{HandlerOptions, OriginCheck};
pub use request::{record_local_addr, HandshakeError};

use crate::connection::{Parts, Shutdown, WsConnection};
use crate::registry::Registry;
use crate::{ConfigError, ConnectData, ConnectionConfig};
use request::{check_request, local_addr};

struct Inner {
    options: HandlerOptions,
    /// `options.connection`, shared by every connection instead of copied into each.
    connection: Arc<ConnectionConfig>,
    registry: Registry,
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
/// # impl actix::Handler<Message> for Worker { type Result = (); fn handle(&mut self, _: Message, _: &mut Context<Self>) {} }
/// # impl actix::Handler<MessageDisconnect> for Worker { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
/// # #[actix_web::main] async fn main() -> std::io::Result<()> {
/// let handler = Handler::new(HandlerOptions::new(Pool::new([Worker.start()]).unwrap()))?;
/// let h = handler.clone();
/// HttpServer::new(move || {
///     let h2 = h.clone();
///     App::new()
///         .route("/ws", h.route()) // one line
///         // or: your own route, auth first, then the upgrade with an attached value
///         .route("/private", web::get().to(move |req: HttpRequest, body: web::Payload| {
///             let h = h2.clone();
///             async move {
///                 let user = req.headers().get("x-user").ok_or(HandshakeError::BadRequest("no user"))?;
///                 let user = user.to_str().unwrap_or_default().to_owned();
///                 h.upgrade_with(&req, body, user)
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
pub struct Handler {
    inner: Arc<Inner>,
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("options", &self.inner.options)
            .field("connections", &self.connections())
            .field("shut_down", &self.is_shut_down())
            .finish()
    }
}

type UpgradeFuture = std::future::Ready<Result<HttpResponse, HandshakeError>>;

impl Handler {
    /// A handler with `options`, or the setting in `options.connection` that cannot work.
    ///
    /// ```
    /// # use actix::{Actor, Context};
    /// # use actix_meta_websocket::*;
    /// # struct Worker;
    /// # impl Actor for Worker { type Context = Context<Self>; }
    /// # impl actix::Handler<MessageConnect> for Worker { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
    /// # impl actix::Handler<Message> for Worker { type Result = (); fn handle(&mut self, _: Message, _: &mut Context<Self>) {} }
    /// # impl actix::Handler<MessageDisconnect> for Worker { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
    /// # #[actix::main] async fn main() {
    /// let mut options = HandlerOptions::new(Target::from_addr(Worker.start()));
    /// options.connection.max_write_buffer = 0;
    /// let err = Handler::new(options).unwrap_err();
    /// assert_eq!(err.field, "max_write_buffer");
    /// # }
    /// ```
    pub fn new(options: HandlerOptions) -> Result<Self, ConfigError> {
        options.connection.validate()?;
        Ok(Handler {
            inner: Arc::new(Inner {
                connection: Arc::new(options.connection.clone()),
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
    /// # impl actix::Handler<Message> for Worker { type Result = (); fn handle(&mut self, _: Message, _: &mut Context<Self>) {} }
    /// # impl actix::Handler<MessageDisconnect> for Worker { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
    /// # #[actix_web::main] async fn main() -> std::io::Result<()> {
    /// let handler = Handler::new(HandlerOptions::new(Target::from_addr(Worker.start())))?;
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

    /// Upgrades one request: checks it, answers 101 and starts its connection actor.
    pub fn upgrade(&self, req: &HttpRequest, payload: web::Payload) -> Result<HttpResponse, HandshakeError> {
        self.upgrade_inner(req, payload, None)
    }

    /// Like [`upgrade`](Self::upgrade), attaching `data` (e.g. the authenticated user),
    /// which the target finds in [`MessageConnect::data`](crate::MessageConnect::data).
    pub fn upgrade_with<T: Any + Send + Sync>(
        &self,
        req: &HttpRequest,
        payload: web::Payload,
        data: T,
    ) -> Result<HttpResponse, HandshakeError> {
        self.upgrade_inner(req, payload, Some(Arc::new(data)))
    }

    fn upgrade_inner(
        &self,
        req: &HttpRequest,
        payload: web::Payload,
        data: Option<ConnectData>,
    ) -> Result<HttpResponse, HandshakeError> {
        let opts = &self.inner.options;
        let accepted = check_request(req, opts)?;
        // Checked again, under the registry's lock, when the connection joins it.
        if self.is_shut_down() {
            return Err(HandshakeError::Unavailable("shutting down"));
        }
        let target = opts.pool.pick().ok_or(HandshakeError::Unavailable("no live target in the pool"))?;

        let mut res = accepted.switching_protocols();
        let uri =
            req.uri().path_and_query().map_or_else(|| req.path().to_owned(), |pq| pq.as_str().to_owned());
        let parts = Parts {
            target,
            config: self.inner.connection.clone(),
            deflate: accepted.deflate.map(|(p, _)| p),
            protocol: accepted.protocol,
            local_addr: Some(local_addr(req)),
            remote_addr: req.peer_addr(),
            uri,
            headers: req.headers(),
            data,
        };
        let registry = &self.inner.registry;
        let (_, body) = WsConnection::accept(parts, payload.into_inner(), |id| {
            // Joined before the upgrade is answered, under the lock shutdown takes: a
            // shutdown that began meanwhile is told to the connection at once.
            let (registration, shutting_down) = registry.join(id);
            if shutting_down {
                id.addr().do_send(Shutdown);
            }
            Some(registration)
        });
        Ok(res.streaming(body))
    }

    /// The configured handshake timeout, for `HttpServer::client_request_timeout`.
    pub fn handshake_timeout(&self) -> Duration {
        self.inner.options.handshake_timeout
    }

    /// Number of live connections started by this handler.
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
    /// # impl actix::Handler<Message> for Worker { type Result = (); fn handle(&mut self, _: Message, _: &mut Context<Self>) {} }
    /// # impl actix::Handler<MessageDisconnect> for Worker { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
    /// # #[actix::main] async fn main() {
    /// let handler = Handler::new(HandlerOptions::new(Target::from_addr(Worker.start()))).unwrap();
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
