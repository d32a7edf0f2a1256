//! The fan-out worker of the benchmark server: every message is broadcast, as one
//! `PreparedMessage`, to every other connection.

use std::collections::HashMap;

use actix::prelude::*;
use actix_meta_websocket::{ConnectionId, MessageConnect, MessageDisconnect, PreparedMessage, WsMessage};

/// Knows every connection; broadcasts what any of them sends to all the others.
#[derive(Default)]
pub struct Fanout {
    members: HashMap<u64, ConnectionId>,
}

impl Actor for Fanout {
    type Context = Context<Self>;
}

impl actix::Handler<MessageConnect> for Fanout {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        self.members.insert(m.id.seq(), m.id);
    }
}

impl actix::Handler<WsMessage> for Fanout {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        let from = m.id.seq();
        let prepared = match m.as_text() {
            Some(text) => PreparedMessage::text(text),
            None => PreparedMessage::binary(m.body.clone()),
        };
        for (seq, id) in &self.members {
            if *seq != from {
                id.send_prepared(&prepared);
            }
        }
    }
}

impl actix::Handler<MessageDisconnect> for Fanout {
    type Result = ();
    fn handle(&mut self, m: MessageDisconnect, _: &mut Context<Self>) {
        self.members.remove(&m.id.seq());
    }
}
