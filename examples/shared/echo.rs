//! The echo worker shared by the benchmark and conformance servers: every message goes
//! back to its connection unchanged (body and kind).

use actix::prelude::*;
use actix_meta_websocket::{MessageConnect, MessageDisconnect, WsMessage};

/// Writes every message back to the connection it came from.
pub struct Echo;

impl Actor for Echo {
    type Context = Context<Self>;
}

impl actix::Handler<MessageConnect> for Echo {
    type Result = ();
    fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {}
}

impl actix::Handler<WsMessage> for Echo {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        let (id, same) = m.into_parts();
        id.send(same);
    }
}

impl actix::Handler<MessageDisconnect> for Echo {
    type Result = ();
    fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {}
}
