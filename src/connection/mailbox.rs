//! What a connection accepts in its mailbox: `Outgoing` from code that holds its actix
//! address, a request for its stats, and the handler's shutdown. (Writes through a
//! `ConnectionId` skip the mailbox: they go to the connection's own queue.)

use actix::prelude::*;

use super::write_queue::Outbound;
use super::WsConnection;
use crate::message::Outgoing;
use crate::stats::{Buffers, Stats, Traffic};

impl Handler<Outgoing> for WsConnection {
    type Result = ();

    fn handle(&mut self, msg: Outgoing, ctx: &mut Self::Context) {
        self.io.runs_next();
        self.submit(Outbound::Message(msg), None, ctx);
    }
}

/// Asks a connection for its [`Stats`] (see [`ConnectionId::stats`](crate::ConnectionId::stats)).
#[derive(Debug, actix::Message)]
#[rtype(result = "Stats")]
pub(crate) struct GetStats;

impl Handler<GetStats> for WsConnection {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, ctx: &mut Self::Context) -> Self::Result {
        // Writes by id made before the request sit in the connection's own queue, which the
        // I/O loop takes in only after the mailbox: taken now, they count.
        self.take_pending(ctx);
        let d = &self.details;
        MessageResult(Stats {
            local_addr: d.local_addr,
            remote_addr: d.remote_addr,
            role: self.wire.role(),
            protocol: d.protocol.clone(),
            compressed: d.compressed,
            traffic: Traffic {
                bytes_in: self.wire.bytes_in(),
                bytes_out: self.wire.bytes_out(),
                messages_in: d.messages.messages_in,
                messages_out: d.messages.messages_out,
                message_bytes_in: d.messages.bytes_in,
                message_bytes_out: d.messages.bytes_out,
            },
            buffers: Buffers {
                outgoing: self.wire.pending_out(),
                queued: self.queue.bytes(),
                incoming: self.wire.buffered_in(),
            },
            age: d.started.elapsed(),
        })
    }
}

impl WsConnection {
    /// Tells the metrics recorder what its traffic added since the last time (and, at
    /// the `end`, that nothing waits any more); nothing without the feature.
    #[inline]
    pub(super) fn report_traffic(&mut self, end: bool) {
        #[cfg(feature = "metrics")]
        {
            let m = &self.details.messages;
            let waiting = if end { 0 } else { self.wire.pending_out() + self.queue.bytes() };
            let flow = crate::telemetry::Flow {
                messages_in: m.messages_in,
                messages_out: m.messages_out,
                payload_in: m.bytes_in,
                payload_out: m.bytes_out,
                wire_in: self.wire.bytes_in(),
                wire_out: self.wire.bytes_out(),
                waiting: waiting as u64,
            };
            self.details.reported.report(self.wire.role(), flow);
        }
        let _ = end;
    }
}

/// Closes the connection with 1001 Going Away (sent by a handler's shutdown).
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

impl Handler<Shutdown> for WsConnection {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        let action = self.session.shutdown();
        self.carry_out(action, ctx);
    }
}
