//! The cluster as the tests run it: nodes in this process (a one-worker server with its
//! own `Cluster`) whose member actor joins every connection to one room, raw clients that
//! learn their global id first, recorded cluster events, and the `cluster_chat` example as
//! a node in a process of its own, which a test can stop or kill.

use std::process::{Command, Stdio};
use std::time::Duration;

use actix::prelude::*;
use actix_meta_websocket::protocol::Incoming;
use actix_meta_websocket::*;
use actix_meta_websocket::{
    cluster::{ClusterEvent, ClusterMember, GlobalId, NodeId},
    groups::{HistoryLimits, Position},
};
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as TMessage;

use super::history::Room;

use super::redis::Redis;
use super::*;

pub const ROOM: &str = "room";
pub const WAIT: Duration = Duration::from_secs(10);

/// Joins each connection to `ROOM` with its query string as metadata, tells it its
/// global id first, and broadcasts `say <text>` to the others.
pub struct Member {
    pub cluster: Cluster,
    pub ended: mpsc::UnboundedSender<(ConnectionId, bool)>,
}

impl Actor for Member {
    type Context = Context<Self>;
}

impl Handler<MessageConnect> for Member {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        let groups = self.cluster.groups();
        let gid = self.cluster.global_id(&m.id);
        groups.send_to([&m.id], format!("id {gid}"));
        let meta = m.uri.split_once('?').map_or("", |(_, q)| q).to_owned();
        assert_eq!(groups.join_with(ROOM, &m.id, meta), Ok(true));
    }
}

impl Handler<WsMessage> for Member {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        if let Some(text) = m.as_text().and_then(|t| t.strip_prefix("say ")) {
            self.cluster.groups().broadcast_except(ROOM, text.to_owned(), &m.id);
        }
        if m.as_text() == Some("rejoin") {
            // Out and in again at once: the node's task sees both in one round.
            let groups = self.cluster.groups();
            assert!(groups.leave(ROOM, &m.id));
            assert_eq!(groups.join_with(ROOM, &m.id, "again"), Ok(true));
            groups.send_to([&m.id], "rejoined");
        }
    }
}

impl Handler<MessageDisconnect> for Member {
    type Result = ();
    fn handle(&mut self, m: MessageDisconnect, _: &mut Context<Self>) {
        let still_member = self.cluster.groups().contains(ROOM, &m.id);
        let _ = self.ended.send((m.id, still_member));
    }
}

/// Records cluster events.
pub struct Events(pub mpsc::UnboundedSender<ClusterEvent>);
impl Actor for Events {
    type Context = Context<Self>;
}
impl Handler<ClusterEvent> for Events {
    type Result = ();
    fn handle(&mut self, e: ClusterEvent, _: &mut Context<Self>) {
        let _ = self.0.send(e);
    }
}

pub fn events() -> (Recipient<ClusterEvent>, mpsc::UnboundedReceiver<ClusterEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Events(tx).start().recipient(), rx)
}

/// Waits for the first event `pick` accepts, skipping others.
pub async fn event<T>(
    rx: &mut mpsc::UnboundedReceiver<ClusterEvent>,
    pick: impl Fn(&ClusterEvent) -> Option<T>,
) -> T {
    let wait = async {
        loop {
            let e = rx.recv().await.expect("events gone");
            if let Some(t) = pick(&e) {
                return t;
            }
        }
    };
    tokio::time::timeout(WAIT, wait).await.expect("event never came")
}

/// A node in this process: a one-worker server and its cluster handle.
pub struct Node {
    pub cluster: Cluster,
    pub server: TestServer,
    pub ended: mpsc::UnboundedReceiver<(ConnectionId, bool)>,
}

pub fn fast(url: &str) -> ClusterOptions {
    ClusterOptions::new(url).heartbeat(Duration::from_millis(100)).node_timeout(Duration::from_millis(600))
}

pub async fn node(redis: &Redis) -> Node {
    node_with(fast(&redis.url())).await
}

pub async fn node_with(opts: ClusterOptions) -> Node {
    let cluster = Cluster::join(opts).await.expect("joined");
    let (tx, ended) = mpsc::unbounded_channel();
    let member = Member { cluster: cluster.clone(), ended: tx }.start();
    let server = serve(WsHandler::new(HandlerOptions::new(Target::from_addr(member))).expect("valid"));
    Node { cluster, server, ended }
}

/// A client of `node` named `name`, and the global id the node gave it.
pub async fn client(node: &Node, name: &str) -> (RawClient, GlobalId) {
    let (mut c, _) = RawClient::connect_path(node.server.addr, &format!("/ws?{name}")).await;
    let first = text(&mut c).await;
    let gid = first.strip_prefix("id ").expect("the id first").parse().expect("a global id");
    (c, gid)
}

/// The next text message, skipping binary ones.
pub async fn text(c: &mut RawClient) -> String {
    loop {
        match c.recv().await {
            Some(Incoming::Text(b)) => return String::from_utf8(b.to_vec()).expect("UTF-8"),
            Some(Incoming::Binary(_)) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

pub async fn say(c: &mut RawClient, text: &str) {
    c.send_raw(&client_frame(true, 0, 0x1, format!("say {text}").as_bytes())).await;
}

pub async fn close(c: &mut RawClient) {
    c.send_raw(&client_frame(true, 0, 0x8, &1000u16.to_be_bytes())).await;
    assert_eq!(c.expect_close().await, 1000);
}

pub fn names(members: &[ClusterMember]) -> Vec<&str> {
    let mut names: Vec<&str> = members.iter().map(|m| &*m.meta).collect();
    names.sort_unstable();
    names
}

pub struct Process {
    pub child: tokio::process::Child,
    pub lines: mpsc::UnboundedReceiver<String>,
    pub addr: std::net::SocketAddr,
    pub node: NodeId,
    /// `host:port/metrics`, when started with `--metrics`.
    pub metrics: Option<String>,
}

/// Where `cargo build --features cluster --example cluster_chat` puts the example, if
/// it is there (`scripts/test.sh` builds it first; otherwise the test is skipped).
pub fn cluster_chat() -> Option<std::path::PathBuf> {
    super::example("cluster_chat", "cargo build --features cluster --example cluster_chat")
}

pub async fn process(redis: &Redis, bin: std::path::PathBuf) -> Process {
    process_with(redis, bin, &[]).await
}

/// A `cluster_chat` node with `extra` arguments (with `--metrics`, where it serves them
/// is in [`Process::metrics`]).
pub async fn process_with(redis: &Redis, bin: std::path::PathBuf, extra: &[&str]) -> Process {
    let mut child = tokio::process::Command::new(bin)
        .args(["--redis", &redis.url(), "--addr", "127.0.0.1:0", "--nodes", "1"])
        .args(["--heartbeat-ms", "100", "--node-timeout-ms", "600"])
        .args(extra)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("examples/cluster_chat starts");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (tx, mut lines) = mpsc::unbounded_channel();
    actix_rt::spawn(async move {
        while let Ok(Some(line)) = out.next_line().await {
            let _ = tx.send(line);
        }
    });
    // "metrics on http://<addr>/metrics" first, with `--metrics`.
    let mut metrics = None;
    let first = loop {
        let line = tokio::time::timeout(WAIT, lines.recv()).await.expect("started").expect("a line");
        match line.strip_prefix("metrics on http://") {
            Some(at) => metrics = Some(at.to_owned()),
            None => break line,
        }
    };
    // "node <id> chat on http://<addr>/"
    let words: Vec<&str> = first.split_whitespace().collect();
    let node = words[1].parse().expect("node id");
    let addr = words[4].trim_start_matches("http://").trim_end_matches('/').parse().expect("addr");
    Process { child, lines, addr, node, metrics }
}

impl Process {
    pub async fn line_with(&mut self, needle: &str) {
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(needle) {
                    return;
                }
            }
            panic!("the node ended before saying {needle}");
        };
        tokio::time::timeout(WAIT, wait).await.expect("never said it")
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running").to_string();
        assert!(Command::new("kill").args([sig, &pid]).status().expect("kill").success());
    }
}

/// A node serving `Room` (joins since the URL's position) on `room`, which keeps history.
pub async fn history_node(redis: &Redis, limits: HistoryLimits) -> (Cluster, TestServer) {
    let cluster = Cluster::join(fast(&redis.url())).await.expect("joined");
    cluster.groups().keep_history("room", limits);
    let groups = cluster.groups().clone();
    let srv = serve_each(1, None, move || {
        let room = Room { groups: groups.clone(), group: "room" }.start();
        WsHandler::new(HandlerOptions::new(Target::from_addr(room))).unwrap()
    });
    (cluster, srv)
}

pub fn roomy() -> HistoryLimits {
    HistoryLimits::default().max_messages(10_000).max_replay(10_000).max_bytes(64 << 20)
}

/// The texts of one session of `url`, until `stop` (a position's text) or a close; the
/// close code, if it closed.
pub async fn session(url: &str, stop: Option<Position>) -> (Vec<String>, Option<u16>) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("handshake");
    let mut texts = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("a message in time");
        match msg {
            Some(Ok(TMessage::Text(t))) => {
                let done = stop.is_some_and(|s| t.as_str() == s.to_string());
                texts.push(t.as_str().to_owned());
                if done {
                    return (texts, None);
                }
            }
            Some(Ok(TMessage::Close(c))) => return (texts, c.map(|c| u16::from(c.code))),
            other => panic!("{other:?}"),
        }
    }
}

/// The first text of a session of `url`.
pub async fn session_first(url: &str) -> (String, ()) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("handshake");
    let msg = tokio::time::timeout(Duration::from_secs(20), ws.next()).await;
    let Ok(Some(Ok(TMessage::Text(t)))) = msg else { panic!("{msg:?}") };
    (t.as_str().to_owned(), ())
}

/// Joins each connection to every group named in its query (`?g1,g2,...`) through the
/// `Groups` it was given, then tells it "joined".
pub struct Joiner(pub Groups);

impl Actor for Joiner {
    type Context = Context<Self>;
}

impl Handler<MessageConnect> for Joiner {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        for group in m.uri.split_once('?').map_or("", |(_, q)| q).split(',') {
            assert_eq!(self.0.join(group, &m.id), Ok(true));
        }
        m.id.send("joined");
    }
}

impl Handler<WsMessage> for Joiner {
    type Result = ();
    fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {}
}

impl Handler<MessageDisconnect> for Joiner {
    type Result = ();
    fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {}
}
