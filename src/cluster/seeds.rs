//! Where a node finds a Redis Cluster: seed nodes named in the URL, asked for the map of
//! slots (`CLUSTER SLOTS`) at every connect and on a timer. The primaries the last map
//! named are asked first: seeds may have left the cluster since the node started.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::endpoint::{client, host_port, scheme, url_host, userinfo, Addr};
use super::slots::SlotMap;

/// How long a seed may take to connect, and to answer, before the next is asked.
const ASK_TIMEOUT: Duration = Duration::from_millis(500);
const REDIS_PORT: u16 = 6379;

/// `redis+cluster://[user[:password]@]host[:port][,host[:port]...][/]`
/// (`rediss+cluster://` for TLS). Redis Cluster has database 0 only.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ClusterUrl {
    pub(crate) seeds: Vec<Addr>,
    tls: bool,
    /// As written (still percent-encoded), for every server's URL.
    userinfo: Option<String>,
}

impl ClusterUrl {
    /// `None` when `url` is not a cluster URL.
    pub(crate) fn parse(url: &str) -> Option<Result<ClusterUrl, String>> {
        let (tls, rest) = scheme(url, "cluster")?;
        Some(Self::parse_rest(tls, rest))
    }

    fn parse_rest(tls: bool, rest: &str) -> Result<ClusterUrl, String> {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !path.is_empty() && path != "0" {
            return Err(format!("Redis Cluster has database 0 only, not {path:?}"));
        }
        let (userinfo, hosts) = userinfo(authority);
        let seeds = hosts.split(',').map(|h| host_port(h, REDIS_PORT)).collect::<Result<Vec<_>, _>>()?;
        Ok(ClusterUrl { seeds, tls, userinfo })
    }

    /// The URL of the server at `addr`, with these credentials.
    fn server_url(&self, addr: &Addr) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = self.userinfo.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
        format!("{scheme}://{auth}{}:{}", url_host(&addr.0), addr.1)
    }
}

/// The seeds of one cluster and the primaries it had last time.
#[derive(Clone)]
pub(crate) struct Seeds {
    url: Arc<ClusterUrl>,
    tls_root: Option<Arc<[u8]>>,
    known: Vec<Addr>,
}

impl Seeds {
    pub(crate) fn new(url: ClusterUrl, tls_root: Option<&[u8]>) -> Self {
        Seeds { url: Arc::new(url), tls_root: tls_root.map(Arc::from), known: Vec::new() }
    }

    /// The cluster's map of slots, as the first server to answer with a whole one says.
    pub(crate) async fn topology(&mut self) -> redis::RedisResult<SlotMap> {
        let mut asked: Vec<Addr> = Vec::new();
        let mut why = Vec::new();
        // A server that answered and refused (a wrong password, no cluster support) says
        // what retrying will not change; a silent or unreachable one may answer later.
        let mut refused = None;
        for at in self.known.iter().chain(&self.url.seeds) {
            if asked.contains(at) {
                continue;
            }
            asked.push(at.clone());
            match self.ask(at).await {
                Ok(map) => {
                    self.known = map.primaries().to_vec();
                    return Ok(map);
                }
                Err(e) => {
                    why.push(format!("{}:{}: {e}", at.0, at.1));
                    if !(e.is_connection_refusal() || e.is_timeout() || e.is_io_error()) {
                        refused.get_or_insert(e);
                    }
                }
            }
        }
        if let Some(e) = refused {
            return Err(e);
        }
        let why = format!("no server of the cluster gave its map of slots ({})", why.join("; "));
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, why).into())
    }

    async fn ask(&self, at: &Addr) -> redis::RedisResult<SlotMap> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(ASK_TIMEOUT))
            .set_response_timeout(Some(ASK_TIMEOUT));
        let mut conn: MultiplexedConnection =
            self.client_for(at)?.get_multiplexed_async_connection_with_config(&config).await?;
        let answer: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn).await?;
        // A cluster with slots unserved is being made or mended: ask again later.
        SlotMap::parse(&answer)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::ConnectionRefused, e).into())
    }

    /// A client for the server at `addr`; with `resp3`, one that can subscribe to shard
    /// channels (their messages arrive as pushes).
    pub(crate) fn client_for(&self, addr: &Addr) -> redis::RedisResult<redis::Client> {
        client(&self.url.server_url(addr), self.tls_root.as_deref())
    }

    pub(crate) fn resp3_client_for(&self, addr: &Addr) -> redis::RedisResult<redis::Client> {
        let url = self.url.server_url(addr);
        let sep = if url.contains('?') { '&' } else { '?' };
        client(&format!("{url}{sep}protocol=resp3"), self.tls_root.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_are_read() {
        let u =
            ClusterUrl::parse("redis+cluster://:p%40ss@10.0.0.1,10.0.0.2:7001,[::1]:5/").unwrap().unwrap();
        assert_eq!(u.seeds, vec![("10.0.0.1".into(), 6379), ("10.0.0.2".into(), 7001), ("::1".into(), 5)]);
        assert_eq!(u.server_url(&("10.0.0.9".into(), 7002)), "redis://:p%40ss@10.0.0.9:7002");
        let tls = ClusterUrl::parse("rediss+cluster://h:1").unwrap().unwrap();
        assert_eq!(tls.server_url(&("::1".into(), 1)), "rediss://[::1]:1");
        assert!(ClusterUrl::parse("redis://h:6379").is_none());
        assert!(ClusterUrl::parse("redis+sentinel://h/m").is_none());
        for bad in ["redis+cluster://", "redis+cluster://h:x", "redis+cluster://h/3", "redis+cluster://a,,b"]
        {
            assert!(ClusterUrl::parse(bad).unwrap().is_err(), "{bad}");
        }
    }
}
