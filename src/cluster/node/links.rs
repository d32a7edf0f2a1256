//! The node's links to Redis, on either kind of deployment: one server (a URL, or the
//! primary the sentinels name), or Redis Cluster, where each primary gets a link for
//! commands and one for its shard channels.
//!
//! Under Redis Cluster every command goes to the shard of its key, and a pipeline is split
//! by shard and put back in order, so the node's rounds read the same either way. The
//! subscriptions are ours, not the client library's: each shard's link is told exactly
//! what to listen to, every message says which shard it came by, and a shard that drops a
//! channel we still want (its slot moved) or goes quiet ends the link, so the node remakes
//! it from a fresh map of slots and repairs the gap as after any outage.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{join_all, try_join_all};
use futures_util::StreamExt;
use redis::aio::{ConnectionLike, MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{Cmd, Pipeline, PushKind, RedisFuture, Value};
use std::time::Instant;
use tokio::sync::mpsc;

use super::round::is_primary;
use crate::cluster::endpoint::{show, Endpoint};
use crate::cluster::health::ShardClock;
use crate::cluster::slots::SlotMap;

/// The commands' side: one connection, or one per shard.
pub(crate) enum Conn {
    One(MultiplexedConnection),
    Shards { conns: Vec<MultiplexedConnection>, map: Arc<SlotMap> },
}

/// The subscriptions' side.
pub(crate) enum Subs {
    One {
        sink: PubSubSink,
        stream: PubSubStream,
    },
    Shards {
        conns: Vec<MultiplexedConnection>,
        map: Arc<SlotMap>,
        /// What each shard's messages arrive on, tagged with the shard.
        rx: mpsc::UnboundedReceiver<(usize, redis::PushInfo)>,
        /// The channels each shard must carry.
        wanted: Vec<HashSet<String>>,
        /// Our own `SUNSUBSCRIBE`s not yet confirmed, by channel: a confirmation read after
        /// the channel was wanted again is ours, not the server dropping it.
        leaving: HashMap<String, usize>,
        /// When each shard last carried anything (a heartbeat or a probe at least); the
        /// status reads it.
        heard: Arc<ShardClock>,
        /// A channel on each shard, shared by every node on the same map of slots: the
        /// nodes' heartbeats go to them in turn, and a bare probe to a shard they have
        /// left quiet; whatever any node sends there proves the shard for all.
        probes: Vec<String>,
    },
}

/// A bare probe's payload (a node's heartbeat on a probe channel is a frame).
pub(crate) const PROBE: &[u8] = b"probe";

/// What came on the subscriptions.
pub(crate) enum Inbound {
    Message(redis::Msg),
    /// Something that proves a shard and has nothing to deliver: a bare probe, or the
    /// confirmation of our own unsubscribe.
    Probe,
    /// The link can no longer be trusted to carry everything.
    Lost(String),
}

/// Both sides, the run id of each server (history trusts only the process it was written
/// under), and where they point (for logs and the status).
pub(crate) struct Opened {
    pub(crate) conn: Conn,
    pub(crate) subs: Subs,
    pub(crate) runs: Runs,
    pub(crate) at: String,
}

/// The run id of the server behind each key.
pub(crate) struct Runs {
    ids: Vec<String>,
    map: Option<Arc<SlotMap>>,
}

impl Runs {
    /// The run id of the server that holds `key`.
    pub(crate) fn of(&self, key: &str) -> &str {
        let at = self.map.as_ref().map_or(0, |m| m.shard_of(key.as_bytes()));
        self.ids.get(at).map_or("", String::as_str)
    }
}

/// Opens the links on the server(s) the endpoint names now; `probe` is the base name of
/// the probe channels every node shares (Redis Cluster only).
pub(crate) async fn open(
    endpoint: &mut Endpoint,
    config: &redis::AsyncConnectionConfig,
    probe: &str,
) -> redis::RedisResult<Opened> {
    let seeds = match endpoint {
        Endpoint::Cluster(seeds) => seeds,
        _ => {
            let (client, at) = endpoint.resolve().await?;
            let mut conn = client.get_multiplexed_async_connection_with_config(config).await?;
            let run = checked_run_id(&mut conn, &at).await?;
            let (sink, stream) = client.get_async_pubsub().await?.split();
            let runs = Runs { ids: vec![run], map: None };
            return Ok(Opened { conn: Conn::One(conn), subs: Subs::One { sink, stream }, runs, at });
        }
    };
    let map = Arc::new(seeds.topology().await?);
    let primaries = map.primaries().to_vec();
    let conns = try_join_all(primaries.iter().map(|addr| async {
        let mut conn = seeds.client_for(addr)?.get_multiplexed_async_connection_with_config(config).await?;
        let run = checked_run_id(&mut conn, &show(addr)).await?;
        Ok::<_, redis::RedisError>((conn, run))
    }))
    .await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let seeds = &*seeds;
    let subs =
        try_join_all(primaries.iter().enumerate().map(|(shard, addr)| {
            let tx = tx.clone();
            let config = config.clone().set_push_sender(move |info| tx.send((shard, info)));
            async move {
                seeds.resp3_client_for(addr)?.get_multiplexed_async_connection_with_config(&config).await
            }
        }))
        .await?;
    let (conns, ids): (Vec<_>, Vec<_>) = conns.into_iter().unzip();
    let at = primaries.iter().map(show).collect::<Vec<_>>().join(",");
    let probes = map.probe_channels(probe);
    let shards = primaries.len();
    let mut subs = Subs::Shards {
        conns: subs,
        map: map.clone(),
        rx,
        wanted: vec![HashSet::new(); shards],
        leaving: HashMap::new(),
        heard: ShardClock::new(primaries.iter().map(show).collect()),
        probes: probes.clone(),
    };
    subs.subscribe(&probes).await?;
    let runs = Runs { ids, map: Some(map.clone()) };
    Ok(Opened { conn: Conn::Shards { conns, map }, subs, runs, at })
}

/// The server's run id, once `ROLE` has shown it a primary: a replica (a primary demoted,
/// a sentinel's stale answer, a map of slots from before a failover) would refuse writes
/// or take publishes that reach nobody.
async fn checked_run_id(conn: &mut MultiplexedConnection, at: &str) -> redis::RedisResult<String> {
    let role = redis::cmd("ROLE").query_async::<Value>(conn).await;
    if role.as_ref().ok().and_then(is_primary) == Some(false) {
        let why = format!("{at} is not a primary (ROLE)");
        return Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, why).into());
    }
    run_id(conn).await
}

/// The run id of the Redis process behind `conn` (new at every start of a server).
async fn run_id(conn: &mut MultiplexedConnection) -> redis::RedisResult<String> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    parse_run_id(&info).map(str::to_owned).ok_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "INFO server without a run_id"))
    })
}

fn parse_run_id(info: &str) -> Option<&str> {
    info.lines().find_map(|l| l.strip_prefix("run_id:")).map(str::trim).filter(|id| !id.is_empty())
}

impl Subs {
    pub(crate) async fn subscribe(&mut self, channels: &[String]) -> redis::RedisResult<()> {
        match self {
            Subs::One { sink, .. } => sink.subscribe(channels).await,
            Subs::Shards { conns, map, wanted, .. } => {
                let mut asks = Vec::new();
                for channel in channels {
                    let shard = map.shard_of(channel.as_bytes());
                    wanted[shard].insert(channel.clone());
                    asks.push((shard, redis::cmd("SSUBSCRIBE").arg(channel).clone()));
                }
                each_on_its_shard(conns, asks).await
            }
        }
    }

    pub(crate) async fn unsubscribe(&mut self, channels: &[String]) -> redis::RedisResult<()> {
        match self {
            Subs::One { sink, .. } => sink.unsubscribe(channels).await,
            Subs::Shards { conns, map, wanted, leaving, .. } => {
                let mut asks = Vec::new();
                for channel in channels {
                    let shard = map.shard_of(channel.as_bytes());
                    wanted[shard].remove(channel);
                    *leaving.entry(channel.clone()).or_default() += 1;
                    asks.push((shard, redis::cmd("SUNSUBSCRIBE").arg(channel).clone()));
                }
                each_on_its_shard(conns, asks).await
            }
        }
    }

    /// The next thing to come on any subscription.
    pub(crate) async fn next(&mut self) -> Inbound {
        match self {
            Subs::One { stream, .. } => match stream.next().await {
                Some(msg) => Inbound::Message(msg),
                None => Inbound::Lost("subscription link closed".into()),
            },
            Subs::Shards { rx, .. } => match rx.recv().await {
                Some((shard, info)) => self.take(shard, info),
                None => Inbound::Lost("every shard's subscription link closed".into()),
            },
        }
    }

    /// What has come already, without waiting.
    pub(crate) fn next_now(&mut self) -> Option<Inbound> {
        match self {
            Subs::One { stream, .. } => match futures_util::FutureExt::now_or_never(stream.next()) {
                Some(Some(msg)) => Some(Inbound::Message(msg)),
                // A closed stream stays closed: the next wait says so.
                _ => None,
            },
            Subs::Shards { rx, .. } => {
                let (shard, info) = rx.try_recv().ok()?;
                Some(self.take(shard, info))
            }
        }
    }

    fn take(&mut self, shard: usize, info: redis::PushInfo) -> Inbound {
        let Subs::Shards { map, wanted, leaving, heard, probes, .. } = self else {
            unreachable!("shards only")
        };
        // Named only when the link is lost: this runs for every message.
        let name = || map.primaries().get(shard).map(show).unwrap_or_default();
        match info.kind {
            PushKind::SMessage | PushKind::Message => {
                heard.heard(shard);
                let Some(msg) = redis::Msg::from_push_info(info) else { return Inbound::Probe };
                // A node's heartbeat on a probe channel is for the state, like one on the
                // nodes channel; a bare probe has done its work by arriving.
                let on_probe =
                    probes.get(shard).is_some_and(|p| p.as_bytes() == msg.get_channel_name().as_bytes());
                if on_probe && msg.get_payload_bytes() == PROBE {
                    Inbound::Probe
                } else {
                    Inbound::Message(msg)
                }
            }
            PushKind::Disconnection => Inbound::Lost(format!("the subscription link to {} closed", name())),
            // The server drops a shard channel whose slot moved; our own unsubscribes are
            // confirmed too, for channels no longer wanted.
            PushKind::SUnsubscribe => {
                let channel = match info.data.first() {
                    Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    _ => String::new(),
                };
                if let Some(n) = leaving.get_mut(&channel) {
                    *n -= 1;
                    if *n == 0 {
                        leaving.remove(&channel);
                    }
                    Inbound::Probe
                } else if wanted[shard].contains(&channel) {
                    Inbound::Lost(format!("{} stopped carrying {channel} (its slot moved)", name()))
                } else {
                    Inbound::Probe
                }
            }
            _ => Inbound::Probe,
        }
    }

    /// Under Redis Cluster, when each shard last carried something, for the status.
    pub(crate) fn clock(&self) -> Option<Arc<ShardClock>> {
        match self {
            Subs::One { .. } => None,
            Subs::Shards { heard, .. } => Some(heard.clone()),
        }
    }

    /// Under Redis Cluster: the shard that has carried nothing, not even this node's
    /// probe, for `quiet`.
    /// Why, and since when.
    pub(crate) fn silent(&self, quiet: Duration) -> Option<(String, Instant)> {
        let Subs::Shards { heard, .. } = self else { return None };
        let at = (0..heard.len()).find(|&s| heard.last(s).elapsed() > quiet)?;
        let since = heard.last(at);
        let why = format!(
            "the subscription to {} carried nothing back for {:?}",
            heard.server(at),
            since.elapsed()
        );
        Some((why, since))
    }

    /// Where this heartbeat goes and which shards get a bare probe besides, under Redis
    /// Cluster (elsewhere: `nodes`, and none). The heartbeat goes to the probe channel of
    /// the shard quiet longest among those heard within `quiet` (every node listens to
    /// every probe channel), so the heartbeats nodes send anyway keep each shard proven,
    /// the way a probe would: with at least as many nodes as shards an idle cluster needs
    /// no probes at all. A shard quiet for `quiet` may be lost, so it gets no heartbeat
    /// (the other nodes would miss it) but a probe, shared like the channel: the first
    /// node to find it quiet probes it for all. When no shard has been heard within
    /// `quiet` (just connected), the heartbeat goes to `nodes`.
    pub(crate) fn beat_plan(&self, nodes: String, quiet: Duration) -> (String, Vec<String>) {
        let Subs::Shards { probes, heard, .. } = self else { return (nodes, Vec::new()) };
        let quiet_for: Vec<Duration> = (0..probes.len()).map(|s| heard.last(s).elapsed()).collect();
        let (beat, probed) = beat_shards(&quiet_for, quiet);
        let probed = probed.into_iter().filter_map(|s| probes.get(s).cloned()).collect();
        (beat.and_then(|s| probes.get(s).cloned()).unwrap_or(nodes), probed)
    }
}

/// [`Subs::beat_plan`] by shard number, from how long each shard has been quiet.
fn beat_shards(quiet_for: &[Duration], quiet: Duration) -> (Option<usize>, Vec<usize>) {
    let heard = |&s: &usize| quiet_for[s] < quiet;
    let beat = (0..quiet_for.len()).filter(heard).max_by_key(|&s| quiet_for[s]);
    (beat, (0..quiet_for.len()).filter(|s| !heard(s)).collect())
}

/// Sends each command on its shard's connection; they go out together.
async fn each_on_its_shard(
    conns: &mut [MultiplexedConnection],
    asks: Vec<(usize, Cmd)>,
) -> redis::RedisResult<()> {
    let runs = asks.into_iter().map(|(shard, cmd)| {
        let mut conn = conns[shard].clone();
        async move { cmd.query_async::<Value>(&mut conn).await }
    });
    join_all(runs).await.into_iter().try_for_each(|r| r.map(drop))
}

impl Conn {
    /// Sends `cmd` on a task of its own, not waited for: a server that stopped holds up
    /// this command alone (until the response timeout), not a round of others.
    pub(crate) fn fire(&self, cmd: Cmd) {
        let mut conn = match self {
            Conn::One(conn) => conn.clone(),
            Conn::Shards { conns, map } => conns[Conn::shard_of(map, &cmd)].clone(),
        };
        tokio::spawn(async move { cmd.query_async::<Value>(&mut conn).await });
    }

    /// Under Redis Cluster, the map of slots the links were made on.
    pub(crate) fn map(&self) -> Option<&SlotMap> {
        match self {
            Conn::One(_) => None,
            Conn::Shards { map, .. } => Some(map),
        }
    }

    /// Under Redis Cluster, the shard of `cmd`'s key (the first: ours never span slots);
    /// the first shard for the commands with no key we send (`CLUSTER SLOTS`).
    fn shard_of(map: &SlotMap, cmd: &Cmd) -> usize {
        let mut args = cmd.args_iter().map(|a| match a {
            redis::Arg::Simple(b) => b,
            _ => &[][..],
        });
        let name = args.next().unwrap_or_default();
        let key = if name.eq_ignore_ascii_case(b"EVAL") || name.eq_ignore_ascii_case(b"EVALSHA") {
            args.nth(2)
        } else if name.eq_ignore_ascii_case(b"CLUSTER") {
            None
        } else {
            args.next()
        };
        key.map_or(0, |k| map.shard_of(k))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::One(conn) => conn.req_packed_command(cmd),
            Conn::Shards { conns, map } => {
                let shard = Conn::shard_of(map, cmd);
                conns[shard].req_packed_command(cmd)
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::One(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Shards { conns, map } => Box::pin(async move {
                if pipeline.is_transaction() {
                    let msg = "a transaction across Redis Cluster's shards";
                    return Err(redis::RedisError::from((redis::ErrorKind::Client, msg)));
                }
                // Most rounds touch one shard (a group's commands share its slot): those go
                // as they are, with no copy.
                let mut shards = pipeline.cmd_iter().map(|cmd| Conn::shard_of(map, cmd));
                let Some(first) = shards.next() else { return Ok(Vec::new()) };
                if shards.all(|s| s == first) {
                    return conns[first].req_packed_commands(pipeline, offset, count).await;
                }
                // Each shard's part keeps its order; answers go back to their places.
                let mut parts: Vec<(Pipeline, Vec<usize>)> =
                    (0..conns.len()).map(|_| Default::default()).collect();
                for (at, cmd) in pipeline.cmd_iter().enumerate() {
                    let shard = Conn::shard_of(map, cmd);
                    parts[shard].0.add_command(cmd.clone());
                    parts[shard].1.push(at);
                }
                let runs = parts.iter().zip(conns.iter()).filter(|((p, _), _)| !p.is_empty()).map(
                    |((p, places), c)| {
                        let mut c = c.clone();
                        async move { c.req_packed_commands(p, 0, p.len()).await.map(|out| (out, places)) }
                    },
                );
                let mut out = vec![Value::Nil; pipeline.len()];
                for answered in try_join_all(runs).await? {
                    let (values, places) = answered;
                    for (value, &at) in values.into_iter().zip(places) {
                        out[at] = value;
                    }
                }
                Ok(out)
            }),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_run_id_is_read_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:911b454f9399adce\r\ntcp_port:6379\r\n";
        assert_eq!(super::parse_run_id(info), Some("911b454f9399adce"));
        assert_eq!(super::parse_run_id("# Server\r\nrun_id:\r\n"), None);
        assert_eq!(super::parse_run_id(""), None);
    }
}
