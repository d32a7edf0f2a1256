//! The node's task: one thread with its own Tokio runtime, holding the two Redis links
//! (commands and subscriptions). It carries out on Redis what its bookkeeping decides,
//! and turns what arrives on the subscriptions into local deliveries and events.
//!
//! - `state`: the bookkeeping and what it decides, without I/O; made of
//!   - `local`: this node's members and watchers of each group, and what they ask of Redis,
//!   - `roster`: the members on other nodes of the groups watched from here,
//!   - `peers`: the other nodes heard from,
//!   - `pending`: sends waiting for the owning node's answer.
//!   - `streams`: where each group's stored broadcasts stand here.
//! - `round`: the Redis commands of one round trip; `read`: presence read back.
//! - `stored`: history in Redis: storing and publishing by one script.
//! - `recover`: history read back: catch-up reads, and joins with recovery.
//!
//! When Redis goes away the task fails what needs Redis at once, keeps its bookkeeping,
//! reconnects, and then re-makes subscriptions and presence, tells the other nodes what
//! changed here meanwhile, and tells its watchers what changed elsewhere.

mod links;
mod local;
mod peers;
mod pending;
mod read;
mod recover;
mod roster;
mod round;
mod state;
mod stored;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::endpoint::{Endpoint, Sentinels};
use super::error::{ClusterError, ClusterSendError};
use super::keys::Keys;
use super::link::{Cmd, Link};
use super::options::ClusterOptions;
use super::wire::Frame;
use crate::groups::Groups;
use links::{Conn, Inbound, Opened, Runs, Subs};
use round::{is_primary, Round};
use state::State;

const RECONNECT_FIRST: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_millis(500);
/// Commands taken off the queue per Redis round trip.
const BATCH: usize = 512;
/// Messages read from the subscription before their answers leave in one round trip.
const READ_AHEAD: usize = 256;
/// Under Sentinel, heartbeats between two `ROLE` checks of the server in use.
const ROLE_EVERY: u32 = 10;

/// Both links to Redis.
pub(crate) struct Redis {
    conn: Conn,
    subs: Subs,
    /// The server processes' run ids: history written under another one is not trusted
    /// to hold every position it gave out (see `stored`).
    runs: Runs,
    /// The server (`host:port`), or under Redis Cluster each primary.
    at: String,
}

pub(crate) struct Node {
    endpoint: Endpoint,
    opts: ClusterOptions,
    state: State,
    /// Under Sentinel: the primary the sentinels name now, as a task asking them on a
    /// timer last heard.
    named: Option<watch::Receiver<Option<String>>>,
    /// Heartbeats sent so far: every `ROLE_EVERY`th asks `ROLE` under Sentinel.
    beats: u32,
}

impl Node {
    pub(crate) fn new(link: Arc<Link>, opts: ClusterOptions, endpoint: Endpoint, groups: Groups) -> Self {
        let sharded = matches!(endpoint, Endpoint::Cluster(_));
        let state = State::new(link, Keys::new(&opts.prefix, sharded), opts.node_timeout, groups);
        Node { endpoint, opts, state, named: None, beats: 0 }
    }

    /// Connects within a bound: a server that accepts and then says nothing (stopped, or
    /// behind a black hole) must not hold the node.
    pub(crate) async fn connect_within(&mut self) -> Result<Redis, redis::RedisError> {
        let budget = self.opts.send_timeout * 2;
        match tokio::time::timeout(budget, self.connect()).await {
            Ok(connected) => connected,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no link to redis within {budget:?}"),
            )
            .into()),
        }
    }

    /// Opens both links and subscribes to everything this node listens to; writes again
    /// the presence that Redis may have lost (or that changed while it was away) and tells
    /// the other nodes of it; reloads what this node knows of other nodes' members.
    pub(crate) async fn connect(&mut self) -> Result<Redis, redis::RedisError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(self.opts.send_timeout));
        let probe = self.state.keys.probes();
        let Opened { mut conn, mut subs, runs, at } =
            links::open(&mut self.endpoint, &config, &probe).await?;
        let mut channels = vec![self.state.keys.nodes(), self.state.keys.node(self.state.me())];
        channels.extend(self.state.local.channels().iter().map(|g| self.state.keys.group(g)));
        subs.subscribe(&channels).await?;
        let mut round = Round::new(&self.state.keys);
        for group in self.state.local.to_rewrite() {
            round.announce(&self.state.presence(), &group, self.state.local.members(&group));
        }
        round.publish(
            self.state.keys.nodes(),
            Frame::Heartbeat { dropped: self.state.link.dropped() }.encode(self.state.me()),
        );
        round.run(&mut conn).await?;
        self.state.local.rewritten();
        let mut redis = Redis { conn, subs, runs, at };
        for group in self.state.local.watched() {
            self.load_roster(&mut redis, &group).await?;
        }
        self.introduce_watchers(&mut redis).await?;
        // Up before `Cluster::join` returns, so that its first send finds the link up.
        self.state.link.set_up(true);
        crate::telemetry::cluster_nodes(self.state.peers.ids().len() + 1);
        Ok(redis)
    }

    /// Serves until stopped: `redis` is the first link, made by the caller, or `None` when
    /// Redis did not answer (the node then connects when it does).
    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>, mut redis: Option<Redis>) {
        match &redis {
            Some(r) => self.came_up(r),
            None => self.state.link.health.lost(),
        }
        if let Some(sentinels) = self.endpoint.sentinels() {
            let (tx, rx) = watch::channel(None);
            tokio::spawn(watch_primary(sentinels, self.opts.heartbeat, tx));
            self.named = Some(rx);
        }
        let mut tick = tokio::time::interval(self.opts.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry = Retry::default();
        let mut cmds = Vec::with_capacity(BATCH);
        loop {
            let Some(r) = redis.as_mut() else {
                match self.while_down(&mut rx, &mut cmds, &mut retry).await {
                    Down::Stop => return,
                    Down::Still => {}
                    Down::Up(r) => redis = Some(*r),
                }
                continue;
            };
            // Missed stored broadcasts (after a gap, or a reconnect) are read back first.
            let caught_up =
                if self.state.streams.behind().is_empty() { Ok(()) } else { self.catch_up_all(r).await };
            let lost = match caught_up {
                Err(e) => Some(e.to_string()),
                Ok(()) => tokio::select! {
                    n = rx.recv_many(&mut cmds, BATCH) => {
                        let mut round = self.state.apply(&mut cmds, n == 0);
                        match self.run_round(r, &mut round).await {
                            Ok(true) => return,
                            Ok(false) => None,
                            // What the round still owes is answered as if Redis were down.
                            Err(e) if self.state.fail_round(round) => return drop(e),
                            Err(e) => Some(e.to_string()),
                        }
                    }
                    inbound = r.subs.next() => self.inbound(r, inbound).await,
                    _ = tick.tick() => self.heartbeat(r).await.err().map(|e| e.to_string()),
                    Some(()) = named_changed(&mut self.named) => self.named_elsewhere(r).await,
                },
            };
            if let Some(why) = lost {
                tracing::warn!(url = %self.opts.redacted_url(), %why, "cluster: lost redis; reconnecting");
                redis = None;
                retry = Retry::default();
                self.state.went_down();
            }
        }
    }

    /// One step without Redis: commands are answered as if it were down, and when `retry`
    /// says so the node tries to reconnect. The time of the next try stands across steps,
    /// so commands arriving all the time do not put it off.
    async fn while_down(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Cmd>,
        cmds: &mut Vec<Cmd>,
        retry: &mut Retry,
    ) -> Down {
        tokio::select! {
            n = rx.recv_many(cmds, BATCH) => {
                let round = self.state.apply(cmds, n == 0);
                if self.state.fail_round(round) { Down::Stop } else { Down::Still }
            }
            // The sentinels name a new primary: no need to wait out the backoff.
            Some(()) = named_changed(&mut self.named) => {
                retry.at = tokio::time::Instant::now();
                Down::Still
            }
            _ = tokio::time::sleep_until(retry.at) => match self.connect_within().await {
                Ok(r) => {
                    self.came_up(&r);
                    Down::Up(Box::new(r))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cluster: redis still away");
                    retry.failed();
                    Down::Still
                }
            },
        }
    }

    /// Makes the round's Redis calls; `Ok(true)` when the node is to stop.
    async fn run_round(&mut self, r: &mut Redis, round: &mut Round) -> redis::RedisResult<bool> {
        // What the round ends with counts: a group left and joined again within it stays
        // subscribed, one joined and left needs no subscription.
        // A member may have joined here whose change is still queued: its group stays.
        let groups = &self.state.groups;
        round.unsubscribe.retain(|g| !self.state.local.listens(g) && groups.count(g) == 0);
        for group in &round.unsubscribe {
            // Delivery starts afresh if the node listens again; not before it stops: a
            // member may have joined again within the round.
            self.state.streams.forget(group);
        }
        round.subscribe.retain(|g| self.state.local.listens(g));
        if !round.subscribe.is_empty() {
            let channels: Vec<String> = round.subscribe.iter().map(|g| self.state.keys.group(g)).collect();
            r.subs.subscribe(&channels).await?;
        }
        let out = round.run(&mut r.conn).await?;
        for (at, node, req) in round.sends.drain(..) {
            // Nobody subscribed to the node's channel: it is not there.
            if matches!(out.get(at), Some(redis::Value::Int(0))) {
                self.state.pending.answer(req, Err(ClusterSendError::NoSuchNode(node)));
            }
        }
        if !round.unsubscribe.is_empty() {
            let channels: Vec<String> = round.unsubscribe.iter().map(|g| self.state.keys.group(g)).collect();
            r.subs.unsubscribe(&channels).await?;
        }
        self.introduce_watchers(r).await?;
        self.publish_all(r, std::mem::take(&mut round.publishes)).await?;
        self.join_all(r, std::mem::take(&mut round.joins)).await?;
        for (group, reply) in round.members.drain(..) {
            let members = read::members(&mut r.conn, &self.state.keys, &group).await;
            let _ = reply.send(members.map_err(|e| ClusterError::Redis(e.to_string())));
        }
        if let Some(reply) = round.stop.take() {
            self.leave(r).await;
            reply.map(|r| r.send(()));
            return Ok(true);
        }
        Ok(false)
    }

    /// Reads `group`'s members from Redis into its roster; its watchers are told what
    /// changed since the roster was last right.
    async fn load_roster(&mut self, r: &mut Redis, group: &Arc<str>) -> redis::RedisResult<()> {
        let listed = read::members(&mut r.conn, &self.state.keys, group).await?;
        self.state.roster_read(group, listed);
        Ok(())
    }

    /// Tells each waiting watcher every member of its group (read from Redis first if
    /// nobody watched the group here yet).
    async fn introduce_watchers(&mut self, r: &mut Redis) -> redis::RedisResult<()> {
        for group in self.state.local.with_waiting_watchers() {
            if !self.state.rosters.is_loaded(&group) {
                self.load_roster(r, &group).await?;
            }
            self.state.introduce_watchers(&group);
        }
        Ok(())
    }

    /// Says goodbye: this node's presence goes now rather than at its expiry.
    async fn leave(&mut self, r: &mut Redis) {
        let mut round = Round::new(&self.state.keys);
        for group in self.state.local.with_members() {
            round.rewrite(&self.state.presence(), &group, &[]);
        }
        round.publish(self.state.keys.nodes(), Frame::Bye.encode(self.state.me()));
        if let Err(e) = round.run(&mut r.conn).await {
            tracing::warn!(error = %e, "cluster: goodbye not said; presence expires instead");
        }
        self.state.link.set_up(false);
    }

    /// Says this node is alive and keeps its presence (writing it again if it expired);
    /// then the bookkeeping of a heartbeat.
    async fn heartbeat(&mut self, r: &mut Redis) -> redis::RedisResult<()> {
        self.still_trusted(r).await?;
        self.state.link.health.report_shards();
        let mut round = Round::new(&self.state.keys);
        // A demoted server refuses the presence writes (`READONLY`) and the sentinels stop
        // naming it, so a periodic `ROLE` is the last guard, not the first: it stays a
        // small share of an idle node's commands.
        self.beats = self.beats.wrapping_add(1);
        let check = self.beats.is_multiple_of(ROLE_EVERY);
        let role = (self.named.is_some() && check).then(|| round.role());
        // Under Redis Cluster the map of slots is read again likewise: a failover or a
        // slot moved shows in a dropped channel or a `MOVED` first, this is the last guard.
        let slots = (r.conn.map().is_some() && check).then(|| round.slots());
        let (beat_to, probes) = r.subs.beat_plan(self.state.keys.nodes(), self.opts.heartbeat * 3 / 2);
        round.publish(
            beat_to,
            Frame::Heartbeat { dropped: self.state.link.dropped() }.encode(self.state.me()),
        );
        // Each probe on its own: one stopped server must not hold up the others' probes,
        // or every idle shard would look as quiet as the one that stopped.
        for probe in probes {
            r.conn.fire(redis::cmd(self.state.keys.publish_command()).arg(probe).arg(links::PROBE).clone());
        }
        let refreshed: Vec<(usize, Arc<str>)> = self
            .state
            .local
            .with_members()
            .into_iter()
            .map(|group| {
                let index = round::index_due(self.beats, &group);
                (round.refresh(&self.state.presence(), &group, index), group)
            })
            .collect();
        let out = round.run(&mut r.conn).await?;
        if role.and_then(|at| out.get(at)).and_then(is_primary) == Some(false) {
            let why = format!("{} is no longer a primary (ROLE)", r.at);
            return Err(std::io::Error::other(why).into());
        }
        if let (Some(at), Some(map)) = (slots, r.conn.map()) {
            if out
                .get(at)
                .map(crate::cluster::slots::SlotMap::parse)
                .is_some_and(|now| !now.is_ok_and(|now| now.same_as(map)))
            {
                return Err(std::io::Error::other("the map of slots changed").into());
            }
        }
        self.announce_expired(r, &out, refreshed).await?;
        let unused = self.state.after_heartbeat(self.opts.send_timeout);
        if !unused.is_empty() {
            let channels: Vec<String> = unused.iter().map(|g| self.state.keys.group(g)).collect();
            r.subs.unsubscribe(&channels).await?;
        }
        Ok(())
    }

    /// Whether the link may still be trusted, at a heartbeat: its subscription carries this
    /// node's heartbeats back (and every shard's carries something), and under Sentinel
    /// its server is the primary the sentinels name.
    async fn still_trusted(&mut self, r: &Redis) -> redis::RedisResult<()> {
        if let Some(waited) = self.state.link.health.heartbeat_sent(self.probe_timeout()) {
            let why = format!("the subscription carried nothing back for {waited:?}");
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, why).into());
        }
        if let Some(why) = self.named_elsewhere(r).await {
            return Err(std::io::Error::other(why).into());
        }
        if let Some((why, since)) = r.subs.silent(self.probe_timeout()) {
            self.state.link.health.shard_silent(since);
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, why).into());
        }
        Ok(())
    }

    /// Writes again the presence that had expired (this node stalled past the node timeout,
    /// and the others took it for dead), and tells the other nodes.
    async fn announce_expired(
        &mut self,
        r: &mut Redis,
        out: &[redis::Value],
        refreshed: Vec<(usize, Arc<str>)>,
    ) -> redis::RedisResult<()> {
        let mut again = Round::new(&self.state.keys);
        for (at, group) in refreshed {
            if matches!(out.get(at), Some(redis::Value::Int(0))) {
                tracing::warn!(%group, "cluster: this node's presence had expired; written again");
                again.announce(&self.state.presence(), &group, self.state.local.members(&group));
            }
        }
        again.run(&mut r.conn).await.map(drop)
    }

    /// Takes `first` and whatever else has arrived already (up to `READ_AHEAD`), then
    /// sends the answers they call for together; why the link is lost, if it is.
    async fn inbound(&mut self, r: &mut Redis, first: Inbound) -> Option<String> {
        let mut answers = Round::new(&self.state.keys);
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(inbound) = next.take() {
            match inbound {
                Inbound::Message(msg) => {
                    crate::telemetry::cluster_received();
                    if self.state.on_message(msg.get_channel_name(), msg.get_payload_bytes(), &mut answers) {
                        self.state.link.health.heartbeat_back();
                    }
                }
                Inbound::Probe => {}
                Inbound::Lost(why) => return Some(why),
            }
            taken += 1;
            if taken < READ_AHEAD {
                next = r.subs.next_now();
            }
        }
        answers.run(&mut r.conn).await.err().map(|e| e.to_string())
    }
}

impl Node {
    /// The link `r` is made: its health records the server and ends the outage, and the
    /// bookkeeping tells who needs to know.
    fn came_up(&mut self, r: &Redis) {
        let outage = self.state.link.health.connected(&r.at, r.subs.clock());
        self.state.came_up(outage);
    }

    /// How long the node's heartbeat may take to come back on its subscription before
    /// the link is taken for silent and made again.
    fn probe_timeout(&self) -> Duration {
        self.opts.node_timeout.max(self.opts.send_timeout)
    }

    /// Why the link must move, when the sentinels name a primary other than its server.
    /// The watcher's answer may predate this link (made on a fresher one), so the
    /// sentinels are asked again before the node moves.
    async fn named_elsewhere(&mut self, r: &Redis) -> Option<String> {
        let named = self.named.as_ref()?.borrow().clone()?;
        if named == r.at {
            return None;
        }
        let now = match &mut self.endpoint {
            Endpoint::Sentinel(s) => s.primary().await.ok().map(|p| super::endpoint::show(&p))?,
            Endpoint::Single { .. } | Endpoint::Cluster(_) => return None,
        };
        (now != r.at).then(|| format!("the sentinels name {now} primary now, not {}", r.at))
    }
}

/// Resolves when the sentinels' answer changes (never without sentinels).
async fn named_changed(named: &mut Option<watch::Receiver<Option<String>>>) -> Option<()> {
    match named {
        Some(rx) => rx.changed().await.ok(),
        None => std::future::pending().await,
    }
}

/// Asks the sentinels every `every` which server is primary, until the node is gone.
async fn watch_primary(mut sentinels: Sentinels, every: Duration, named: watch::Sender<Option<String>>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !named.is_closed() {
        tick.tick().await;
        match sentinels.primary().await {
            Ok(primary) => {
                let primary = Some(super::endpoint::show(&primary));
                named.send_if_modified(|now| std::mem::replace(now, primary.clone()) != primary);
            }
            Err(e) => tracing::debug!(error = %e, "cluster: no sentinel answered"),
        }
    }
}

/// When the next reconnect is due: soon after a loss, then backing off to at most
/// `RECONNECT_MAX` between tries.
struct Retry {
    at: tokio::time::Instant,
    wait: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { at: tokio::time::Instant::now() + RECONNECT_FIRST, wait: RECONNECT_FIRST }
    }
}

impl Retry {
    fn failed(&mut self) {
        self.wait = (self.wait * 2).min(RECONNECT_MAX);
        self.at = tokio::time::Instant::now() + self.wait;
    }
}

/// What a step without Redis came to.
enum Down {
    Stop,
    Still,
    Up(Box<Redis>),
}
