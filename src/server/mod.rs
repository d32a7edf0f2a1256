//! `WsServer`: serves an actix-web `App`, unchanged, as `HttpServer` does, except that
//! the socket of every WebSocket upgrade a `WsHandler` accepts is taken over from the
//! HTTP layer once the 101 is written: nothing of actix-http's dispatcher (its task, its
//! buffers, the streaming response body) stays under the connection.
//!
//! - `app`: one `App` per worker thread, for plain requests and upgrade requests alike.
//! - `upgrade`: the upgrade service, where the socket changes hands.
//! - `respond`: what happens to upgrade requests no `WsHandler` took.
//! - `body`: the request body another crate's upgrade reads from the socket.

mod app;
mod body;
mod respond;
mod upgrade;

use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::{self, SocketAddr};
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::{HttpService, Request, Response};
use actix_server::ServerBuilder;
use actix_service::{IntoServiceFactory, Service, ServiceFactory};
use actix_web::dev::{AppConfig, Extensions, Server};
use actix_web::Error;

use crate::handler::{shortest_handshake_timeout, LocalAddr};
use app::AppFactory;
use upgrade::UpgradeFactory;

/// How long a client may take to send a request's head when no handler says: the default
/// of `HandlerOptions::handshake_timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Serves an actix-web `App` like `HttpServer`, and takes over the socket of each
/// WebSocket connection a [`WsHandler`](crate::WsHandler) accepts, so that nothing of the
/// HTTP layer stays under it.
///
/// The same `App` factory, routes, middleware, `app_data`, extractors,
/// [`WsHandler::route`](crate::WsHandler::route) and
/// [`upgrade_with`](crate::WsHandler::upgrade_with) work unchanged; switching is one line:
///
/// ```no_run
/// # use actix::{Actor, Context};
/// # use actix_meta_websocket::*;
/// # use actix_web::{web, App};
/// # struct Echo;
/// # impl Actor for Echo { type Context = Context<Self>; }
/// # impl actix::Handler<MessageConnect> for Echo { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
/// # impl actix::Handler<WsMessage> for Echo { type Result = (); fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {} }
/// # impl actix::Handler<MessageDisconnect> for Echo { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let handler = WsHandler::new(HandlerOptions::new(Echo.start()))?;
///     let h = handler.clone();
///     WsServer::new(move || {                      // was: HttpServer::new(move || {
///         App::new()
///             .route("/ws", h.route())
///             .route("/", web::get().to(|| async { "hello" }))
///     })
///     .shutdown_signal(handler.shutdown_on(async { let _ = tokio::signal::ctrl_c().await; }))
///     .bind("127.0.0.1:8080")?
///     .run()
///     .await
/// }
/// ```
///
/// What differs from `HttpServer`:
///
/// - A request that asks for an upgrade goes to the `App` as always; when a `WsHandler`
///   route accepts it, the 101 is written and the connection starts on the socket, on its
///   worker thread. Any other answer to an upgrade request is written as it is and the
///   connection then closes. Another crate's WebSocket route (actix-ws) keeps working: its
///   101 is followed by its response body and its request body, joined to the socket.
/// - `max_connections` bounds the HTTP connections, handshakes included; a WebSocket
///   connection leaves that count once it starts (bound them with
///   [`HandlerOptions::max_connections`](crate::HandlerOptions::max_connections)).
/// - The head of a request must arrive within the handshake timeout of the `WsHandler`s
///   (the shortest, if they differ; see `client_request_timeout`) without a
///   `configure_server` step; the accepted socket's
///   own address reaches [`MessageConnect::local_addr`](crate::MessageConnect::local_addr)
///   over TLS too; and after the closing handshake the connection closes TCP itself.
/// - Its listeners have `TCP_NODELAY` on (accepted sockets inherit it): a small message,
///   or a TLS handshake's second record, leaves at once instead of waiting for the peer's
///   delayed acknowledgement of the one before (up to 40 ms).
/// - HTTP/1.1 only (WebSockets need it; HTTP/2 is not offered over TLS either).
///
/// The knobs `HttpServer` users know are here under the same names, and TLS binds take a
/// rustls 0.23 `ServerConfig` (the [serving chapter](crate::guide::ch02_serving) shows a
/// whole wss server):
///
/// ```
/// # use actix::{Actor, Context};
/// # use actix_meta_websocket::*;
/// # use actix_web::App;
/// # use std::time::Duration;
/// # struct Echo;
/// # impl Actor for Echo { type Context = Context<Self>; }
/// # impl actix::Handler<MessageConnect> for Echo { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
/// # impl actix::Handler<WsMessage> for Echo { type Result = (); fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {} }
/// # impl actix::Handler<MessageDisconnect> for Echo { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
/// # #[actix_web::main]
/// # async fn main() -> std::io::Result<()> {
/// let handler = WsHandler::new(HandlerOptions::new(Echo.start()))?;
/// let h = handler.clone();
/// let server = WsServer::new(move || App::new().route("/ws", h.route()))
///     .workers(2)
///     .backlog(2048)
///     .max_connections(50_000) // HTTP connections and handshakes, per worker
///     .max_connection_rate(512) // TLS handshakes at once, per worker
///     .client_request_timeout(Duration::from_secs(5))
///     .server_hostname("chat.example.com")
///     .shutdown_timeout(10)
///     .disable_signals() // stopped through the Server's handle instead
///     .listen(std::net::TcpListener::bind("127.0.0.1:0")?)?;
/// let port = server.addrs()[0].port(); // the port the OS gave
/// assert_ne!(port, 0);
/// # Ok(())
/// # }
///
///
/// // Over TLS: a bind, or a listener of your own.
/// fn secure(handler: WsHandler, tls: rustls::ServerConfig) -> std::io::Result<actix_web::dev::Server> {
///     Ok(WsServer::new(move || App::new().route("/ws", handler.route()))
///         .bind_rustls_0_23("127.0.0.1:8443", tls.clone())?
///         .listen_rustls_0_23(std::net::TcpListener::bind("127.0.0.1:0")?, tls)?
///         .run())
/// }
/// ```
pub struct WsServer<F, I, S, B> {
    factory: F,
    builder: ServerBuilder,
    request_timeout: Option<Duration>,
    hostname: Option<String>,
    addrs: Vec<SocketAddr>,
    backlog: u32,
    _types: PhantomData<(I, S, B)>,
}

impl<F, I, S, B> WsServer<F, I, S, B>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    /// A server for the `App`s `factory` makes, one per worker thread (as `HttpServer::new`).
    pub fn new(factory: F) -> Self {
        WsServer {
            factory,
            builder: ServerBuilder::new(),
            request_timeout: None,
            hostname: None,
            addrs: Vec::new(),
            backlog: 1024,
            _types: PhantomData,
        }
    }

    /// Worker threads (default: the number of physical CPUs).
    pub fn workers(mut self, num: usize) -> Self {
        self.builder = self.builder.workers(num);
        self
    }

    /// The listen backlog of the sockets bound after this (default 1024).
    pub fn backlog(mut self, num: u32) -> Self {
        self.backlog = num;
        self.builder = self.builder.backlog(num);
        self
    }

    /// HTTP connections each worker serves at once, WebSocket handshakes included
    /// (default 25,000); an accepted WebSocket connection leaves this count.
    pub fn max_connections(mut self, num: usize) -> Self {
        self.builder = self.builder.max_concurrent_connections(num);
        self
    }

    /// TLS handshakes each worker makes at once (default 256).
    #[cfg(feature = "rustls")]
    pub fn max_connection_rate(self, num: usize) -> Self {
        actix_tls::accept::max_concurrent_tls_connect(num);
        self
    }

    /// How long a client may take to send a request's head. By default, the shortest
    /// [`handshake_timeout`](crate::HandlerOptions::handshake_timeout) of the process's
    /// `WsHandler`s (made before the server, or by its `App` factory), 15 s without any: the
    /// head is read before any handler sees the request.
    pub fn client_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// The host name the `App` generates URLs with when a request names none (default:
    /// the bound address).
    pub fn server_hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = Some(name.into());
        self
    }

    /// How long a graceful stop waits for HTTP connections to finish (default 30 s).
    pub fn shutdown_timeout(mut self, secs: u64) -> Self {
        self.builder = self.builder.shutdown_timeout(secs);
        self
    }

    /// No stop on SIGINT, SIGTERM or SIGQUIT.
    pub fn disable_signals(mut self) -> Self {
        self.builder = self.builder.disable_signals();
        self
    }

    /// Stops (gracefully) when `signal` resolves; with
    /// [`WsHandler::shutdown_on`](crate::WsHandler::shutdown_on), every WebSocket
    /// connection is closed with 1001 first.
    pub fn shutdown_signal<Fut: Future<Output = ()> + Send + 'static>(mut self, signal: Fut) -> Self {
        self.builder = self.builder.shutdown_signal(signal);
        self
    }

    /// Listens on every address `addrs` resolves to (as `HttpServer::bind`).
    pub fn bind<A: net::ToSocketAddrs>(mut self, addrs: A) -> io::Result<Self> {
        for addr in resolve(addrs)? {
            let lst = listener(addr, self.backlog)?;
            self = self.listen(lst)?;
        }
        Ok(self)
    }

    /// Listens on `lst` (as `HttpServer::listen`).
    pub fn listen(mut self, lst: net::TcpListener) -> io::Result<Self> {
        let addr = no_delay(&lst)?;
        self.addrs.push(addr);
        let (factory, timeout, host) = (self.factory.clone(), self.request_timeout, self.host(addr));
        self.builder = self.builder.listen(format!("ws-{addr}"), lst, move || {
            let app = AppFactory::new(
                factory().into_factory(),
                AppConfig::__priv_test_new(false, host.clone(), addr),
            );
            let upgrade = UpgradeFactory::<_, B>::new(app.cell());
            let mut http = HttpService::build().client_request_timeout(request_timeout(timeout));
            if addr.ip().is_unspecified() {
                http = http.on_connect_ext(|io: &actix_web::rt::net::TcpStream, ext: &mut Extensions| {
                    record_local(io, ext)
                });
            }
            http.upgrade(upgrade).h1(app).tcp()
        })?;
        Ok(self)
    }

    /// Listens with TLS (rustls 0.23) on every address `addrs` resolves to (as
    /// `HttpServer::bind_rustls_0_23`); ALPN offers `http/1.1`.
    #[cfg(feature = "rustls")]
    pub fn bind_rustls_0_23<A: net::ToSocketAddrs>(
        mut self,
        addrs: A,
        config: rustls::ServerConfig,
    ) -> io::Result<Self> {
        for addr in resolve(addrs)? {
            let lst = listener(addr, self.backlog)?;
            self = self.listen_rustls_0_23(lst, config.clone())?;
        }
        Ok(self)
    }

    /// Listens with TLS (rustls 0.23) on `lst` (as `HttpServer::listen_rustls_0_23`).
    #[cfg(feature = "rustls")]
    pub fn listen_rustls_0_23(
        mut self,
        lst: net::TcpListener,
        mut config: rustls::ServerConfig,
    ) -> io::Result<Self> {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let addr = no_delay(&lst)?;
        self.addrs.push(addr);
        let (factory, timeout, host) = (self.factory.clone(), self.request_timeout, self.host(addr));
        self.builder = self.builder.listen(format!("wss-{addr}"), lst, move || {
            let app = AppFactory::new(
                factory().into_factory(),
                AppConfig::__priv_test_new(true, host.clone(), addr),
            );
            let upgrade = UpgradeFactory::<_, B>::new(app.cell());
            let mut http = HttpService::build().client_request_timeout(request_timeout(timeout)).secure();
            if addr.ip().is_unspecified() {
                http = http
                    .on_connect_ext(|io: &TlsStream, ext: &mut Extensions| record_local(io.get_ref().0, ext));
            }
            http.upgrade(upgrade).h1(app).rustls_0_23(config.clone())
        })?;
        Ok(self)
    }

    /// The addresses bound so far (a port 0 bind shows the port it got).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Starts the workers; the returned `Server` runs them until it stops (as
    /// `HttpServer::run`): await it, and stop it through its handle.
    pub fn run(self) -> Server {
        self.builder.run()
    }

    fn host(&self, addr: SocketAddr) -> String {
        self.hostname.clone().unwrap_or_else(|| addr.to_string())
    }
}

/// The head timeout for a worker whose `App` has just been made (and with it, perhaps,
/// its handlers).
fn request_timeout(set: Option<Duration>) -> Duration {
    set.or_else(shortest_handshake_timeout).unwrap_or(REQUEST_TIMEOUT)
}

#[cfg(feature = "rustls")]
type TlsStream = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;

/// What `MessageConnect::local_addr` reports: the accepted socket's own address. Asked of
/// the socket only on a wildcard bind; otherwise the listener's address (the `App`'s
/// `local_addr`) is the socket's, with no system call per connection.
fn record_local(io: &actix_web::rt::net::TcpStream, ext: &mut Extensions) {
    if let Ok(addr) = io.local_addr() {
        ext.insert(LocalAddr(addr));
    }
}

fn resolve<A: net::ToSocketAddrs>(addrs: A) -> io::Result<Vec<SocketAddr>> {
    let all: Vec<SocketAddr> = addrs.to_socket_addrs()?.collect();
    if all.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the address resolves to nothing"));
    }
    Ok(all)
}

/// Turns Nagle's algorithm off for the sockets `lst` accepts (they inherit the option), so
/// that a small message or a TLS handshake's second record is not held back until the peer
/// acknowledges the first (up to its delayed-ACK timer, 40 ms on Linux); the listener's
/// address.
fn no_delay(lst: &net::TcpListener) -> io::Result<SocketAddr> {
    socket2::SockRef::from(lst).set_tcp_nodelay(true)?;
    lst.local_addr()
}

/// A listener on `addr` with `backlog`, reusing the address as `HttpServer` does.
fn listener(addr: SocketAddr, backlog: u32) -> io::Result<net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(net::TcpListener::from(socket))
}

impl<F, I, S, B> fmt::Debug for WsServer<F, I, S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsServer").field("addrs", &self.addrs).finish_non_exhaustive()
    }
}
