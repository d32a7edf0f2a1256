//! The echo worker shared by the benchmark and conformance servers: every message goes
//! back to its connection unchanged (body and kind).

use actix::prelude::*;
use actix_meta_websocket::{Message, MessageConnect, MessageDisconnect};

/// Writes every message back to the connection it came from.
pub struct Echo;

impl Actor for Echo {
    type Context = Context<Self>;
}

impl actix::Handler<MessageConnect> for Echo {
    type Result = ();
    fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {}
}

impl actix::Handler<Message> for Echo {
    type Result = ();
    fn handle(&mut self, m: Message, _: &mut Context<Self>) {
        let Message { id, kind, body } = m;
        if let Some(id) = id {
            id.send(Message { id: None, kind, body });
        }
    }
}

impl actix::Handler<MessageDisconnect> for Echo {
    type Result = ();
    fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {}
}
