//! The chat of `examples/chat.rs` across nodes that share one Redis (feature `cluster`):
//! pages connected to different nodes share rooms, messages, member lists and the rooms'
//! history (in Redis): a page that reconnects to any node shows what it missed. Each node
//! is an actix-web server with its own [`Cluster`] handle; this process runs `--nodes` of
//! them on consecutive ports (or run one per process, as the tests do).
//!
//! ```sh
//! redis-server --port 6379 --save '' &        # any Redis 6+; or pass --redis
//! cargo run --example cluster_chat --features cluster
//! # open http://127.0.0.1:8091/ and http://127.0.0.1:8092/: two nodes, one chat
//! ```
//!
//! Each node serves a live status page at `/status` (its connections and rooms, the
//! cluster's nodes as it sees them, its link to Redis, the process's traffic with
//! `--features metrics`) and a readiness check at `/ready` (503 while Redis is away or its
//! subscription silent);
//! `--metrics ADDR` serves Prometheus text, `--log-json` logs JSON lines.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_meta_websocket::*;
use actix_meta_websocket::{
    cluster::{ClusterEvent, GlobalId, NodeId},
    groups::{PresenceChange, Since},
};
use actix_web::{web, App, HttpResponse};

const PAGE: &str = include_str!("chat.html");

#[path = "shared/observe.rs"]
mod observe;
#[path = "shared/rooms.rs"]
mod rooms;
#[path = "shared/status.rs"]
mod status;
use rooms::Rooms;

/// Every connection's target on one node; watches every room entered on this node, on
/// every node, and tells this node's members of the room who came and went.
struct Chat {
    cluster: Cluster,
    /// On the cluster's groups; names carry the node's first hex digits, so they are
    /// unique across nodes.
    rooms: Rooms,
    /// Who is in each watched room, on every node, as the room's events say.
    present: HashMap<Arc<str>, BTreeMap<GlobalId, String>>,
}

impl Actor for Chat {
    type Context = Context<Self>;
}

impl Chat {
    fn watcher(&self, ctx: &Context<Self>) -> impl FnOnce(&str) {
        let (cluster, me) = (self.cluster.clone(), ctx.address());
        move |room| cluster.watch(room, me.recipient())
    }
}

impl Handler<MessageConnect> for Chat {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, ctx: &mut Context<Self>) {
        let (me, node) = (self.rooms.name(&m.id), self.cluster.node());
        self.rooms.groups.send_to([&m.id], format!("you are {me} on node {node}; /join <room> to move"));
        let watch = self.watcher(ctx);
        let start = rooms::Start::of(&m.uri).unwrap_or_else(|e| {
            self.rooms.groups.send_to([&m.id], format!("ignored ?since: {e}"));
            rooms::Start { room: "lobby".into(), since: Since::Start }
        });
        self.rooms.enter(&start.room, &m.id, start.since, watch);
    }
}

impl Handler<WsMessage> for Chat {
    type Result = ();
    fn handle(&mut self, m: WsMessage, ctx: &mut Context<Self>) {
        let watch = self.watcher(ctx);
        self.rooms.said(&m, watch);
    }
}

/// A change in a watched room, on any node (a node that dies takes its members with it).
impl Handler<ClusterEvent> for Chat {
    type Result = ();
    fn handle(&mut self, e: ClusterEvent, _: &mut Context<Self>) {
        let ClusterEvent::Presence { group, member, change } = e else { return };
        let room = self.present.entry(group.clone()).or_default();
        match change {
            PresenceChange::Present | PresenceChange::Joined | PresenceChange::Updated => {
                room.insert(member.id, member.meta.to_string());
            }
            _ => {
                room.remove(&member.id);
            }
        }
        let names: Vec<String> = room.values().cloned().collect();
        self.rooms.tell(&group, &member.meta, change, &names);
    }
}

impl Handler<MessageDisconnect> for Chat {
    type Result = (); // It has left its room already: the room's watcher tells the others.
    fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {}
}

/// Prints what the cluster says (nodes up and down, Redis down and back, gaps), and keeps
/// the nodes' states for the status page.
struct Log(NodeId, status::Nodes);
impl Actor for Log {
    type Context = Context<Self>;
}
impl Handler<ClusterEvent> for Log {
    type Result = ();
    fn handle(&mut self, e: ClusterEvent, _: &mut Context<Self>) {
        println!("node {}: {e:?}", self.0);
        let mut nodes = self.1.lock().unwrap();
        match e {
            ClusterEvent::NodeUp(n) => drop(nodes.insert(n.to_string(), "up")),
            ClusterEvent::NodeDown(n) => drop(nodes.insert(n.to_string(), "down")),
            ClusterEvent::BrokerDown => drop(nodes.insert(format!("{} (this node)", self.0), "redis away")),
            ClusterEvent::BrokerUp => drop(nodes.insert(format!("{} (this node)", self.0), "up")),
            _ => {}
        }
    }
}

#[derive(clap::Parser)]
struct Cli {
    /// The Redis every node joins: `redis://`, `rediss://` for TLS, or
    /// `redis+sentinel://host:port,host:port/<primary>` for the primary that Redis Sentinel
    /// names.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Where the first node listens; the others take the next ports (port 0: any).
    #[arg(long, default_value = "127.0.0.1:8091")]
    addr: std::net::SocketAddr,
    /// How many nodes this process runs.
    #[arg(long, default_value_t = 2)]
    nodes: u16,
    /// Heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Milliseconds without a heartbeat before a node is taken for dead.
    #[arg(long, default_value_t = 3000)]
    node_timeout_ms: u64,
    /// Messages each room keeps (and replays at most to a page that reconnects).
    #[arg(long, default_value_t = 100)]
    history: usize,
    #[command(flatten)]
    observe: observe::Flags,
}

async fn node(
    cli: &Cli,
    addr: std::net::SocketAddr,
    scrape: observe::Scrape,
) -> std::io::Result<actix_web::dev::Server> {
    let opts = ClusterOptions::new(cli.redis.clone())
        .heartbeat(Duration::from_millis(cli.heartbeat_ms))
        .node_timeout(Duration::from_millis(cli.node_timeout_ms));
    let cluster = Cluster::join(opts).await.map_err(std::io::Error::other)?;
    let nodes = status::Nodes::default();
    nodes.lock().unwrap().insert(format!("{} (this node)", cluster.node()), "up");
    cluster.subscribe(Log(cluster.node(), nodes.clone()).start().recipient());
    let prefix = format!("{}-", &cluster.node().to_string()[..4]);
    let rooms = Rooms::new(cluster.groups().clone(), prefix, cli.history);
    let chat = Chat { rooms, cluster: cluster.clone(), present: HashMap::new() }.start();
    let handler = WsHandler::new(HandlerOptions::new(Target::from_addr(chat)).compression(true))?;
    let scrape = Arc::new(move || scrape.render());
    let c = cluster.clone();
    let broker = Arc::new(move || {
        let s = c.broker_status();
        status::Broker {
            ready: c.is_ready(),
            server: s.server.unwrap_or_default(),
            reconnects: s.reconnects,
            last_outage: s.last_outage,
            probe_timeouts: s.probe_timeouts,
            shards: s.shards.into_iter().map(|shard| (shard.server, shard.quiet_for)).collect(),
        }
    });
    let status = status::Status {
        handler: handler.clone(),
        groups: cluster.groups().clone(),
        scrape,
        nodes,
        broker: Some(broker),
    };
    let h = handler.clone();
    let page = || async { HttpResponse::Ok().content_type("text/html; charset=utf-8").body(PAGE) };
    let server = WsServer::new(move || {
        App::new().route("/", web::get().to(page)).route("/ws", h.route()).configure(status.routes())
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?;
    // Printed for scripts that start the example on port 0.
    println!("node {} chat on http://{}/", cluster.node(), server.addrs()[0]);
    Ok(server.run())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    let scrape = observe::start(&cli.observe, "warn", true)?;
    let mut servers = Vec::new();
    for i in 0..cli.nodes {
        let port = if cli.addr.port() == 0 { 0 } else { cli.addr.port() + i };
        servers.push(node(&cli, std::net::SocketAddr::new(cli.addr.ip(), port), scrape.clone()).await?);
    }
    let handles: Vec<_> = servers.iter().map(|s| s.handle()).collect();
    let running = futures_util::future::join_all(servers);
    tokio::select! {
        _ = running => {}
        _ = tokio::signal::ctrl_c() => for h in handles { h.stop(true).await },
    }
    Ok(())
}
