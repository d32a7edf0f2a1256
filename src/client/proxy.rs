//! HTTP proxies for dialling: the environment's `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY`
//! (read as Go's `http.ProxyFromEnvironment` does, which gorilla's dialer uses), and the
//! `CONNECT` tunnel through one.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::ConnectError;

/// Which proxy a dial goes through.
///
/// ```
/// use actix_meta_websocket::client::Proxy;
/// let p = Proxy::url("http://user:pw@127.0.0.1:3128").unwrap();
/// assert!(matches!(p, Proxy::Url(_)));
/// assert!(Proxy::url("socks5://127.0.0.1:1080").is_err());
/// // Credentials never show in `Debug` output or errors.
/// assert_eq!(format!("{p:?}"), "Url(\"http://***@127.0.0.1:3128/\")");
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Proxy {
    /// From `HTTPS_PROXY` (wss) or `HTTP_PROXY` (ws), upper or lower case, unless
    /// `NO_PROXY` matches the host. As in Go, `localhost` and loopback addresses are never
    /// proxied. The default.
    #[default]
    FromEnv,
    /// Connect directly.
    None,
    /// Always through this `http://` proxy (credentials in the URL are sent as Basic auth).
    Url(url::Url),
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Proxy::FromEnv => f.write_str("FromEnv"),
            Proxy::None => f.write_str("None"),
            Proxy::Url(u) => f.debug_tuple("Url").field(&crate::redact::for_logs(u.as_str())).finish(),
        }
    }
}

impl Proxy {
    /// An explicit `http://` proxy.
    ///
    /// ```
    /// use actix_meta_websocket::client::Proxy;
    /// assert!(Proxy::url("http://127.0.0.1:3128").is_ok());
    /// assert!(Proxy::url("socks5://127.0.0.1:1080").is_err()); // only HTTP CONNECT proxies
    /// ```
    pub fn url(s: &str) -> Result<Proxy, ConnectError> {
        parse_proxy_url(s).map(Proxy::Url)
    }

    /// The proxy to use for `target` (a `ws://` or `wss://` URL), reading the environment
    /// through `env` for [`Proxy::FromEnv`].
    pub(crate) fn resolve(
        &self,
        target: &url::Url,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<url::Url>, ConnectError> {
        match self {
            Proxy::None => Ok(None),
            Proxy::Url(u) => Ok(Some(u.clone())),
            Proxy::FromEnv => from_env(target, env),
        }
    }
}

fn parse_proxy_url(s: &str) -> Result<url::Url, ConnectError> {
    let bad = |reason: &str| ConnectError::Url { url: crate::redact::for_logs(s), reason: reason.to_owned() };
    // Go accepts a bare host:port and means http://host:port.
    let u = match url::Url::parse(s) {
        Ok(u) if u.has_host() => u,
        Err(e) if s.contains("://") => return Err(bad(&format!("proxy URL: {e}"))),
        _ => url::Url::parse(&format!("http://{s}")).map_err(|e| bad(&format!("proxy URL: {e}")))?,
    };
    match u.scheme() {
        "http" => Ok(u),
        other => Err(bad(&format!("proxy scheme {other:?} is not supported (only http://)"))),
    }
}

/// The first of the upper- and lower-case variable that is set and not empty (Go's
/// `getEnvAny`).
fn env_var(env: &impl Fn(&str) -> Option<String>, upper: &str) -> Option<String> {
    [upper.to_owned(), upper.to_ascii_lowercase()]
        .into_iter()
        .find_map(|name| env(&name).filter(|v| !v.is_empty()))
}

fn from_env(
    target: &url::Url,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<url::Url>, ConnectError> {
    let var = if target.scheme() == "wss" { "HTTPS_PROXY" } else { "HTTP_PROXY" };
    let Some(proxy) = env_var(&env, var) else { return Ok(None) };
    let Some(host) = target.host() else { return Ok(None) };
    let port = target.port_or_known_default().unwrap_or(0);
    let loopback = match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    if loopback {
        return Ok(None);
    }
    let host = match host {
        url::Host::Domain(d) => d.to_ascii_lowercase(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    };
    if let Some(no_proxy) = env_var(&env, "NO_PROXY") {
        if no_proxy_matches(&no_proxy, &host, port) {
            return Ok(None);
        }
    }
    parse_proxy_url(&proxy).map(Some)
}

/// `NO_PROXY`: comma-separated `*`, hosts, IPs, CIDR blocks, each optionally with `:port`.
/// As in Go, `example.com` matches that host and its subdomains, `.example.com` and
/// `*.example.com` only its subdomains.
fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let ip: Option<std::net::IpAddr> = host.parse().ok();
    list.split(',').map(str::trim).filter(|e| !e.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        if let (Some(ip), Some((net, bits))) = (ip, entry.split_once('/')) {
            return cidr_contains(net, bits, ip);
        }
        let (name, want_port) = match entry.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, p.parse::<u16>().ok()),
            _ => (entry, None),
        };
        if want_port.is_some_and(|p| p != port) {
            return false;
        }
        let name = super::bare_host(name).to_ascii_lowercase();
        if let Some(ip) = ip {
            return name.parse::<std::net::IpAddr>().is_ok_and(|n| n == ip);
        }
        let name = name.strip_prefix('*').filter(|n| n.starts_with('.')).unwrap_or(&name);
        match name.strip_prefix('.') {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == name || host.ends_with(&format!(".{name}")),
        }
    })
}

fn cidr_contains(net: &str, bits: &str, ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else { return false };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if bits <= 32 => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if bits <= 128 => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

fn basic_auth(proxy: &url::Url) -> Option<String> {
    if proxy.username().is_empty() {
        return None;
    }
    let decode = |s: &str| percent_decode(s);
    let creds = format!("{}:{}", decode(proxy.username()), decode(proxy.password().unwrap_or("")));
    Some(format!("Basic {}", crate::protocol::base64_encode(creds.as_bytes())))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Opens a TCP connection to `proxy` and a `CONNECT host:port` tunnel through it.
pub(crate) async fn tunnel(proxy: &url::Url, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
    let proxy_host = super::bare_host(proxy.host_str().unwrap_or_default());
    let proxy_port = proxy.port_or_known_default().unwrap_or(80);
    let proxy_addr = format!("{proxy_host}:{proxy_port}");
    let mut stream = TcpStream::connect((proxy_host, proxy_port))
        .await
        .map_err(|source| ConnectError::Connect { addr: proxy_addr.clone(), source })?;
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(auth) = basic_auth(proxy) {
        req.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    req.push_str("\r\n");
    let io_err = |source| ConnectError::Connect { addr: proxy_addr.clone(), source };
    stream.write_all(req.as_bytes()).await.map_err(io_err)?;
    // Read the answer byte-wise up to the blank line so no tunnelled byte is consumed.
    let mut head = BytesMut::with_capacity(256);
    loop {
        if head.len() > 16 * 1024 {
            return Err(ConnectError::Proxy { proxy: proxy_addr, status: "answer head too long".into() });
        }
        let b = stream.read_u8().await.map_err(io_err)?;
        head.extend_from_slice(&[b]);
        if head.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    let status_line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if !code.starts_with('2') {
        return Err(ConnectError::Proxy { proxy: proxy_addr, status: status_line });
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(proxy: &Proxy, target: &str, vars: &[(&str, &str)]) -> Option<String> {
        let target = url::Url::parse(target).unwrap();
        proxy
            .resolve(&target, |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
            .unwrap()
            .map(|u| u.to_string())
    }

    #[test]
    fn environment_rules() {
        let env = [("HTTP_PROXY", "http://p:3128"), ("https_proxy", "10.0.0.1:8080")];
        assert_eq!(resolve(&Proxy::FromEnv, "ws://example.com/ws", &env).as_deref(), Some("http://p:3128/"));
        assert_eq!(
            resolve(&Proxy::FromEnv, "wss://example.com/ws", &env).as_deref(),
            Some("http://10.0.0.1:8080/")
        );
        // Loopback and localhost are never proxied (Go's rule).
        assert_eq!(resolve(&Proxy::FromEnv, "ws://127.0.0.1:1/ws", &env), None);
        assert_eq!(resolve(&Proxy::FromEnv, "ws://localhost:1/ws", &env), None);
        assert_eq!(resolve(&Proxy::FromEnv, "ws://[::1]:1/ws", &env), None);
        assert_eq!(resolve(&Proxy::FromEnv, "ws://example.com/ws", &[]), None);
        // An empty upper-case variable falls back to the lower-case one, as in Go.
        let env = [("HTTP_PROXY", ""), ("http_proxy", "http://lower:3128")];
        assert_eq!(
            resolve(&Proxy::FromEnv, "ws://example.com/ws", &env).as_deref(),
            Some("http://lower:3128/")
        );
        let env = [("HTTP_PROXY", "http://p:1"), ("NO_PROXY", ""), ("no_proxy", "example.com")];
        assert_eq!(resolve(&Proxy::FromEnv, "ws://example.com/ws", &env), None);
        // An explicit proxy applies to everything.
        let p = Proxy::url("http://127.0.0.1:3128").unwrap();
        assert_eq!(resolve(&p, "ws://127.0.0.1:1/", &[]).as_deref(), Some("http://127.0.0.1:3128/"));
        assert_eq!(resolve(&Proxy::None, "ws://example.com/", &env), None);
    }

    #[test]
    fn no_proxy_forms() {
        let with = |no: &str, target: &str| {
            resolve(&Proxy::FromEnv, target, &[("HTTP_PROXY", "http://p:1"), ("no_proxy", no)]).is_none()
        };
        assert!(with("*", "ws://a.example.com/"));
        assert!(with("example.com", "ws://a.example.com/"));
        assert!(with(".example.com", "ws://a.example.com/"));
        assert!(with("*.example.com", "ws://a.example.com/"));
        assert!(with("example.com", "ws://example.com/"));
        // Go's rule: a leading dot (or `*.`) means subdomains only.
        assert!(!with(".example.com", "ws://example.com/"));
        assert!(!with("*.example.com", "ws://example.com/"));
        assert!(!with("example.com", "ws://notexample.com/"));
        assert!(with("other, a.example.com:80", "ws://a.example.com/"));
        assert!(!with("a.example.com:81", "ws://a.example.com/"));
        assert!(with("10.0.0.0/8", "ws://10.1.2.3/"));
        assert!(!with("10.0.0.0/8", "ws://11.1.2.3/"));
        assert!(with("10.1.2.3", "ws://10.1.2.3:9000/"));
    }

    #[test]
    fn proxy_urls() {
        assert!(Proxy::url("https://p:443").is_err());
        let u = parse_proxy_url("p:3128").unwrap();
        assert_eq!((u.host_str(), u.port()), (Some("p"), Some(3128)));
        let u = parse_proxy_url("http://us%40er:p%3Ass@p:1").unwrap();
        assert_eq!(basic_auth(&u).as_deref(), Some("Basic dXNAZXI6cDpzcw=="));
    }

    #[test]
    fn credentials_stay_out_of_debug_output_and_errors() {
        let p = Proxy::url("http://alice:s3cret@proxy.example:3128").unwrap();
        let shown = format!("{p:?}");
        assert!(!shown.contains("alice") && !shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("proxy.example:3128"), "{shown}");
        for bad in ["socks5://alice:s3cret@proxy.example:1080", "http://alice:s3cret@[::1"] {
            let err = Proxy::url(bad).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("alice") && !shown.contains("s3cret"), "{shown}");
        }
        let target = url::Url::parse("ws://bob:hunter2@example.com/ws").unwrap();
        let options = crate::client::DialOptions::new(target, crate::pool::Pool::from(dead_target()));
        let shown = format!("{options:?}");
        assert!(!shown.contains("bob") && !shown.contains("hunter2"), "{shown}");
    }

    fn dead_target() -> crate::connection::Target {
        use actix::{Actor, AsyncContext};
        struct Nobody;
        impl Actor for Nobody {
            type Context = actix::Context<Self>;
        }
        impl actix::Handler<crate::connection::MessageConnect> for Nobody {
            type Result = ();
            fn handle(&mut self, _: crate::connection::MessageConnect, _: &mut Self::Context) {}
        }
        impl actix::Handler<crate::connection::WsMessage> for Nobody {
            type Result = ();
            fn handle(&mut self, _: crate::connection::WsMessage, _: &mut Self::Context) {}
        }
        impl actix::Handler<crate::connection::MessageDisconnect> for Nobody {
            type Result = ();
            fn handle(&mut self, _: crate::connection::MessageDisconnect, _: &mut Self::Context) {}
        }
        let ctx = actix::Context::<Nobody>::new();
        crate::connection::Target::from_addr(ctx.address())
    }
}
