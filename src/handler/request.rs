//! What an upgrade request must be, and what it says: the checks of RFC 6455 4.2.1 and the
//! origin policy, the subprotocol and permessage-deflate answers, the local address; and
//! the HTTP answers for refused upgrades.

use std::any::Any;
use std::net::SocketAddr;

use actix_web::dev::Extensions;
use actix_web::http::{header, Method, StatusCode, Version};
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use super::HandlerOptions;
use crate::protocol::{self, parse_extension_headers};

/// Why an upgrade request was refused; answers with the matching HTTP status.
///
/// ```
/// use actix_web::{http::StatusCode, ResponseError};
/// use actix_meta_websocket::HandshakeError;
///
/// assert_eq!(HandshakeError::OriginRefused.status_code(), StatusCode::FORBIDDEN);
/// // Your own refusal, from a route that checks before it upgrades:
/// let no = HandshakeError::refuse(StatusCode::UNAUTHORIZED, "log in first");
/// assert_eq!(no.status_code(), StatusCode::UNAUTHORIZED);
/// ```
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
    /// The handler has no pool and the upgrade chose no target (500): a route of a
    /// handler made from `HandlerOptions::default()` must upgrade with
    /// [`Upgrade::target`](crate::Upgrade::target).
    #[error("this WebSocket route has no pool: the upgrade must choose its target (Upgrade::target)")]
    NoTarget,
    /// The application refused the upgrade with its own status and reason (see
    /// [`refuse`](Self::refuse) and [`not_found`](Self::not_found)).
    #[error("{reason}")]
    Refused {
        /// The HTTP status of the answer.
        status: StatusCode,
        /// The answer's body, for the client.
        reason: String,
    },
}

impl HandshakeError {
    /// Its label in the handshakes counter (`telemetry::HANDSHAKES`).
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            HandshakeError::BadRequest(_) => "bad_request",
            HandshakeError::MethodNotAllowed => "method_not_allowed",
            HandshakeError::UnsupportedVersion => "bad_version",
            HandshakeError::OriginRefused => "refused_origin",
            HandshakeError::Unavailable("shutting down") => "shut_down",
            HandshakeError::Unavailable(_) => "unavailable",
            HandshakeError::NoTarget => "no_target",
            HandshakeError::Refused { .. } => "refused",
        }
    }

    /// Refuses an upgrade with `status` and `reason` (the answer's body), for checks of
    /// the application's own: a missing token (401), a full room (409), a rate limit (429).
    ///
    /// ```
    /// use actix_meta_websocket::HandshakeError;
    /// use actix_web::{http::StatusCode, ResponseError};
    /// let e = HandshakeError::refuse(StatusCode::UNAUTHORIZED, "log in first");
    /// assert_eq!(e.status_code(), StatusCode::UNAUTHORIZED);
    /// assert_eq!(e.to_string(), "log in first");
    /// ```
    pub fn refuse(status: StatusCode, reason: impl Into<String>) -> Self {
        HandshakeError::Refused { status, reason: reason.into() }
    }

    /// Refuses an upgrade with 404 Not Found and `reason`, for a room, topic or device
    /// that does not exist.
    ///
    /// ```
    /// # use actix_meta_websocket::HandshakeError;
    /// # let room = "cellar";
    /// let e = HandshakeError::not_found(format!("no room named {room}"));
    /// assert_eq!(e.to_string(), "no room named cellar");
    /// ```
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::refuse(StatusCode::NOT_FOUND, reason)
    }
}

impl ResponseError for HandshakeError {
    fn status_code(&self) -> StatusCode {
        match self {
            HandshakeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HandshakeError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HandshakeError::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            HandshakeError::OriginRefused => StatusCode::FORBIDDEN,
            HandshakeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HandshakeError::NoTarget => StatusCode::INTERNAL_SERVER_ERROR,
            HandshakeError::Refused { status, .. } => *status,
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

/// The accepted socket's own address, recorded by [`record_local_addr`] (or by the
/// server that owns the socket).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalAddr(pub(crate) SocketAddr);

/// An `HttpServer::on_connect` callback that records each accepted TCP socket's own
/// address, so [`MessageConnect::local_addr`](crate::MessageConnect::local_addr) reports
/// the address the peer reached (on a wildcard bind, not `0.0.0.0:port`).
/// [`WsHandler::configure_server`](crate::WsHandler::configure_server) installs it; call it from your own `on_connect` if you
/// have one. Over TLS the listener's address is reported. ([`WsServer`](crate::WsServer)
/// needs none of this: it records the address itself.)
///
/// ```no_run
/// # use actix_web::{App, HttpServer};
/// # use actix_meta_websocket::record_local_addr;
/// # fn demo() -> std::io::Result<()> {
/// let server = HttpServer::new(|| App::new())
///     .on_connect(|conn, ext| {
///         record_local_addr(conn, ext);
///         // ... your own connection data
///     })
///     .bind("0.0.0.0:8080")?;
/// # Ok(()) }
/// ```
pub fn record_local_addr(conn: &dyn Any, ext: &mut Extensions) {
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        if let Ok(addr) = tcp.local_addr() {
            ext.insert(LocalAddr(addr));
        }
    }
}

pub(super) fn local_addr(req: &HttpRequest) -> SocketAddr {
    match req.conn_data::<LocalAddr>() {
        Some(LocalAddr(addr)) => *addr,
        None => req.app_config().local_addr(),
    }
}

/// An upgrade request that passed the checks, and the answers to give it.
pub(super) struct Accepted {
    accept: [u8; 28],
    /// The subprotocol chosen.
    pub(super) protocol: Option<String>,
    /// The permessage-deflate parameters agreed, and the answer that says so.
    pub(super) deflate: Option<(protocol::DeflateParams, String)>,
}

impl Accepted {
    /// The 101 answer's head.
    pub(super) fn switching_protocols(&self) -> actix_web::HttpResponseBuilder {
        let mut res = HttpResponse::build(StatusCode::SWITCHING_PROTOCOLS);
        res.upgrade("websocket").insert_header((header::SEC_WEBSOCKET_ACCEPT, &self.accept[..]));
        if let Some(p) = &self.protocol {
            res.insert_header((header::SEC_WEBSOCKET_PROTOCOL, p.as_str()));
        }
        if let Some((_, answer)) = &self.deflate {
            res.insert_header((header::SEC_WEBSOCKET_EXTENSIONS, answer.as_str()));
        }
        res
    }
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
    req.headers().get_all(name).any(|v| protocol::has_header_token(v.as_bytes(), token))
}

pub(super) fn check_request(req: &HttpRequest, opts: &HandlerOptions) -> Result<Accepted, HandshakeError> {
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
        parse_extension_headers(lines).ok().and_then(|offers| opts.settings.deflate.negotiate_server(&offers))
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
