//! `use actix::prelude::*;` and `use actix_meta_websocket::*;` together: every name this
//! crate exports is usable without a path, none is ambiguous with actix's.
#![allow(dead_code, unused_imports)]

use actix::prelude::*;
use actix_meta_websocket::client::{Backoff, DialFailed, Proxy, Reconnecting};
use actix_meta_websocket::*;

struct Worker;

impl Actor for Worker {
    type Context = Context<Self>;
}

impl Handler<MessageConnect> for Worker {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        m.id.send(Outgoing::text("hi"));
    }
}

impl Handler<WsMessage> for Worker {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        let (id, same) = m.into_parts();
        id.send(same);
    }
}

impl Handler<MessageDisconnect> for Worker {
    type Result = ();
    fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {}
}

/// Names every export; compiling is the test.
fn every_name(
    _: Option<(WsHandler, HandlerOptions, HandshakeError, Upgrade, OriginCheck)>,
    _: Option<(DialOptions, Proxy, Backoff, DialFailed, Reconnecting, Url)>,
    _: Option<(ConnectionSettings, ConfigError, ConnectError, WriteError, TrySendError)>,
    _: Option<(WsConnection, ConnectionId, Pool, Target, PreparedMessage, Stats)>,
    _: Option<(MessageConnect, WsMessage, Outgoing, MessageDisconnect, MessageKind, DisconnectReason)>,
    _: Option<(Initiator, DataTypeError, ParseError)>,
) {
    let _ = (connect, reconnect, record_local_addr);
}

#[actix::test]
async fn both_preludes_work_together() {
    let worker = Worker.start();
    let options = HandlerOptions::new(worker.clone());
    assert!(WsHandler::new(options).is_ok());
    let pool = Pool::from([worker.clone(), worker]);
    assert_eq!(pool.len(), 2);
}
