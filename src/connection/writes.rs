//! The actor's write path: a write (from its queue, written by id; or from its mailbox)
//! is encoded into the write buffer, queued while the buffer is over its bound, or
//! refused; queued writes follow as the peer makes room; a peer that takes nothing while bytes wait is watched and, past the write
//! timeout, closed as a slow consumer.

use std::time::Instant;

use actix::prelude::*;

use super::write_queue::{Admission, Answer, Outbound, Stall, Waiter};
use super::WsConnection;
use crate::delivery::Pending;
use crate::error::WriteError;
use crate::message::{DisconnectReason, Initiator, MessageKind};
use crate::protocol::{CloseCode, DataKind, FrameKey, OpCode};

impl WsConnection {
    /// Takes a write: encoded now, queued for room, or refused. An awaited write is
    /// answered through its waiter; a fire-and-forget one is dropped once closing, and past
    /// the queue's bound the peer is a slow consumer.
    pub(super) fn submit(&mut self, item: Outbound, tx: Option<Answer>, ctx: &mut Context<Self>) {
        if self.session.handshake().close_sent() {
            match tx {
                Some(tx) => {
                    let _ = tx.send(Err(WriteError::Closed));
                }
                None => tracing::trace!(parent: &self.span, "message for a closing connection dropped"),
            }
            return;
        }
        match self.queue.admit(&item, tx.is_some(), self.has_room(), self.config.max_write_queue) {
            Admission::Write => {
                let result = self.write(&item, ctx);
                self.answer_write(tx, result);
            }
            Admission::Queue => {
                self.queue.push(Waiter { item, tx });
                self.watch_stall(ctx);
            }
            Admission::Overflow => {
                tracing::debug!(parent: &self.span, queued = self.queue.bytes(), "write queue over its bound");
                self.slow_consumer(ctx);
            }
        }
    }

    /// Takes in, in order, the broadcasts this thread's inbox handed the connection and the
    /// writes made through its id since its last turn.
    pub(super) fn take_pending(&mut self, ctx: &mut Context<Self>) {
        let mut taken = std::mem::take(&mut self.io.taken);
        self.id.subscriber().take(&mut taken);
        if !taken.is_empty() {
            // Called from the I/O loop, whose loop flushes next: no wake-up needed.
            self.io.runs_next();
        }
        for item in taken.drain(..) {
            match item {
                Pending::Prepared(msg) => self.submit(Outbound::Prepared(msg), None, ctx),
                Pending::Message(msg, tx) => self.submit(Outbound::Message(msg), tx, ctx),
            }
        }
        self.io.taken = taken;
    }

    /// Answers an awaited write, or logs a refusal nobody awaits.
    fn answer_write(&self, tx: Option<Answer>, result: Result<(), WriteError>) {
        match tx {
            Some(tx) => {
                let _ = tx.send(result);
            }
            None => {
                if let Err(e) = result {
                    tracing::warn!(parent: &self.span, error = %e, "outgoing message refused");
                }
            }
        }
    }

    /// Moves queued writes into the outgoing buffer, in order, while there is room.
    pub(super) fn release_waiters(&mut self, ctx: &mut Context<Self>) {
        while self.has_room() && !self.session.handshake().close_sent() {
            let Some(w) = self.queue.pop() else { break };
            let result = self.write(&w.item, ctx);
            self.answer_write(w.tx, result);
        }
    }

    /// Starts watching for a peer that takes nothing while bytes wait for it; called when
    /// a write is refused for room. Costs nothing while nothing waits.
    pub(super) fn watch_stall(&mut self, ctx: &mut Context<Self>) {
        let timeout = self.config.write_timeout;
        if let Some(first) = self.queue.stall.arm(self.wire.bytes_taken(), Instant::now(), timeout) {
            ctx.run_later(first, |act, ctx| act.check_stall(ctx));
        }
    }

    fn check_stall(&mut self, ctx: &mut Context<Self>) {
        if self.session.handshake().is_done() {
            return;
        }
        let waiting = !self.wire.is_flushed() || self.wire.pending_out() > 0 || !self.queue.is_empty();
        let timeout = self.config.write_timeout;
        match self.queue.stall.check(self.wire.bytes_taken(), waiting, Instant::now(), timeout) {
            Stall::Clear => {}
            Stall::Stuck => self.slow_consumer(ctx),
            Stall::Recheck(after) => {
                ctx.run_later(after, |act, ctx| act.check_stall(ctx));
            }
        }
    }

    /// Tells writers how far behind the peer is, for [`ConnectionId::try_send`].
    pub(super) fn publish_backlog(&self) {
        self.id.set_backlog(self.wire.pending_out() + self.queue.bytes());
    }

    /// Encodes one outgoing message; `Err` only for messages that cannot be sent.
    /// Callers check that our close frame is not out yet.
    fn write(&mut self, item: &Outbound, ctx: &mut Context<Self>) -> Result<(), WriteError> {
        let converted;
        let msg = match item {
            Outbound::Message(m) => m,
            Outbound::Prepared(p) => match self.shared_frame_key() {
                Some(key) => {
                    self.wire.push_frame(p.frame(key));
                    self.count_out(p.body().len());
                    return Ok(());
                }
                None => {
                    converted = p.to_outgoing();
                    &converted
                }
            },
        };
        match msg.kind {
            MessageKind::Text => {
                if simdutf8::basic::from_utf8(&msg.body).is_err() {
                    return Err(WriteError::Invalid("text message is not UTF-8".into()));
                }
                self.wire.encode_data(DataKind::Text, &msg.body, self.fragment_size())?;
            }
            MessageKind::Binary => {
                self.wire.encode_data(DataKind::Binary, &msg.body, self.fragment_size())?
            }
            MessageKind::Ping => self.wire.encode_control(OpCode::Ping, &msg.body)?,
            MessageKind::Pong => self.wire.encode_control(OpCode::Pong, &msg.body)?,
            MessageKind::Close => return self.write_close(&msg.body, ctx),
        }
        self.count_out(msg.body.len());
        Ok(())
    }

    /// A `Close` message from a writer: the closing handshake with its code and reason.
    fn write_close(&mut self, payload: &[u8], ctx: &mut Context<Self>) -> Result<(), WriteError> {
        let (code, text) = match crate::protocol::parse_close_payload(payload) {
            Ok(Some(f)) => (f.code, f.reason),
            Ok(None) => (CloseCode::NO_STATUS, String::new()),
            Err(e) => return Err(WriteError::Invalid(format!("close payload: {e}"))),
        };
        let reason = DisconnectReason::Closed { initiator: Initiator::Local, code, reason: text.clone() };
        let action = self.session.close(code, &text, reason);
        self.carry_out(action, ctx);
        Ok(())
    }

    /// Which of a broadcast's shared frames fits this connection as is, if any.
    fn shared_frame_key(&self) -> Option<FrameKey> {
        self.wire.frame_key().filter(|_| self.config.fragment_size.is_none())
    }

    fn count_out(&mut self, payload: usize) {
        self.details.messages.sent(payload);
        self.wake();
    }

    fn fragment_size(&self) -> usize {
        self.config.fragment_size.unwrap_or(usize::MAX)
    }
}
