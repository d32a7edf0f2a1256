//! `WsConnection`: the actor that owns one WebSocket connection, accepted or dialled.

mod handover;
mod host;
mod outgoing;
mod pump;
mod tick;
pub(crate) mod transport;
mod write_queue;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::header::HeaderMap;
use bytes::BytesMut;
use tokio::sync::oneshot;

use crate::protocol::{
    parse_close_payload, CloseCode, DataKind, Decoder, DeflateParams, Encoder, Incoming, OpCode,
    ProtocolError, Role,
};
use crate::registry::Registry;
use crate::{
    ConnectData, ConnectionConfig, ConnectionId, DisconnectReason, Initiator, Message, MessageConnect,
    MessageDisconnect, MessageKind, SendError, Stats, Target,
};
use handover::Handover;
use host::Host;
use outgoing::Outgoing;
use transport::{BodyStream, Pipe, Transport};
use write_queue::{Outbound, Stall, StallWatch, Waiter, WriteQueue};

static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

/// The actor behind one WebSocket connection (Ergo's WebSocket Connection meta-process).
///
/// It is started by a [`Handler`](crate::Handler) for each accepted upgrade and by
/// [`connect`](crate::connect) for each dialled connection; users address it through its
/// [`ConnectionId`], which it reports in [`MessageConnect`].
///
/// It accepts [`Message`](crate::Message) (fire-and-forget writes) and, through
/// [`ConnectionId::send_wait`] and [`ConnectionId::stats`], awaitable writes and stats.
/// Its address is public for code that works with actix addresses directly:
///
/// ```no_run
/// # use actix_meta_websocket::{ConnectionId, GetStats, Message, SendMessage};
/// # async fn demo(id: ConnectionId) -> Result<(), actix::MailboxError> {
/// let addr = id.addr().clone(); // Addr<WsConnection>
/// addr.do_send(Message::text("the same as id.send"));
/// let written = addr.send(SendMessage(Message::text("the same as id.send_wait"))).await?;
/// let stats = addr.send(GetStats).await?;
/// # Ok(()) }
/// ```
pub struct WsConnection {
    seq: u64,
    id: ConnectionId,
    role: Role,
    transport: Pipe,
    decoder: Decoder,
    encoder: Encoder,
    read_buf: BytesMut,
    out: Outgoing,
    config: Arc<ConnectionConfig>,
    /// Boxed: needed only until `MessageConnect` goes out.
    connect_info: Option<Box<ConnectInfo>>,
    local_addr: Option<SocketAddr>,
    remote_addr: Option<SocketAddr>,
    protocol: Option<String>,
    compressed: bool,
    registry: Option<Registry>,
    /// Incoming messages on their way to the target.
    handover: Handover,
    /// What waits for the target to handle the messages before it (see `after_target`).
    deferred: Option<Deferred>,
    /// The pump poll that last saw a hand-over answered (see `run_deferred`).
    answered_at: u64,
    /// Polls of the pump so far.
    pump_polls: u64,
    close_sent: bool,
    close_received: bool,
    /// Close the transport as soon as the outgoing bytes are flushed.
    fail_fast: bool,
    /// The transport has been closed or failed; the actor is stopping.
    finished: bool,
    reason: Option<DisconnectReason>,
    /// Writes waiting for room in `out`.
    queue: WriteQueue,
    stall: StallWatch,
    /// Heartbeat and idle timeout; run by the pump.
    tick: Option<tick::Tick>,
    pump_waker: Option<Waker>,
    pump_wake_pending: bool,
    counters: Counters,
    last_activity: Instant,
    last_ping: Instant,
    span: tracing::Span,
}

/// Ends of the incoming stream that wait for the target (see `WsConnection::after_target`).
enum Deferred {
    /// A protocol error: fail the connection.
    Fail(ProtocolError),
    /// The peer's close: answer it with this code.
    CloseReply(CloseCode),
}

#[derive(Debug, Clone, Copy)]
struct Counters {
    started: Instant,
    bytes_in: u64,
    bytes_out: u64,
    messages_in: u64,
    messages_out: u64,
    message_bytes_in: u64,
    message_bytes_out: u64,
}

/// What the target learns in `MessageConnect`, besides addresses.
pub(crate) struct ConnectInfo {
    pub(crate) uri: String,
    pub(crate) headers: HeaderMap,
    pub(crate) data: Option<ConnectData>,
}

/// A copy of `headers` in a map sized to them, for `MessageConnect`. `HeaderMap::clone`
/// keeps the source's capacity, and actix-http reuses request heads, so a plain clone would
/// keep a pooled head's whole table alive for the life of the connection.
pub(crate) fn sized_copy(headers: &HeaderMap) -> HeaderMap {
    let mut copy = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        copy.append(name.clone(), value.clone());
    }
    copy
}

/// Everything needed to start a connection actor over an established transport.
pub(crate) struct Setup {
    pub(crate) role: Role,
    pub(crate) transport: Pipe,
    pub(crate) read_buf: BytesMut,
    pub(crate) target: Target,
    pub(crate) config: Arc<ConnectionConfig>,
    pub(crate) deflate: Option<DeflateParams>,
    pub(crate) protocol: Option<String>,
    pub(crate) local_addr: Option<SocketAddr>,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) info: ConnectInfo,
    pub(crate) registry: Option<Registry>,
}

impl WsConnection {
    /// Starts the actor on a task of its own (a dialled connection).
    pub(crate) fn start(setup: Setup) -> ConnectionId {
        let ctx = Context::new();
        let id = Self::new_id(&ctx, &setup);
        ctx.run(Self::new(setup, id.clone()));
        id
    }

    /// Starts the actor inside the HTTP task of an accepted upgrade, polled by its body.
    pub(crate) fn start_in_body(setup: Setup, body: &mut BodyStream) -> ConnectionId {
        let ctx = Context::new();
        let id = Self::new_id(&ctx, &setup);
        let actor = Self::new(setup, id.clone());
        body.host(Host::start(Box::pin(ctx.into_future(actor))));
        id
    }

    /// The connection's id. It joins the handler's registry here, before the upgrade is
    /// answered, so a shutdown that begins from now on reaches it: if one has begun already,
    /// the connection is told at once, and handles that first thing after starting.
    fn new_id(ctx: &Context<Self>, setup: &Setup) -> ConnectionId {
        let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
        let id = ConnectionId::new(seq, ctx.address(), setup.config.max_write_buffer);
        if let Some(registry) = &setup.registry {
            if !registry.join(id.clone()) {
                id.addr().do_send(Shutdown);
            }
        }
        id
    }

    /// `id` carries the actor's own address: made once, it serves every message, the
    /// registry and `MessageConnect` without a new actix sender each.
    fn new(setup: Setup, id: ConnectionId) -> Self {
        let seq = id.seq();
        let config = setup.config;
        let deflate = setup.deflate;
        let now = Instant::now();
        let span = tracing::info_span!("ws", id = seq, peer = ?setup.remote_addr);
        WsConnection {
            seq,
            id,
            role: setup.role,
            transport: setup.transport,
            decoder: Decoder::new(setup.role, config.limits, deflate.as_ref()),
            encoder: Encoder::new(
                setup.role,
                deflate.as_ref(),
                config.deflate.level,
                config.deflate.threshold,
            ),
            read_buf: setup.read_buf,
            out: Outgoing::default(),
            handover: Handover::new(setup.target),
            connect_info: Some(Box::new(setup.info)),
            local_addr: setup.local_addr,
            remote_addr: setup.remote_addr,
            protocol: setup.protocol,
            compressed: deflate.is_some(),
            registry: setup.registry,
            config,
            deferred: None,
            answered_at: 0,
            pump_polls: 0,
            close_sent: false,
            close_received: false,
            fail_fast: false,
            finished: false,
            reason: None,
            queue: WriteQueue::default(),
            stall: StallWatch::default(),
            tick: None,
            pump_waker: None,
            pump_wake_pending: false,
            counters: Counters {
                started: now,
                bytes_in: 0,
                bytes_out: 0,
                messages_in: 0,
                messages_out: 0,
                message_bytes_in: 0,
                message_bytes_out: 0,
            },
            last_activity: now,
            last_ping: now,
            span,
        }
    }

    /// Asks for the pump to run. One request stands until the pump runs, so a burst of
    /// writes costs one wake-up, not one per message.
    fn wake(&mut self) {
        if self.pump_wake_pending {
            return;
        }
        if let Some(w) = &self.pump_waker {
            w.wake_by_ref();
            self.pump_wake_pending = true;
        }
    }

    /// For message handlers: actix polls an actor's spawned futures (the pump among them)
    /// right after its mailbox, so a write made here needs no wake-up, which would only
    /// cost another round of polling.
    fn pump_runs_next(&mut self) {
        self.pump_wake_pending = true;
    }

    fn set_reason(&mut self, reason: DisconnectReason) {
        if self.reason.is_none() {
            self.reason = Some(reason);
        }
    }

    /// The outgoing-buffer policy for writes nobody awaits: dropped once closing; written
    /// while the buffer has room and nothing waits before them; otherwise queued in order
    /// for the peer to read, like `send_wait`. A queue past `max_write_queue` bytes means
    /// the producer outpaces the peer for good: the peer is closed as a slow consumer.
    fn write_unawaited(&mut self, item: Outbound, ctx: &mut Context<Self>) {
        if self.close_sent {
            tracing::trace!(parent: &self.span, "message for a closing connection dropped");
            return;
        }
        if !self.must_wait(&item) {
            if let Err(e) = self.write_outbound(item, ctx) {
                tracing::warn!(parent: &self.span, error = %e, "outgoing message refused");
            }
            return;
        }
        if self.queue.would_overflow(item.len(), self.config.max_write_queue) {
            tracing::debug!(parent: &self.span, queued = self.queue.bytes(), "write queue over its bound");
            self.slow_consumer(ctx);
            return;
        }
        self.enqueue(Waiter { item, tx: None }, ctx);
    }

    /// Whether a write has to queue behind earlier ones or for room. Pings and pongs never
    /// wait (they are small and may go between anything); a close waits for the writes
    /// before it, so they are not lost; data also waits for room.
    fn must_wait(&self, item: &Outbound) -> bool {
        match item {
            Outbound::Message(m) if matches!(m.kind, MessageKind::Ping | MessageKind::Pong) => false,
            Outbound::Message(m) if m.kind == MessageKind::Close => !self.queue.is_empty(),
            _ => !self.queue.is_empty() || !self.has_room(),
        }
    }

    fn enqueue(&mut self, waiter: Waiter, ctx: &mut Context<Self>) {
        self.queue.push(waiter);
        self.watch_stall(ctx);
    }

    /// Bytes the peer has taken: written to the socket, or taken by actix-web's dispatcher.
    fn bytes_taken(&self) -> u64 {
        self.counters.bytes_out - self.transport.buffered() as u64
    }

    /// Bytes wait for the peer to take them.
    fn bytes_waiting(&self) -> bool {
        !self.out.is_empty() || !self.queue.is_empty() || self.transport.buffered() > 0
    }

    /// Starts watching for a peer that takes nothing while bytes wait for it; called when
    /// a write is refused for room. Costs nothing while nothing waits.
    fn watch_stall(&mut self, ctx: &mut Context<Self>) {
        let timeout = self.config.write_timeout;
        if let Some(first) = self.stall.arm(self.bytes_taken(), Instant::now(), timeout) {
            ctx.run_later(first, |act, ctx| act.check_stall(ctx));
        }
    }

    fn check_stall(&mut self, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        let timeout = self.config.write_timeout;
        match self.stall.check(self.bytes_taken(), self.bytes_waiting(), Instant::now(), timeout) {
            Stall::Clear => {}
            Stall::Stuck => self.slow_consumer(ctx),
            Stall::Recheck(after) => {
                ctx.run_later(after, |act, ctx| act.check_stall(ctx));
            }
        }
    }

    /// Tells writers how far behind the peer is, for [`ConnectionId::try_send`].
    fn publish_backlog(&self) {
        let backlog = self.out.len() + self.transport.buffered() + self.queue.bytes();
        self.id.set_backlog(backlog);
    }

    fn fragment_size(&self) -> usize {
        self.config.fragment_size.unwrap_or(usize::MAX)
    }

    fn has_room(&self) -> bool {
        self.out.len() + self.transport.buffered() < self.config.max_write_buffer
    }

    /// Whether the pump may read and decode: the target has `MessageConnect` and room in
    /// its window, no end of the stream waits for it, the peer has not closed, we are not
    /// failing, and the outgoing buffer has room (pongs to a ping flood would pile up).
    fn may_read(&self) -> bool {
        self.handover.is_connected()
            && self.deferred.is_none()
            && !self.fail_fast
            && !self.close_received
            && self.handover.has_room(&self.config)
            && self.has_room()
    }

    /// Starts the closing handshake from this side.
    fn start_close(
        &mut self,
        code: CloseCode,
        reason_text: &str,
        reason: DisconnectReason,
        ctx: &mut Context<Self>,
    ) {
        self.set_reason(reason);
        if self.close_sent {
            return;
        }
        let close = if code == CloseCode::NO_STATUS { None } else { Some((code, reason_text)) };
        if self.encoder.encode_close(close, &mut self.out.open).is_err() {
            // Only a code that may not be sent gets here; send a bare close instead.
            let _ = self.encoder.encode_close(None, &mut self.out.open);
        }
        self.close_sent = true;
        self.id.mark_closing();
        self.fail_waiters();
        self.arm_close_timer(ctx);
        self.wake();
    }

    /// After our close frame, the peer has `close_timeout` to complete the handshake (or,
    /// when we answered its close, to let the server drop TCP); then TCP is dropped anyway
    /// (RFC 6455 7.1.1 lets the client close when the server does not).
    fn arm_close_timer(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(self.config.close_timeout, |act, ctx| {
            if !act.finished {
                tracing::debug!(parent: &act.span, "closing handshake timed out");
                act.set_reason(DisconnectReason::CloseTimeout);
                act.fail_fast = true;
                act.finished = true;
                ctx.stop();
            }
        });
    }

    /// Fails the connection: close frame with the error's code, then drop the transport.
    fn fail(&mut self, error: ProtocolError, ctx: &mut Context<Self>) {
        let code = error.close_code();
        tracing::debug!(parent: &self.span, %error, %code, "protocol error");
        let text = error.to_string();
        self.start_close(code, &text, DisconnectReason::Protocol { code, error }, ctx);
        self.fail_fast = true;
    }

    fn slow_consumer(&mut self, ctx: &mut Context<Self>) {
        tracing::debug!(parent: &self.span, buffered = self.out.len(), queued = self.queue.bytes(), "slow consumer");
        self.start_close(CloseCode::POLICY_VIOLATION, "slow consumer", DisconnectReason::SlowConsumer, ctx);
        // The peer is not reading, so waiting for its close would only hold memory.
        self.fail_fast = true;
    }

    fn target_gone(&mut self, ctx: &mut Context<Self>) {
        tracing::info!(parent: &self.span, "target actor gone, closing with 1011");
        self.start_close(CloseCode::INTERNAL_ERROR, "target gone", DisconnectReason::TargetGone, ctx);
    }

    fn fail_waiters(&mut self) {
        let error = match self.reason {
            Some(DisconnectReason::SlowConsumer) => SendError::SlowConsumer,
            _ => SendError::Closed,
        };
        let dropped = self.queue.fail_all(&error);
        if dropped > 0 {
            tracing::debug!(parent: &self.span, dropped, "queued messages dropped by the close");
        }
    }

    /// Moves waiting writes into the outgoing buffer, in order, while there is room.
    fn release_waiters(&mut self, ctx: &mut Context<Self>) {
        while self.has_room() && !self.close_sent {
            let Some(w) = self.queue.pop() else { break };
            let r = self.write_outbound(w.item, ctx);
            match w.tx {
                Some(tx) => {
                    let _ = tx.send(r);
                }
                None => {
                    if let Err(e) = r {
                        tracing::warn!(parent: &self.span, error = %e, "outgoing message refused");
                    }
                }
            }
        }
    }

    fn write_outbound(&mut self, item: Outbound, ctx: &mut Context<Self>) -> Result<(), SendError> {
        match item {
            Outbound::Message(m) => self.write_message(m, ctx),
            Outbound::Prepared(p) => {
                let shared_frame_fits = self.role == Role::Server
                    && !self.encoder.compresses()
                    && self.config.fragment_size.is_none();
                if !shared_frame_fits {
                    return self.write_message(p.to_message(), ctx);
                }
                if self.close_sent {
                    return Err(SendError::Closed);
                }
                self.out.push_shared(p.server_frame().clone());
                self.count_out(p.body().len());
                self.wake();
                Ok(())
            }
        }
    }

    fn count_out(&mut self, payload: usize) {
        self.counters.messages_out += 1;
        self.counters.message_bytes_out += payload as u64;
    }

    /// Encodes one outgoing message; `Err` only for messages that cannot be sent.
    fn write_message(&mut self, msg: Message, ctx: &mut Context<Self>) -> Result<(), SendError> {
        if self.close_sent {
            return Err(SendError::Closed);
        }
        match msg.kind {
            MessageKind::Text => {
                if simdutf8::basic::from_utf8(&msg.body).is_err() {
                    return Err(SendError::Invalid("text message is not UTF-8".into()));
                }
                self.write_data(DataKind::Text, &msg.body)?;
            }
            MessageKind::Binary => self.write_data(DataKind::Binary, &msg.body)?,
            MessageKind::Ping => self.encoder.encode_control(OpCode::Ping, &msg.body, &mut self.out.open)?,
            MessageKind::Pong => self.encoder.encode_control(OpCode::Pong, &msg.body, &mut self.out.open)?,
            MessageKind::Close => {
                let (code, text) = match parse_close_payload(&msg.body) {
                    Ok(Some(f)) => (f.code, f.reason),
                    Ok(None) => (CloseCode::NO_STATUS, String::new()),
                    Err(e) => return Err(SendError::Invalid(format!("close payload: {e}"))),
                };
                let reason =
                    DisconnectReason::Closed { initiator: Initiator::Local, code, reason: text.clone() };
                self.start_close(code, &text, reason, ctx);
                return Ok(());
            }
        }
        self.count_out(msg.body.len());
        self.wake();
        Ok(())
    }

    fn write_data(&mut self, kind: DataKind, body: &[u8]) -> Result<(), SendError> {
        // Copied into the open buffer rather than queued as shared `Bytes`: sharing keeps
        // the read buffer's allocation alive until the HTTP layer copies it out, so every
        // read would allocate afresh.
        let size = self.fragment_size();
        self.encoder.encode_message_fragmented(kind, body, size, &mut self.out.open)?;
        Ok(())
    }

    fn on_incoming(&mut self, incoming: Incoming, ctx: &mut Context<Self>) {
        match incoming {
            Incoming::Text(body) => self.deliver(MessageKind::Text, body),
            Incoming::Binary(body) => self.deliver(MessageKind::Binary, body),
            Incoming::Ping(body) => {
                if !self.close_sent {
                    let _ = self.encoder.encode_control(OpCode::Pong, &body, &mut self.out.open);
                }
            }
            Incoming::Pong(_) => {}
            Incoming::Close(frame) => {
                self.close_received = true;
                let (code, text) =
                    frame.map_or((CloseCode::NO_STATUS, String::new()), |f| (f.code, f.reason));
                tracing::debug!(parent: &self.span, %code, reason = %text, "close received");
                if !self.close_sent {
                    self.set_reason(DisconnectReason::Closed {
                        initiator: Initiator::Peer,
                        code,
                        reason: text,
                    });
                    self.after_target(Deferred::CloseReply(code), ctx);
                }
            }
        }
    }

    /// Runs `action` once the target has handled every message handed to it, so that
    /// what it writes in answer to them goes out before the close. Meanwhile nothing
    /// more is read.
    ///
    /// A target that takes longer than `close_timeout` is not waited for any more. With
    /// nothing in flight there is nothing to wait for, and no timer to pay for.
    fn after_target(&mut self, action: Deferred, ctx: &mut Context<Self>) {
        self.deferred = Some(action);
        if self.handover.in_flight() == 0 {
            return;
        }
        ctx.run_later(self.config.close_timeout, |act, ctx| {
            if let Some(d) = act.deferred.take() {
                tracing::debug!(parent: &act.span, "target still busy at the close timeout; closing");
                act.perform(d, ctx);
                act.wake();
            }
        });
    }

    /// Called by the pump: runs the deferred action when its time has come. The last
    /// answer is seen in the pump, but a reply the target wrote before answering may sit
    /// in this actor's mailbox, which actix drains before the pump only on the next poll;
    /// so an answer seen in this very poll makes the action wait for the next one.
    fn run_deferred(&mut self, ctx: &mut Context<Self>, task: &std::task::Context<'_>) -> bool {
        if self.deferred.is_none() || !self.handover.is_drained() {
            return false;
        }
        if self.answered_at == self.pump_polls {
            task.waker().wake_by_ref();
            return false;
        }
        match self.deferred.take() {
            Some(d) => {
                self.perform(d, ctx);
                true
            }
            None => false,
        }
    }

    fn perform(&mut self, action: Deferred, ctx: &mut Context<Self>) {
        match action {
            Deferred::Fail(e) => self.fail(e, ctx),
            Deferred::CloseReply(code) => {
                if !self.close_sent {
                    // Echo the peer's code (RFC 6455 5.5.1); a bare close is echoed bare.
                    let echo = (code != CloseCode::NO_STATUS).then_some((code, ""));
                    let _ = self.encoder.encode_close(echo, &mut self.out.open);
                    self.close_sent = true;
                    self.id.mark_closing();
                    self.fail_waiters();
                    self.arm_close_timer(ctx);
                }
            }
        }
    }

    /// Hands a decoded message to the target. Every decoded message goes, whatever ends
    /// the connection afterwards; only a target that is gone does not get it.
    fn deliver(&mut self, kind: MessageKind, body: bytes::Bytes) {
        self.counters.messages_in += 1;
        self.counters.message_bytes_in += body.len() as u64;
        let msg = Message { id: Some(self.id.clone()), kind, body };
        if self.handover.push(msg, &self.config) {
            self.hand_over_held();
        }
    }

    /// Hands the held message over as the batch's fence (see `Handover`).
    fn hand_over_held(&mut self) {
        if self.handover.hand_over_held(self.pump_waker.as_ref()) {
            // Refused for good (the target is gone): the pump must look again.
            self.wake();
        }
    }

    /// Moves the window on for every answered hand-over; polled once per pump poll, since
    /// answers come from other actors, which wake this task.
    fn poll_answers(&mut self, ctx: &mut Context<Self>, task: &mut std::task::Context<'_>) {
        let answers = self.handover.poll_answers(task);
        if answers.any {
            self.last_activity = Instant::now();
            self.answered_at = self.pump_polls;
        }
        if answers.target_gone {
            self.target_gone(ctx);
        }
    }

    fn on_tick(&mut self, ctx: &mut Context<Self>) {
        if self.close_sent {
            return;
        }
        if !self.handover.is_connected() {
            self.check_connect_timeout(ctx);
            return;
        }
        if self.handover.in_flight() > 0 {
            return;
        }
        // A connection gone quiet gives back its spare request box and what a burst or a
        // large message left in its buffers.
        self.handover.release_spare();
        self.release_buffers();
        let idle = self.last_activity.elapsed();
        if let Some(limit) = self.config.idle_timeout {
            if idle >= limit {
                tracing::debug!(parent: &self.span, ?idle, "idle timeout");
                self.start_close(CloseCode::GOING_AWAY, "idle timeout", DisconnectReason::IdleTimeout, ctx);
                return;
            }
        }
        if let Some(every) = self.config.heartbeat {
            if idle >= every && self.last_ping.elapsed() >= every {
                self.last_ping = Instant::now();
                let _ = self.encoder.encode_control(OpCode::Ping, b"", &mut self.out.open);
                self.wake();
            }
        }
    }

    /// A target that has not handled `MessageConnect` within the idle timeout will not:
    /// the connection, which cannot read meanwhile, closes with 1011.
    fn check_connect_timeout(&mut self, ctx: &mut Context<Self>) {
        let Some(limit) = self.config.idle_timeout else { return };
        if self.counters.started.elapsed() >= limit {
            tracing::warn!(parent: &self.span, "target did not handle MessageConnect in time");
            let text = "target did not answer";
            self.start_close(CloseCode::INTERNAL_ERROR, text, DisconnectReason::TargetTimeout, ctx);
        }
    }

    /// Drops the buffers that hold nothing. A buffer keeps the capacity of the largest
    /// message it carried, and the encode buffer keeps a shared allocation alive even at
    /// zero capacity, so without this a connection that once carried a 1 MiB message would
    /// hold megabytes for the rest of its life.
    fn release_buffers(&mut self) {
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
        if self.out.is_empty() {
            self.out = Outgoing::default();
        }
        self.queue.release();
        self.encoder.release_scratch();
    }

    fn tick_interval(&self) -> Option<Duration> {
        let t = match (self.config.heartbeat, self.config.idle_timeout) {
            (None, None) => return None,
            (Some(h), None) => h,
            (None, Some(i)) => i / 4,
            (Some(h), Some(i)) => h.min(i / 4),
        };
        Some(t.max(Duration::from_millis(5)))
    }
}

impl Actor for WsConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let info = self.connect_info.take().map_or_else(
            || ConnectInfo { uri: String::new(), headers: HeaderMap::new(), data: None },
            |info| *info,
        );
        tracing::info!(parent: &self.span, uri = %info.uri, protocol = ?self.protocol, compressed = self.compressed, "connected");
        let connect = MessageConnect {
            id: self.id.clone(),
            remote_addr: self.remote_addr,
            local_addr: self.local_addr,
            uri: info.uri,
            headers: info.headers,
            protocol: self.protocol.clone(),
            compressed: self.compressed,
            data: info.data,
        };
        // The pump is not polled yet: the answer, if awaited, is polled on its first poll.
        if !self.handover.connect(connect, None) {
            self.target_gone(ctx);
        }
        ctx.spawn(pump::Pump);
        self.tick = self.tick_interval().map(tick::Tick::new);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.finished = true;
        self.fail_waiters();
        if let Some(reg) = &self.registry {
            reg.remove(self.seq);
        }
        self.id.mark_closing();
        self.id.set_backlog(0);
        let reason =
            self.reason.take().unwrap_or_else(|| DisconnectReason::ConnectionLost("actor stopped".into()));
        tracing::info!(parent: &self.span, %reason, bytes_in = self.counters.bytes_in, bytes_out = self.counters.bytes_out, "disconnected");
        self.handover.finish(MessageDisconnect { id: self.id.clone(), reason });
    }
}

impl Handler<Message> for WsConnection {
    type Result = ();

    fn handle(&mut self, msg: Message, ctx: &mut Self::Context) {
        self.pump_runs_next();
        self.write_unawaited(Outbound::Message(msg), ctx);
    }
}

/// An awaitable write (see [`ConnectionId::send_wait`]).
#[derive(Debug, actix::Message)]
#[rtype(result = "Result<(), SendError>")]
pub struct SendMessage(pub Message);

impl Handler<SendMessage> for WsConnection {
    type Result = ResponseFuture<Result<(), SendError>>;

    fn handle(&mut self, SendMessage(msg): SendMessage, ctx: &mut Self::Context) -> Self::Result {
        self.pump_runs_next();
        if self.close_sent {
            return Box::pin(std::future::ready(Err(SendError::Closed)));
        }
        let item = Outbound::Message(msg);
        if !self.must_wait(&item) {
            let r = self.write_outbound(item, ctx);
            return Box::pin(std::future::ready(r));
        }
        let (tx, rx) = oneshot::channel();
        self.enqueue(Waiter { item, tx: Some(tx) }, ctx);
        // Answered when written, or when the connection closes (a stuck peer is closed by
        // the stall watch within 1.25 write timeouts).
        Box::pin(async move { rx.await.unwrap_or(Err(SendError::Closed)) })
    }
}

/// Writes a [`PreparedMessage`](crate::PreparedMessage) (see [`ConnectionId::send_prepared`]).
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct SendPrepared(pub crate::PreparedMessage);

impl Handler<SendPrepared> for WsConnection {
    type Result = ();

    fn handle(&mut self, SendPrepared(msg): SendPrepared, ctx: &mut Self::Context) {
        self.pump_runs_next();
        self.write_unawaited(Outbound::Prepared(msg), ctx);
    }
}

/// Asks a connection for its [`Stats`] (see [`ConnectionId::stats`]).
#[derive(Debug, actix::Message)]
#[rtype(result = "Stats")]
pub struct GetStats;

impl Handler<GetStats> for WsConnection {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(Stats {
            local_addr: self.local_addr,
            remote_addr: self.remote_addr,
            role: self.role,
            protocol: self.protocol.clone(),
            compressed: self.compressed,
            bytes_in: self.counters.bytes_in,
            bytes_out: self.counters.bytes_out,
            messages_in: self.counters.messages_in,
            messages_out: self.counters.messages_out,
            message_bytes_in: self.counters.message_bytes_in,
            message_bytes_out: self.counters.message_bytes_out,
            buffered_out: self.out.len() + self.transport.buffered(),
            queued_out: self.queue.bytes(),
            buffered_in: self.read_buf.len(),
            age: self.counters.started.elapsed(),
        })
    }
}

/// Closes the connection with 1001 Going Away (sent by a handler's shutdown).
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

impl Handler<Shutdown> for WsConnection {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        self.start_close(CloseCode::GOING_AWAY, "server shutting down", DisconnectReason::Shutdown, ctx);
    }
}

#[cfg(test)]
mod tests {
    use actix_http::header::{HeaderName, HeaderValue};

    use super::*;

    #[test]
    fn header_copies_are_sized_to_their_content() {
        // A pooled request head keeps the capacity of the largest request it ever held.
        let mut pooled = HeaderMap::with_capacity(200);
        let tag = HeaderName::from_static("x-tag");
        pooled.append(tag.clone(), HeaderValue::from_static("one"));
        pooled.append(tag.clone(), HeaderValue::from_static("two"));
        pooled.insert(HeaderName::from_static("host"), HeaderValue::from_static("example"));
        assert!(pooled.clone().capacity() >= 200, "a plain clone keeps the capacity");

        let copy = sized_copy(&pooled);
        assert!(copy.capacity() < 16, "capacity {}", copy.capacity());
        let tags: Vec<_> = copy.get_all(&tag).collect();
        assert_eq!(tags, ["one", "two"]);
        assert_eq!(copy.get("host").map(|v| v.as_bytes()), Some(&b"example"[..]));
        assert_eq!(copy.len(), pooled.len());
    }
}
