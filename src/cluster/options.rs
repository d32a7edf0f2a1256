//! How a node reaches Redis and how quickly it notices others gone.

use std::fmt;
use std::time::Duration;

/// Settings for [`Cluster::join`](super::Cluster::join).
///
/// ```
/// use std::time::Duration;
/// use actix_meta_websocket::ClusterOptions;
///
/// let opts = ClusterOptions::new("redis://:secret@127.0.0.1:6379/0")
///     .prefix("chat".into())
///     .heartbeat(Duration::from_millis(500))
///     .node_timeout(Duration::from_secs(2))
///     .send_timeout(Duration::from_secs(1)) // Cluster::send_wait gives up after this
///     .max_queued(64 << 20); // bytes of broadcasts and sends that may wait for Redis
/// assert!(!format!("{opts:?}").contains("secret")); // credentials never reach logs
///
/// // TLS to Redis with a private CA, and a Sentinel set whose sentinels have a password.
/// # let ca_pem = b"-----BEGIN CERTIFICATE-----...".to_vec();
/// let tls = ClusterOptions::new("rediss://redis.internal:6380").tls_root(ca_pem);
/// let ha = ClusterOptions::new("redis+sentinel://10.0.0.1,10.0.0.2,10.0.0.3/chat")
///     .sentinel_auth("sentinel-user", "sentinel-password");
///
/// // Redis Cluster, found through any of its nodes.
/// let sharded = ClusterOptions::new("redis+cluster://10.0.0.1:7000,10.0.0.2:7000");
/// ```
#[derive(Clone)]
pub struct ClusterOptions {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) heartbeat: Duration,
    pub(crate) node_timeout: Duration,
    pub(crate) send_timeout: Duration,
    pub(crate) max_queued: usize,
    pub(crate) tls_root: Option<Vec<u8>>,
    pub(crate) sentinel_auth: Option<(String, String)>,
}

impl ClusterOptions {
    /// Redis at `url`. Defaults: prefix `amw`, heartbeat 1 s, node timeout 3 s, send
    /// timeout 2 s, 16 MiB queued for the broker at most.
    ///
    /// - `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS (webpki
    ///   roots): one Redis.
    /// - `redis+sentinel://[user:password@]host[:port][,host[:port]...]/<primary>[/db]`
    ///   (`rediss+sentinel://` for TLS): the primary that Redis Sentinel names, found
    ///   through the sentinels listed (port 26379 unless given). The credentials and the
    ///   db are the data servers'; see [`sentinel_auth`](Self::sentinel_auth) for the
    ///   sentinels' own. The node asks the sentinels at every connect and at every
    ///   heartbeat, believes the newest view (the highest config epoch), and moves when it
    ///   names another server; it checks with `ROLE` that the server it connects to is a
    ///   primary, and takes `READONLY` as
    ///   "ask again now".
    /// - `redis+cluster://[user:password@]host[:port][,host[:port]...]`
    ///   (`rediss+cluster://` for TLS): Redis Cluster, found through the seed nodes listed
    ///   (port 6379 unless given). A group's keys and channel share one hash tag, so each
    ///   group lives on one shard and its broadcasts go by sharded pub/sub (`SPUBLISH`,
    ///   `SSUBSCRIBE`, Redis 7 or later) to that shard only. The node keeps a link to every
    ///   primary, re-reads the map of slots at every connect, and remakes its links when a
    ///   shard fails over, drops a channel (its slot moved) or stops carrying anything
    ///   back (the nodes' heartbeats go to each shard in turn, and a shard they have left
    ///   quiet gets a probe).
    ///
    /// ```
    /// use actix_meta_websocket::ClusterOptions;
    ///
    /// let opts = ClusterOptions::new("redis+sentinel://:secret@10.0.0.1,10.0.0.2,10.0.0.3/chat");
    /// assert!(!format!("{opts:?}").contains("secret"));
    /// ```
    pub fn new(url: impl Into<String>) -> Self {
        ClusterOptions {
            url: url.into(),
            prefix: "amw".into(),
            heartbeat: Duration::from_secs(1),
            node_timeout: Duration::from_secs(3),
            send_timeout: Duration::from_secs(2),
            max_queued: 16 << 20,
            tls_root: None,
            sentinel_auth: None,
        }
    }

    /// For `rediss://`: trusts the CA certificates in `pem` instead of the webpki roots,
    /// for a Redis whose certificate a private CA signed.
    pub fn tls_root(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root = Some(pem.into());
        self
    }

    /// For `redis+sentinel://`: the user and password the sentinels themselves ask for
    /// (their `requirepass`), when they are not the data servers'. An empty user is
    /// `default`.
    pub fn sentinel_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.sentinel_auth = Some((user.into(), password.into()));
        self
    }

    /// Why these options cannot work, if they cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(Err(e)) = super::endpoint::SentinelUrl::parse(&self.url) {
            return Err(e);
        }
        if let Some(Err(e)) = super::seeds::ClusterUrl::parse(&self.url) {
            return Err(e);
        }
        if self.heartbeat.is_zero() || self.send_timeout.is_zero() {
            return Err("heartbeat and send_timeout must be above zero".into());
        }
        if self.node_timeout < self.heartbeat * 2 {
            return Err("node_timeout must be at least twice the heartbeat".into());
        }
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            return Err("the prefix must be a word".into());
        }
        if self.prefix.contains(['{', '}']) {
            // A brace would make the prefix every key's hash tag: Redis Cluster would hold
            // every group on one shard.
            return Err("the prefix must not hold `{` or `}`".into());
        }
        Ok(())
    }

    setters! {
        /// What every key and channel of this cluster starts with, so several clusters (or
        /// other applications) can share one Redis. A word without `{` or `}`.
        prefix: String,
        /// How often the node says it is alive and refreshes its presence entries.
        heartbeat: Duration,
        /// How long after its last heartbeat a node is taken for dead: the others report
        /// [`ClusterEvent::NodeDown`](super::ClusterEvent::NodeDown), and its presence
        /// entries expire in Redis. At least twice the heartbeat.
        node_timeout: Duration,
        /// How long [`Cluster::send_wait`](super::Cluster::send_wait) waits for the owning
        /// node's answer.
        send_timeout: Duration,
        /// Bytes of broadcasts and sends that may wait for the broker; beyond them, further
        /// ones are dropped and signalled as a gap.
        max_queued: usize,
    }

    /// The URL without its password, for logs.
    pub(crate) fn redacted_url(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return "(unparsable URL)".into();
        };
        let end = rest.find('/').unwrap_or(rest.len());
        match rest[..end].rsplit_once('@') {
            Some((userinfo, hosts)) => {
                let user = userinfo.split_once(':').map_or("", |(user, _)| user);
                format!("{scheme}://{user}:***@{hosts}{}", &rest[end..])
            }
            None => self.url.clone(),
        }
    }
}

impl fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("heartbeat", &self.heartbeat)
            .field("node_timeout", &self.node_timeout)
            .field("send_timeout", &self.send_timeout)
            .field("max_queued", &self.max_queued)
            .field("tls_root", &self.tls_root.is_some())
            .field("sentinel_auth", &self.sentinel_auth.as_ref().map(|(user, _)| format!("{user}:***")))
            .finish()
    }
}
