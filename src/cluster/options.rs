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
///     .node_timeout(Duration::from_secs(2));
/// assert!(!format!("{opts:?}").contains("secret")); // credentials never reach logs
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
}

impl ClusterOptions {
    /// Redis at `url`: `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS
    /// (webpki roots). Defaults: prefix `amw`, heartbeat 1 s, node timeout 3 s, send
    /// timeout 2 s, 16 MiB queued for the broker at most.
    pub fn new(url: impl Into<String>) -> Self {
        ClusterOptions {
            url: url.into(),
            prefix: "amw".into(),
            heartbeat: Duration::from_secs(1),
            node_timeout: Duration::from_secs(3),
            send_timeout: Duration::from_secs(2),
            max_queued: 16 << 20,
            tls_root: None,
        }
    }

    /// For `rediss://`: trusts the CA certificates in `pem` instead of the webpki roots,
    /// for a Redis whose certificate a private CA signed.
    pub fn tls_root(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root = Some(pem.into());
        self
    }

    /// Why these options cannot work, if they cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.heartbeat.is_zero() || self.send_timeout.is_zero() {
            return Err("heartbeat and send_timeout must be above zero".into());
        }
        if self.node_timeout < self.heartbeat * 2 {
            return Err("node_timeout must be at least twice the heartbeat".into());
        }
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            return Err("the prefix must be a word".into());
        }
        Ok(())
    }

    setters! {
        /// What every key and channel of this cluster starts with, so several clusters (or
        /// other applications) can share one Redis.
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
        match url::Url::parse(&self.url) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.to_string()
            }
            Err(_) => "(unparsable URL)".into(),
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
            .finish()
    }
}
