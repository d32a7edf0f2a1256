//! Where a node finds the Redis that takes its writes: the one at a URL, or whichever
//! server the sentinels name primary now. Sentinels are asked again at every connect and
//! on a timer: a client that resolves once, at start, stays with a demoted primary, which
//! may go on taking publishes that reach no subscriber of the real one.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;

/// How long a sentinel may take to connect, and to answer, before it is left out.
const ASK_TIMEOUT: Duration = Duration::from_millis(500);
const SENTINEL_PORT: u16 = 26379;

/// A server as the sentinels name it.
pub(crate) type Addr = (String, u16);

/// How the node reaches its Redis.
pub(crate) enum Endpoint {
    // Boxed: a client is five times the size of the sentinels' handle.
    Single {
        client: Box<redis::Client>,
        at: String,
    },
    Sentinel(Sentinels),
    /// Redis Cluster: a link to each primary, found from the seeds.
    Cluster(super::seeds::Seeds),
}

impl Endpoint {
    /// From the options' URL: `redis://`, `rediss://`, or `redis+sentinel://`.
    pub(crate) fn new(
        url: &str,
        tls_root: Option<&[u8]>,
        sentinel_auth: Option<&(String, String)>,
    ) -> Result<Endpoint, String> {
        if let Some(parsed) = super::seeds::ClusterUrl::parse(url) {
            return Ok(Endpoint::Cluster(super::seeds::Seeds::new(parsed?, tls_root)));
        }
        match SentinelUrl::parse(url) {
            Some(parsed) => Ok(Endpoint::Sentinel(Sentinels::new(parsed?, tls_root, sentinel_auth))),
            None => {
                let client = client(url, tls_root).map_err(|e| e.to_string())?;
                let at = url::Url::parse(url)
                    .ok()
                    .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port().unwrap_or(6379))))
                    .unwrap_or_else(|| "redis".into());
                Ok(Endpoint::Single { client: Box::new(client), at })
            }
        }
    }

    /// The client for the server to use now, and that server's address.
    pub(crate) async fn resolve(&mut self) -> redis::RedisResult<(redis::Client, String)> {
        match self {
            Endpoint::Single { client, at } => Ok((client.as_ref().clone(), at.clone())),
            Endpoint::Sentinel(s) => {
                let primary = s.primary().await?;
                Ok((s.client_for(&primary)?, show(&primary)))
            }
            Endpoint::Cluster(_) => {
                let msg = "Redis Cluster has a server per shard";
                Err(redis::RedisError::from((redis::ErrorKind::Client, msg)))
            }
        }
    }

    /// Sentinels of their own (their own connections) for a task that watches them.
    pub(crate) fn sentinels(&self) -> Option<Sentinels> {
        match self {
            Endpoint::Single { .. } | Endpoint::Cluster(_) => None,
            Endpoint::Sentinel(s) => Some(Sentinels { conns: vec![None; s.conns.len()], ..s.clone() }),
        }
    }
}

/// `host:port`, as logs and the status show a server.
pub(crate) fn show(addr: &Addr) -> String {
    format!("{}:{}", addr.0, addr.1)
}

/// A client for `url`, trusting `tls_root` for `rediss://` when given.
pub(crate) fn client(url: &str, tls_root: Option<&[u8]>) -> redis::RedisResult<redis::Client> {
    match tls_root {
        Some(pem) => {
            let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) };
            redis::Client::build_with_tls(url, certs)
        }
        None => redis::Client::open(url),
    }
}

/// `redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/primary-name[/db]`
/// (`rediss+sentinel://` for TLS). The credentials and the db are the data servers';
/// sentinels listen on 26379 unless told.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SentinelUrl {
    pub(crate) sentinels: Vec<Addr>,
    pub(crate) name: String,
    tls: bool,
    /// As written (still percent-encoded), for the data servers' URLs.
    userinfo: Option<String>,
    db: u32,
}

impl SentinelUrl {
    /// `None` when `url` is not a sentinel URL.
    pub(crate) fn parse(url: &str) -> Option<Result<SentinelUrl, String>> {
        let (tls, rest) = scheme(url, "sentinel")?;
        Some(Self::parse_rest(tls, rest))
    }

    fn parse_rest(tls: bool, rest: &str) -> Result<SentinelUrl, String> {
        let (authority, path) = rest.split_once('/').ok_or("a sentinel URL names its primary: .../<name>")?;
        let (userinfo, hosts) = userinfo(authority);
        let sentinels =
            hosts.split(',').map(|h| host_port(h, SENTINEL_PORT)).collect::<Result<Vec<_>, _>>()?;
        let (name, db) = match path.split_once('/') {
            Some((name, db)) => (name, db.parse().map_err(|_| format!("{db:?} is not a database number"))?),
            None => (path, 0),
        };
        if name.is_empty() {
            return Err("a sentinel URL names its primary: .../<name>".into());
        }
        Ok(SentinelUrl { sentinels, name: name.to_owned(), tls, userinfo, db })
    }

    /// The URL of the data server at `addr`, with these credentials and db.
    fn data_url(&self, addr: &Addr) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = self.userinfo.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
        format!("{scheme}://{auth}{}:{}/{}", url_host(&addr.0), addr.1, self.db)
    }
}

/// For `redis+<kind>://` (or `rediss+<kind>://`, TLS): whether TLS, and what follows the
/// scheme; `None` for another scheme.
pub(crate) fn scheme<'a>(url: &'a str, kind: &str) -> Option<(bool, &'a str)> {
    let (scheme, rest) = url.split_once("://")?;
    match scheme.split_once('+') {
        Some(("redis", k)) if k == kind => Some((false, rest)),
        Some(("rediss", k)) if k == kind => Some((true, rest)),
        _ => None,
    }
}

/// An authority's user info (as written, still percent-encoded) and its hosts.
pub(crate) fn userinfo(authority: &str) -> (Option<String>, &str) {
    match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_owned()), h),
        None => (None, authority),
    }
}

/// A host as a URL writes it: an IPv6 address in brackets.
pub(crate) fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// `host[:port]`, `default` the port when none is written.
pub(crate) fn host_port(s: &str, default: u16) -> Result<Addr, String> {
    let bad = || format!("{s:?} is not host[:port]");
    let (host, port) = match s.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            (host, after.strip_prefix(':'))
        }
        None => match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        },
    };
    let port = port.map_or(Ok(default), |p| p.parse().map_err(|_| bad()))?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// The sentinels of one primary, with a connection to each that answered last time.
#[derive(Clone)]
pub(crate) struct Sentinels {
    url: Arc<SentinelUrl>,
    auth: Option<Arc<(String, String)>>,
    tls_root: Option<Arc<[u8]>>,
    conns: Vec<Option<MultiplexedConnection>>,
}

impl Sentinels {
    fn new(url: SentinelUrl, tls_root: Option<&[u8]>, auth: Option<&(String, String)>) -> Self {
        let conns = vec![None; url.sentinels.len()];
        Sentinels {
            url: Arc::new(url),
            auth: auth.cloned().map(Arc::new),
            tls_root: tls_root.map(Arc::from),
            conns,
        }
    }

    /// The primary named by the sentinel with the newest view: the highest config epoch
    /// (each failover a majority of sentinels authorised raises it), then a failover in
    /// progress (its leader names the replica it promotes before the epoch moves), then
    /// the most sentinels, then the one listed first. During and after a failover some
    /// sentinels still name the old primary for a second or two; counting heads would
    /// follow them back to it once it restarts as a stale primary.
    pub(crate) async fn primary(&mut self) -> redis::RedisResult<Addr> {
        let url = &self.url;
        let asks = self.conns.iter_mut().zip(&url.sentinels).map(|(conn, at)| {
            let auth = self.auth.as_deref();
            let tls_root = self.tls_root.as_deref();
            ask(conn, at, &url.name, url.tls, auth, tls_root)
        });
        let answers = join_all(asks).await;
        let mut named: Vec<(Named, usize)> = Vec::new();
        let mut why = Vec::new();
        for (answer, at) in answers.into_iter().zip(&url.sentinels) {
            match answer {
                Ok(Some(n)) => match named.iter_mut().find(|(m, _)| *m == n) {
                    Some((_, votes)) => *votes += 1,
                    None => named.push((n, 1)),
                },
                Ok(None) => why.push(format!("{} knows no primary {:?}", show(at), url.name)),
                Err(e) => why.push(format!("{}: {e}", show(at))),
            }
        }
        tracing::trace!(?named, "cluster: what the sentinels name");
        // `max_by_key` keeps the last of equals: the reversed list makes it the first.
        match named.into_iter().rev().max_by_key(|(n, votes)| (n.epoch, n.failing_over, *votes)) {
            Some((n, _)) => Ok(n.addr),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                format!("no sentinel named a primary ({})", why.join("; ")),
            )
            .into()),
        }
    }

    /// A client for the data server at `addr`.
    pub(crate) fn client_for(&self, addr: &Addr) -> redis::RedisResult<redis::Client> {
        client(&self.url.data_url(addr), self.tls_root.as_deref())
    }
}

/// A primary as one sentinel names it, and how new that sentinel's view is.
#[derive(Debug, PartialEq)]
struct Named {
    addr: Addr,
    epoch: u64,
    /// This sentinel leads a failover: `addr` is the replica it promotes.
    failing_over: bool,
}

/// What the sentinel at `at` names primary (`SENTINEL get-master-addr-by-name`, which
/// names the promoted replica as soon as a failover picks it) and its view's epoch and
/// state (`SENTINEL MASTER`); its connection is opened if there is none, and dropped
/// when it fails.
async fn ask(
    conn: &mut Option<MultiplexedConnection>,
    at: &Addr,
    name: &str,
    tls: bool,
    auth: Option<&(String, String)>,
    tls_root: Option<&[u8]>,
) -> redis::RedisResult<Option<Named>> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(open(at, tls, auth, tls_root).await?),
    };
    let mut pipe = redis::pipe();
    pipe.cmd("SENTINEL").arg("get-master-addr-by-name").arg(name);
    pipe.cmd("SENTINEL").arg("MASTER").arg(name);
    let answer = pipe.query_async::<(Option<Addr>, redis::Value)>(c).await;
    match answer {
        Ok((Some(addr), fields)) => Ok(Some(view(addr, &fields))),
        Ok((None, _)) => Ok(None),
        // An unknown name is an error reply: the sentinel answered, and knows no such primary.
        Err(e) if e.code().is_some() => Ok(None),
        Err(e) => {
            *conn = None;
            Err(e)
        }
    }
}

/// A sentinel's view from its `SENTINEL MASTER` answer (a flat list of field names and
/// values, or a map under RESP3): the address there goes with the config epoch there,
/// except while this sentinel leads a failover, when `promoted` (its
/// `get-master-addr-by-name`) is the replica it promotes.
fn view(promoted: Addr, fields: &redis::Value) -> Named {
    let pairs: Vec<(String, String)> = match fields {
        redis::Value::Array(flat) => {
            flat.chunks(2).filter_map(|kv| Some((text(kv.first()?)?, text(kv.get(1)?)?))).collect()
        }
        redis::Value::Map(map) => map.iter().filter_map(|(k, v)| Some((text(k)?, text(v)?))).collect(),
        _ => Vec::new(),
    };
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let epoch = field("config-epoch").and_then(|e| e.parse().ok()).unwrap_or(0);
    let failing_over = field("flags").is_some_and(|f| f.split(',').any(|f| f == "failover_in_progress"));
    let own =
        field("ip").zip(field("port").and_then(|p| p.parse().ok())).map(|(ip, port)| (ip.to_owned(), port));
    let addr = match own {
        Some(own) if !failing_over => own,
        _ => promoted,
    };
    Named { addr, epoch, failing_over }
}

fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

async fn open(
    at: &Addr,
    tls: bool,
    auth: Option<&(String, String)>,
    tls_root: Option<&[u8]>,
) -> redis::RedisResult<MultiplexedConnection> {
    let scheme = if tls { "rediss" } else { "redis" };
    let mut url = url::Url::parse(&format!("{scheme}://{}:{}", url_host(&at.0), at.1)).map_err(|e| {
        redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "sentinel", e.to_string()))
    })?;
    if let Some((user, password)) = auth {
        let _ = url.set_username(user);
        let _ = url.set_password(Some(password));
    }
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(ASK_TIMEOUT))
        .set_response_timeout(Some(ASK_TIMEOUT));
    client(url.as_str(), tls_root)?.get_multiplexed_async_connection_with_config(&config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_are_read() {
        let u = SentinelUrl::parse("redis+sentinel://:p%40ss@10.0.0.1,10.0.0.2:26380,[::1]:5/mymaster/3")
            .expect("a sentinel URL")
            .expect("valid");
        assert_eq!(
            u.sentinels,
            vec![("10.0.0.1".into(), 26379), ("10.0.0.2".into(), 26380), ("::1".into(), 5)]
        );
        assert_eq!(u.name, "mymaster");
        assert_eq!(u.data_url(&("10.0.0.9".into(), 6380)), "redis://:p%40ss@10.0.0.9:6380/3");
        let tls = SentinelUrl::parse("rediss+sentinel://h/m").unwrap().unwrap();
        assert_eq!(tls.data_url(&("::1".into(), 1)), "rediss://[::1]:1/0");
        assert!(SentinelUrl::parse("redis://h:6379").is_none());
        let flat = redis::Value::Array(
            ["name", "amw", "flags", "master,failover_in_progress", "config-epoch", "3"]
                .iter()
                .map(|s| redis::Value::BulkString(s.as_bytes().to_vec()))
                .collect(),
        );
        let addr: Addr = ("127.0.0.1".into(), 6380);
        assert_eq!(view(addr.clone(), &flat), Named { addr: addr.clone(), epoch: 3, failing_over: true });
        assert_eq!(view(addr.clone(), &redis::Value::Nil), Named { addr, epoch: 0, failing_over: false });
        // Outside a failover, the address that goes with the epoch.
        let settled = redis::Value::Array(
            ["ip", "10.0.0.2", "port", "6381", "flags", "master", "config-epoch", "4"]
                .iter()
                .map(|s| redis::Value::BulkString(s.as_bytes().to_vec()))
                .collect(),
        );
        let stale: Addr = ("10.0.0.1".into(), 6380);
        assert_eq!(
            view(stale, &settled),
            Named { addr: ("10.0.0.2".into(), 6381), epoch: 4, failing_over: false }
        );
        for bad in
            ["redis+sentinel://h", "redis+sentinel://h/", "redis+sentinel://h:x/m", "redis+sentinel://h/m/x"]
        {
            assert!(SentinelUrl::parse(bad).unwrap().is_err(), "{bad}");
        }
    }
}
