//! The server half: `HandlerOptions`, and the `Handler` that upgrades actix-web requests
//! into `WsConnection` actors (Ergo's `CreateHandler`).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_service::{IntoServiceFactory, Service, ServiceFactory};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Extensions};
use actix_web::http::{header, Method, StatusCode, Version};
use actix_web::{web, HttpRequest, HttpResponse, HttpServer, ResponseError};

use crate::connection::transport::{Pipe, ServerTransport};
use crate::connection::{sized_copy, ConnectInfo, Setup, Shutdown, WsConnection};
use crate::protocol::{self, parse_extension_headers, Role};
use crate::registry::Registry;
use crate::{ConfigError, ConnectData, ConnectionConfig, Pool};

/// A predicate on the upgrade request that allows (true) or refuses (false) its origin.
pub type OriginCheck = Arc<dyn Fn(&HttpRequest) -> bool + Send + Sync>;

/// How a [`Handler`] accepts connections (Ergo's `HandlerOptions`).
///
/// ```
/// # use actix::{Actor, Addr, Context};
/// # use actix_meta_websocket::*;
/// # struct Worker;
/// # impl Actor for Worker { type Context = Context<Self>; }
/// # impl actix::Handler<MessageConnect> for Worker { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
/// # impl actix::Handler<Message> for Worker { type Result = (); fn handle(&mut self, _: Message, _: &mut Context<Self>) {} }
/// # impl actix::Handler<MessageDisconnect> for Worker { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
/// # #[actix::main] async fn main() {
/// let pool = Pool::new([Worker.start(), Worker.start()]).unwrap();
/// let options = HandlerOptions::new(pool)
///     .compression(true)
///     .protocols(["chat.v1"])
///     .check_origin(|req| {
///         req.headers().get("origin").map_or(true, |o| o.as_bytes() == b"https://example.com")
///     });
/// let handler = Handler::new(options).unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct HandlerOptions {
    /// The targets of new connections, round-robin.
    pub pool: Pool,
    /// Bound on the opening handshake (default 15 s). actix-web reads request headers
    /// before the handler runs, so give the same value to
    /// `HttpServer::client_request_timeout` (see [`Handler::handshake_timeout`]).
    pub handshake_timeout: Duration,
    /// Accept permessage-deflate offers (default off).
    pub compression: bool,
    /// Origin policy; `None` refuses a request whose `Origin` host differs from its `Host`.
    pub check_origin: Option<OriginCheck>,
    /// Subprotocols in order of preference; the first one the client also lists is chosen.
    pub protocols: Vec<String>,
    /// Limits, timers and buffers of each connection.
    pub connection: ConnectionConfig,
}

impl HandlerOptions {
    /// Options with defaults and the given pool (or a single [`Target`](crate::Target)).
    pub fn new(pool: impl Into<Pool>) -> Self {
        HandlerOptions {
            pool: pool.into(),
            handshake_timeout: Duration::from_secs(15),
            compression: false,
            check_origin: None,
            protocols: Vec::new(),
            connection: ConnectionConfig::default(),
        }
    }

    /// Sets [`compression`](Self::compression).
    pub fn compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }

    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
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

    /// Sets the per-connection settings.
    pub fn connection(mut self, config: ConnectionConfig) -> Self {
        self.connection = config;
        self
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
            .field("connection", &self.connection)
            .finish()
    }
}

/// Why an upgrade request was refused; answers with the matching HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Not a valid WebSocket upgrade (400).
    #[error("bad WebSocket upgrade request: {0}")]
    BadRequest(&'static str),
    /// Not a GET (405).
    #[error("WebSocket upgrade must use GET")]
    MethodNotAllowed,
    /// `Sec-WebSocket-Version` is not 13 (426, with `Sec-WebSocket-Version: 13`).
    #[error("unsupported WebSocket version")]
    UnsupportedVersion,
    /// The origin check refused the request (403).
    #[error("origin not allowed")]
    OriginRefused,
    /// The handler is shut down, or no pool member is alive (503).
    #[error("WebSocket service unavailable: {0}")]
    Unavailable(&'static str),
}

impl ResponseError for HandshakeError {
    fn status_code(&self) -> StatusCode {
        match self {
            HandshakeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HandshakeError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HandshakeError::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            HandshakeError::OriginRefused => StatusCode::FORBIDDEN,
            HandshakeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        match self {
            HandshakeError::UnsupportedVersion => {
                res.insert_header((header::SEC_WEBSOCKET_VERSION, protocol::VERSION));
            }
            HandshakeError::MethodNotAllowed => {
                res.insert_header((header::ALLOW, "GET"));
            }
            _ => {}
        }
        res.content_type("text/plain; charset=utf-8").body(self.to_string())
    }
}

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

        let (transport, mut body) = ServerTransport::new(payload.into_inner());
        let mut res = HttpResponse::build(StatusCode::SWITCHING_PROTOCOLS);
        res.upgrade("websocket").insert_header((header::SEC_WEBSOCKET_ACCEPT, &accepted.accept[..]));
        if let Some(p) = &accepted.protocol {
            res.insert_header((header::SEC_WEBSOCKET_PROTOCOL, p.as_str()));
        }
        if let Some((_, answer)) = &accepted.deflate {
            res.insert_header((header::SEC_WEBSOCKET_EXTENSIONS, answer.as_str()));
        }
        let uri =
            req.uri().path_and_query().map_or_else(|| req.path().to_owned(), |pq| pq.as_str().to_owned());
        let setup = Setup {
            role: Role::Server,
            transport: Pipe::Server(transport),
            read_buf: bytes::BytesMut::new(),
            target,
            config: self.inner.connection.clone(),
            deflate: accepted.deflate.map(|(p, _)| p),
            protocol: accepted.protocol,
            local_addr: Some(local_addr(req)),
            remote_addr: req.peer_addr(),
            info: ConnectInfo { uri, headers: sized_copy(req.headers()), data },
            registry: Some(self.inner.registry.clone()),
        };
        WsConnection::start_in_body(setup, &mut body);
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

/// The accepted socket's own address, recorded by [`record_local_addr`].
#[derive(Debug, Clone, Copy)]
struct LocalAddr(SocketAddr);

/// An `HttpServer::on_connect` callback that records each accepted TCP socket's own
/// address, so [`MessageConnect::local_addr`](crate::MessageConnect::local_addr) reports
/// the address the peer reached (on a wildcard bind, not `0.0.0.0:port`).
/// [`Handler::configure_server`] installs it; call it from your own `on_connect` if you
/// have one. Over TLS the listener's address is reported.
pub fn record_local_addr(conn: &dyn Any, ext: &mut Extensions) {
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        if let Ok(addr) = tcp.local_addr() {
            ext.insert(LocalAddr(addr));
        }
    }
}

fn local_addr(req: &HttpRequest) -> SocketAddr {
    match req.conn_data::<LocalAddr>() {
        Some(LocalAddr(addr)) => *addr,
        None => req.app_config().local_addr(),
    }
}

struct Accepted {
    accept: [u8; 28],
    protocol: Option<String>,
    deflate: Option<(protocol::DeflateParams, String)>,
}

fn single_header(req: &HttpRequest, name: header::HeaderName) -> Result<Option<&[u8]>, HandshakeError> {
    let mut values = req.headers().get_all(name);
    let first = values.next();
    if values.next().is_some() {
        return Err(HandshakeError::BadRequest("repeated WebSocket header"));
    }
    Ok(first.map(|v| v.as_bytes()))
}

fn has_token(req: &HttpRequest, name: header::HeaderName, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .flat_map(protocol::header_tokens)
        .any(|t| t.eq_ignore_ascii_case(token))
}

fn check_request(req: &HttpRequest, opts: &HandlerOptions) -> Result<Accepted, HandshakeError> {
    if !has_token(req, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::BadRequest("missing 'Connection: upgrade'"));
    }
    if !has_token(req, header::UPGRADE, "websocket") {
        return Err(HandshakeError::BadRequest("missing 'Upgrade: websocket'"));
    }
    if req.method() != Method::GET {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if req.version() != Version::HTTP_11 {
        return Err(HandshakeError::BadRequest("WebSocket upgrades need HTTP/1.1"));
    }
    if single_header(req, header::SEC_WEBSOCKET_VERSION)? != Some(protocol::VERSION.as_bytes()) {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let allowed = match &opts.check_origin {
        Some(check) => check(req),
        None => same_origin(req),
    };
    if !allowed {
        return Err(HandshakeError::OriginRefused);
    }
    let key = single_header(req, header::SEC_WEBSOCKET_KEY)?
        .ok_or(HandshakeError::BadRequest("missing Sec-WebSocket-Key"))?;
    if !protocol::is_valid_key(key) {
        return Err(HandshakeError::BadRequest("invalid Sec-WebSocket-Key"));
    }
    let protocol = if opts.protocols.is_empty() {
        None
    } else {
        let requested = req.headers().get_all(header::SEC_WEBSOCKET_PROTOCOL).filter_map(|v| v.to_str().ok());
        protocol::select_subprotocol(requested, &opts.protocols).map(str::to_owned)
    };
    let deflate = if opts.compression {
        let lines: Vec<&str> =
            req.headers().get_all(header::SEC_WEBSOCKET_EXTENSIONS).filter_map(|v| v.to_str().ok()).collect();
        // An unparseable extension header means no extension, not a failed handshake.
        parse_extension_headers(lines)
            .ok()
            .and_then(|offers| opts.connection.deflate.negotiate_server(&offers))
    } else {
        None
    };
    Ok(Accepted { accept: protocol::accept_key_bytes(key), protocol, deflate })
}

/// gorilla's default: no `Origin`, or an `Origin` whose host (and port, as written)
/// equals `Host`, ignoring case.
fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    let Some((_, rest)) = origin.split_once("://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let Some(host) = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    !authority.is_empty() && authority.eq_ignore_ascii_case(host)
}
