//! The fan-out workers of the benchmark server: every message is broadcast to every other
//! connection, through the crate's groups (`Fanout`) or through one hub actor that sends
//! each member a `PreparedMessage` itself (`Hub`, the pattern before groups).

use std::collections::HashMap;

use actix::prelude::*;
use actix_meta_websocket::{
    ConnectionId, Groups, MessageConnect, MessageDisconnect, PreparedMessage, WsMessage,
};

const ALL: &str = "all";

fn prepared(m: &WsMessage) -> PreparedMessage {
    match m.as_text() {
        Some(text) => PreparedMessage::text(text),
        None => PreparedMessage::binary(m.body.clone()),
    }
}

/// One per worker thread: every connection joins one group, and what any of them sends
/// is broadcast to the others.
#[derive(Clone)]
pub struct Fanout {
    pub groups: Groups,
    /// With `bench_server --cluster`: `id?` answers the connection's global id, and
    /// `to <global id> <text>` relays the text with `Cluster::send` (`loadgen relay`).
    #[cfg(feature = "cluster")]
    pub cluster: Option<actix_meta_websocket::Cluster>,
}

impl Actor for Fanout {
    type Context = Context<Self>;
}

impl actix::Handler<MessageConnect> for Fanout {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        let _ = self.groups.join(ALL, &m.id);
    }
}

impl actix::Handler<WsMessage> for Fanout {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        if m.as_text() == Some("churn") {
            return self.churn(&m.id);
        }
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.cluster {
            if relay(cluster, &self.groups, &m) {
                return;
            }
        }
        self.groups.broadcast_except(ALL, prepared(&m), &m.id);
    }
}

/// `loadgen relay`'s requests; whether `m` was one.
#[cfg(feature = "cluster")]
fn relay(cluster: &actix_meta_websocket::Cluster, groups: &Groups, m: &WsMessage) -> bool {
    let Some(text) = m.as_text() else { return false };
    if text == "id?" {
        groups.send_to([&m.id], format!("id {}", cluster.global_id(&m.id)));
        return true;
    }
    let Some((to, rest)) = text.strip_prefix("to ").and_then(|t| t.split_once(' ')) else { return false };
    match to.parse() {
        Ok(to) => {
            if let Err(e) = cluster.send(&to, rest) {
                eprintln!("relay to {to}: {e}");
            }
        }
        Err(e) => eprintln!("relay: {e}"),
    }
    true
}

impl Fanout {
    /// For `loadgen churn`: every connection joins a second group, then leaves it; the
    /// answer follows the leaves through every thread's delivery queue.
    fn churn(&self, asker: &ConnectionId) {
        let members = self.groups.members(ALL);
        for m in &members {
            let _ = self.groups.join_with("churn", &m.id, "member");
        }
        for m in &members {
            self.groups.leave("churn", &m.id);
        }
        self.groups.send_to([asker], "churned");
    }
}

impl actix::Handler<MessageDisconnect> for Fanout {
    type Result = ();
    fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {}
}

/// Knows every connection; broadcasts what any of them sends to all the others, one
/// `send_prepared` per member.
#[derive(Default)]
pub struct Hub {
    members: HashMap<u64, ConnectionId>,
}

impl Actor for Hub {
    type Context = Context<Self>;
}

impl actix::Handler<MessageConnect> for Hub {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        self.members.insert(m.id.seq(), m.id);
    }
}

impl actix::Handler<WsMessage> for Hub {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        let from = m.id.seq();
        let prepared = prepared(&m);
        for (seq, id) in &self.members {
            if *seq != from {
                id.send_prepared(&prepared);
            }
        }
    }
}

impl actix::Handler<MessageDisconnect> for Hub {
    type Result = ();
    fn handle(&mut self, m: MessageDisconnect, _: &mut Context<Self>) {
        self.members.remove(&m.id.seq());
    }
}
