//! Dialling out: [`connect`] with [`DialOptions`]
//! (both re-exported at the crate root) starts the same [`WsConnection`] actor an accepted
//! connection gets; [`reconnect`] keeps one up with a [`Backoff`], over
//! the servers of [`DialOptions::failover`], resuming groups' history ([`Resume`]). This
//! module holds what those take: [`Proxy`], [`Backoff`], [`Resume`], and what a reconnect
//! reports ([`Reconnecting`], [`DialFailed`]).
//!
//! The guide's chapter [connections](crate::guide::ch03_connections) shows a client.
//!
//! ```
//! use actix_meta_websocket::client::Backoff;
//! use std::time::Duration;
//!
//! let backoff = Backoff { max: Duration::from_secs(10), max_attempts: Some(20), ..Backoff::default() };
//! assert!(backoff.delay(30) <= Duration::from_secs(10));
//! ```

// For maintainers:
// The client half: dial a WebSocket server with awc and run the connection as the same
// `WsConnection` actor an accepted one gets (Ergo's `CreateConnection` + `SpawnMeta`).

mod dialer;
mod proxy;
mod reconnect;
mod refusal;
mod resume;

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub use proxy::Proxy;
pub use reconnect::{reconnect, Backoff, DialFailed, Reconnecting};
pub use resume::Resume;

use actix_http::header::{self, HeaderMap, HeaderName, HeaderValue};
use awc::error::{ConnectError as AwcConnectError, SendRequestError, WsClientError};

use crate::connection::{copy_headers, ConnectionId, Setup, WsConnection};
use crate::error::ConnectError;
use crate::pool::Pool;
use crate::protocol::parse_extension_headers;
use crate::settings::ConnectionSettings;

/// What to dial and how (Ergo's `ConnectionOptions`).
///
/// Not `Send`: it may hold an awc client, which lives on one thread. Build it on the
/// thread (or inside the actor) that dials; [`reconnect`] takes it there too.
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
/// let options = DialOptions::new("ws://127.0.0.1:8080/ws", Worker.start())
///     .compression(true)
///     .protocols(["chat.v1"])
///     .header("authorization", "Bearer t0ken")
///     .handshake_timeout(std::time::Duration::from_secs(5))
///     .settings(ConnectionSettings { max_write_buffer: 1 << 20, ..Default::default() })
///     .proxy(client::Proxy::None) // ignore HTTPS_PROXY and friends
///     .resume(client::Resume::new("since")); // rejoin history where it left off
/// # }
/// ```
///
/// Your own TLS roots, or an awc client of your own (which then does TCP and TLS itself):
///
/// ```no_run
/// # use std::sync::Arc;
/// # use actix_meta_websocket::*;
/// fn with_roots(target: Target, tls: Arc<rustls::ClientConfig>) -> DialOptions {
///     DialOptions::new("wss://feed.internal/ws", target).tls(tls)
/// }
/// fn with_client(target: Target) -> DialOptions {
///     let awc = awc::Client::builder().timeout(std::time::Duration::from_secs(5)).finish();
///     DialOptions::new("wss://feed.internal/ws", target).client(awc)
/// }
/// ```
#[derive(Clone)]
pub struct DialOptions {
    /// The server, `ws://` or `wss://`; checked when dialling.
    pub url: String,
    /// Further servers that [`reconnect`] moves to, in turn, when a dial fails (the nodes
    /// of a cluster, say); [`connect`] dials `url` only. See [`failover`](Self::failover).
    pub failover: Vec<String>,
    /// Who receives the connection's messages: the pool's next live member.
    pub pool: Pool,
    /// Bound on DNS, TCP, TLS and the upgrade together (default 15 s).
    pub handshake_timeout: Duration,
    /// Offer permessage-deflate (default off).
    pub compression: bool,
    /// Subprotocols to offer, in order of preference.
    pub protocols: Vec<String>,
    /// Extra request headers (auth tokens, cookies, origin).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Limits, timers and buffers of the connection.
    pub settings: ConnectionSettings,
    /// Proxy policy (default: from the environment, as gorilla's dialer).
    pub proxy: Proxy,
    /// TLS settings for `wss://` (e.g. your own roots); by default webpki's roots.
    #[cfg(feature = "rustls")]
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// An awc client of your own. It then does the TCP and TLS steps, so `proxy` and
    /// `tls` are not applied and the connection's addresses are unknown.
    pub client: Option<awc::Client>,
    /// The last history position seen, put in each dial's query (see [`Resume`]).
    pub resume: Option<Resume>,
}

impl DialOptions {
    /// Options with defaults for `url` (a `&str`, `String` or [`Url`](crate::Url)) and a
    /// pool (an actor's `Addr`, a [`Target`](crate::Target) or a [`Pool`]).
    pub fn new(url: impl Into<String>, pool: impl Into<Pool>) -> Self {
        DialOptions {
            url: url.into(),
            failover: Vec::new(),
            pool: pool.into(),
            handshake_timeout: Duration::from_secs(15),
            compression: false,
            protocols: Vec::new(),
            headers: Vec::new(),
            settings: ConnectionSettings::default(),
            proxy: Proxy::default(),
            #[cfg(feature = "rustls")]
            tls: None,
            client: None,
            resume: None,
        }
    }

    setters! {
        /// Sets [`compression`](Self::compression).
        compression: bool,
        /// Sets [`handshake_timeout`](Self::handshake_timeout).
        handshake_timeout: Duration,
        /// Sets the per-connection settings.
        settings: ConnectionSettings,
        /// Sets the proxy policy.
        proxy: Proxy,
    }

    /// Sets the subprotocols to offer.
    pub fn protocols<I: IntoIterator<Item = S>, S: Into<String>>(mut self, protocols: I) -> Self {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a request header. Names and values that are not valid HTTP are ignored with a
    /// warning: use [`headers`](Self::headers) directly to handle them yourself.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(n), Ok(v)) => self.headers.push((n, v)),
            _ => tracing::warn!(name, "invalid request header ignored"),
        }
        self
    }

    /// Uses `config` for `wss://` (its ALPN list should hold only `http/1.1`).
    #[cfg(feature = "rustls")]
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Further servers for [`reconnect`] to move to when a dial fails: it tries each in
    /// turn, from the one after the server that failed, and waits its backoff only once all
    /// have failed in a row. A connection that ends is dialled again where it was. With
    /// [`resume`](Self::resume), every server is asked for what came after the same
    /// position.
    ///
    /// ```
    /// # use actix::{Actor, Context};
    /// # use actix_meta_websocket::*;
    /// # use actix_meta_websocket::client::Resume;
    /// # struct Feed;
    /// # impl Actor for Feed { type Context = Context<Self>; }
    /// # impl actix::Handler<MessageConnect> for Feed { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
    /// # impl actix::Handler<WsMessage> for Feed { type Result = (); fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {} }
    /// # impl actix::Handler<MessageDisconnect> for Feed { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
    /// # #[actix::main] async fn main() {
    /// let options = DialOptions::new("wss://node-a.example.com/ws", Feed.start())
    ///     .failover(["wss://node-b.example.com/ws", "wss://node-c.example.com/ws"])
    ///     .resume(Resume::new("since"));
    /// assert_eq!(options.servers().count(), 3);
    /// # }
    /// ```
    pub fn failover<I: IntoIterator<Item = S>, S: Into<String>>(mut self, urls: I) -> Self {
        self.failover = urls.into_iter().map(Into::into).collect();
        self
    }

    /// `url`, then the [`failover`](Self::failover) servers.
    pub fn servers(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.url.as_str()).chain(self.failover.iter().map(String::as_str))
    }

    /// Uses `client` for the HTTP part of the handshake.
    pub fn client(mut self, client: awc::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Puts `resume`'s last position in the query of every dial, so that a client that
    /// dials again (see [`reconnect`]) rejoins right after the last broadcast it saw.
    pub fn resume(mut self, resume: Resume) -> Self {
        self.resume = Some(resume);
        self
    }
}

impl fmt::Debug for DialOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DialOptions")
            .field("url", &redact_str(&self.url))
            .field("failover", &self.failover.iter().map(|u| redact_str(u)).collect::<Vec<_>>())
            .field("pool", &self.pool)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("compression", &self.compression)
            .field("protocols", &self.protocols)
            .field("headers", &self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("connection", &self.settings)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

/// Dials `options.url`, completes the WebSocket handshake and starts the connection actor.
///
/// Returns the new connection's id; its target then receives `MessageConnect`, the
/// messages and one `MessageDisconnect`, exactly as for an accepted connection. On
/// failure nothing is started and the error says what to fix.
///
/// Must run inside an actix system (the actor starts on the current arbiter).
///
/// ```no_run
/// # use actix::{Actor, Addr, Context};
/// # use actix_meta_websocket::*;
/// # struct Worker;
/// # impl Actor for Worker { type Context = Context<Self>; }
/// # impl actix::Handler<MessageConnect> for Worker { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
/// # impl actix::Handler<WsMessage> for Worker { type Result = (); fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {} }
/// # impl actix::Handler<MessageDisconnect> for Worker { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
/// # #[actix::main] async fn main() -> Result<(), ConnectError> {
/// let url = url::Url::parse("ws://127.0.0.1:8080/ws").unwrap();
/// let id = connect(DialOptions::new(url, Target::from_addr(Worker.start()))).await?;
/// id.send(Outgoing::text("hello"));
/// # Ok(()) }
/// ```
pub async fn connect(options: DialOptions) -> Result<ConnectionId, ConnectError> {
    let dialled = dial_and_start(options).await;
    crate::telemetry::dial(dialled.is_ok());
    dialled
}

async fn dial_and_start(options: DialOptions) -> Result<ConnectionId, ConnectError> {
    options.settings.validate()?;
    let mut url = check_url(&options.url)?;
    if let Some(resume) = &options.resume {
        resume.apply(&mut url);
    }
    let target = options.pool.pick().ok_or(ConnectError::NoTarget)?;
    let dialled = dial(&options, &url).await?;
    let headers = dialled.response.headers();
    let protocol = chosen_protocol(&options, headers)?;
    let deflate = accepted_deflate(&options, headers)?;
    let setup = Setup {
        target,
        config: Arc::new(options.settings.clone()),
        deflate,
        protocol,
        local_addr: dialled.local_addr,
        remote_addr: dialled.remote_addr,
        uri: without_userinfo(&url),
        headers: copy_headers(headers),
        data: None,
    };
    Ok(WsConnection::dial(setup, dialled.socket, dialled.read_buf))
}

fn check_url(given: &str) -> Result<url::Url, ConnectError> {
    let url_err = |reason: &str| Err(ConnectError::Url { url: redact_str(given), reason: reason.to_owned() });
    let url = match url::Url::parse(given) {
        Ok(url) => url,
        Err(e) => return url_err(&e.to_string()),
    };
    match url.scheme() {
        "ws" | "wss" => {}
        _ => return url_err("scheme must be ws or wss"),
    }
    if url.host_str().is_none() {
        return url_err("no host");
    }
    if url.scheme() == "wss" && !cfg!(feature = "rustls") {
        return url_err("wss:// needs the `rustls` feature");
    }
    Ok(url)
}

/// An upgraded connection, before its answer is checked.
struct Dialled {
    response: awc::ClientResponse,
    socket: awc::BoxedSocket,
    /// What was read past the 101 answer.
    read_buf: bytes::BytesMut,
    local_addr: Option<std::net::SocketAddr>,
    remote_addr: Option<std::net::SocketAddr>,
}

/// DNS, TCP, proxy, TLS and the upgrade, within the handshake timeout.
async fn dial(options: &DialOptions, url: &url::Url) -> Result<Dialled, ConnectError> {
    let proxy = options.proxy.resolve(url, |k| std::env::var(k).ok())?;
    let state = Rc::new(RefCell::new(dialer::DialState::default()));
    let client = match &options.client {
        Some(c) => c.clone(),
        None => build_client(options, proxy, state.clone()),
    };
    let timeout = options.handshake_timeout;
    let started = std::time::Instant::now();
    let (response, socket, read_buf) =
        match tokio::time::timeout(timeout, handshake(options, url, client)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(dial_error(url, &mut state.borrow_mut(), e, started)),
            Err(_) => return Err(ConnectError::Timeout(timeout)),
        };
    let st = state.borrow();
    Ok(Dialled { response, socket, read_buf, local_addr: st.local, remote_addr: st.remote })
}

/// The dialer's own error says more than awc's wrapping of it.
fn dial_error(
    url: &url::Url,
    st: &mut dialer::DialState,
    e: ConnectError,
    started: std::time::Instant,
) -> ConnectError {
    match (st.error.take(), e) {
        (Some(ours), _) => ours,
        // TCP was up, so an I/O failure before the upgrade on wss is the TLS step.
        (None, ConnectError::Connect { source, .. }) if st.remote.is_some() && url.scheme() == "wss" => {
            ConnectError::Tls {
                host: url.host_str().unwrap_or_default().to_owned(),
                reason: source.to_string(),
            }
        }
        // A caller's client gave up on its own timeout: say after how long.
        (None, ConnectError::Timeout(_)) => ConnectError::Timeout(started.elapsed()),
        (None, ConnectError::Status { status, .. }) => {
            ConnectError::Status { status, body: st.refusal.take().unwrap_or_default() }
        }
        (None, e) => e,
    }
}

/// The subprotocol the server chose, which must be one we offered.
fn chosen_protocol(options: &DialOptions, headers: &HeaderMap) -> Result<Option<String>, ConnectError> {
    let Some(v) = headers.get(header::SEC_WEBSOCKET_PROTOCOL) else { return Ok(None) };
    let p = v.to_str().map_err(|_| ConnectError::Handshake("subprotocol is not text".into()))?;
    if !options.protocols.iter().any(|o| o == p) {
        return Err(ConnectError::Handshake(format!(
            "server chose subprotocol {p:?}, which was not offered"
        )));
    }
    Ok(Some(p.to_owned()))
}

/// The server's permessage-deflate answer, which must fit our offer; no extension at all
/// when we offered none.
fn accepted_deflate(
    options: &DialOptions,
    headers: &HeaderMap,
) -> Result<Option<crate::protocol::DeflateParams>, ConnectError> {
    let lines: Vec<&str> =
        headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS).filter_map(|v| v.to_str().ok()).collect();
    let answered = parse_extension_headers(lines).map_err(|e| ConnectError::Handshake(e.to_string()))?;
    if options.compression {
        return Ok(options.settings.deflate.accept_client(&answered)?);
    }
    match answered.first() {
        Some(ext) => Err(ConnectError::Handshake(format!(
            "server enabled extension {:?}, which was not offered",
            ext.name
        ))),
        None => Ok(None),
    }
}

/// A host as written in a URL, without the brackets of an IPv6 literal.
pub(crate) fn bare_host(host: &str) -> &str {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

/// `url` as given, for errors, logs and `Debug`: userinfo and query values hidden.
fn redact_str(url: &str) -> String {
    crate::redact::for_logs(url)
}

/// `url` without its userinfo, for the connection's own `MessageConnect` (its query is the
/// application's: it may read its position or room there).
fn without_userinfo(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

async fn handshake(
    options: &DialOptions,
    url: &url::Url,
    client: awc::Client,
) -> Result<(awc::ClientResponse, awc::BoxedSocket, bytes::BytesMut), ConnectError> {
    let mut req = client.ws(url.as_str());
    for (name, value) in &options.headers {
        req = req.header(name.clone(), value.clone());
    }
    if !options.protocols.is_empty() {
        req = req.protocols(&options.protocols);
    }
    if options.compression {
        req = req.set_header(header::SEC_WEBSOCKET_EXTENSIONS, options.settings.deflate.client_offer());
    }
    let (response, framed) = req.connect().await.map_err(|e| map_ws_error(e, url))?;
    let setup = framed.into_parts();
    Ok((response, setup.io, setup.read_buf))
}

/// An awc client whose TCP step is our dialer (proxy, addresses), HTTP/1.1 only: a
/// WebSocket upgrade cannot ride on an HTTP/2 connection chosen by ALPN.
fn build_client(
    options: &DialOptions,
    proxy: Option<url::Url>,
    state: Rc<RefCell<dialer::DialState>>,
) -> awc::Client {
    let connector = awc::Connector::new()
        .connector(dialer::Dialer { proxy, state: state.clone() })
        .max_http_version(actix_http::Version::HTTP_11);
    #[cfg(feature = "rustls")]
    let connector = match &options.tls {
        Some(cfg) => connector.rustls_0_23(cfg.clone()),
        None => connector,
    };
    // The handshake timeout bounds the whole dial; awc's own request timeout stays out of the way.
    awc::Client::builder()
        .connector(connector)
        .timeout(options.handshake_timeout + Duration::from_secs(1))
        .wrap(refusal::KeepRefusal(state))
        .finish()
}

fn map_ws_error(e: WsClientError, url: &url::Url) -> ConnectError {
    let addr = format!("{}:{}", url.host_str().unwrap_or_default(), url.port_or_known_default().unwrap_or(0));
    match e {
        WsClientError::InvalidResponseStatus(s) => {
            ConnectError::Status { status: s.as_u16(), body: String::new() }
        }
        WsClientError::SendRequest(SendRequestError::Connect(c)) => match c {
            AwcConnectError::Io(source) => ConnectError::Connect { addr, source },
            AwcConnectError::Timeout => {
                ConnectError::Connect { addr, source: std::io::ErrorKind::TimedOut.into() }
            }
            AwcConnectError::Resolver(r) => {
                ConnectError::Connect { addr, source: std::io::Error::other(format!("DNS: {r}")) }
            }
            AwcConnectError::NoRecords => {
                ConnectError::Connect { addr, source: std::io::Error::other("DNS: no records") }
            }
            other => ConnectError::Tls {
                host: url.host_str().unwrap_or_default().to_owned(),
                reason: other.to_string(),
            },
        },
        WsClientError::SendRequest(SendRequestError::Timeout) => ConnectError::Timeout(Duration::ZERO),
        WsClientError::SendRequest(other) => ConnectError::Http(other.to_string()),
        other => ConnectError::Handshake(other.to_string()),
    }
}
