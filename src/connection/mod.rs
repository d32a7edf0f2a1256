//! `WsConnection`: the actor that owns one WebSocket connection, accepted or dialled.

mod host;
mod outgoing;
mod pump;
mod tick;
pub(crate) mod transport;

use std::collections::VecDeque;
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
use host::Host;
use outgoing::Outgoing;
use transport::{BodyStream, Pipe, Transport};

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
    target: Target,
    config: Arc<ConnectionConfig>,
    /// Boxed: needed only until `MessageConnect` goes out.
    connect_info: Option<Box<ConnectInfo>>,
    local_addr: Option<SocketAddr>,
    remote_addr: Option<SocketAddr>,
    protocol: Option<String>,
    compressed: bool,
    registry: Option<Registry>,
    /// `MessageConnect` is with the target (first in its mailbox, or handled): reading
    /// may start.
    open: bool,
    /// Incoming messages handed to the target, and how far it has handled them.
    window: Window,
    /// The latest decoded message, not yet handed over: it goes last in its batch, as the
    /// one whose handling the connection awaits (see `Window`).
    held: Option<Message>,
    /// Hand-overs whose handling is awaited, oldest first.
    fences: VecDeque<Fence>,
    /// The box of the last answered hand-over, for the next one: at one hand-over in flight
    /// (the usual case), no allocation per hand-over.
    spare_request: Option<RequestBox>,
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
    waiters: VecDeque<Waiter>,
    /// Payload bytes of the fire-and-forget writes in `waiters`.
    waiting_bytes: usize,
    /// A timer watches the oldest waiter.
    stall_timer: bool,
    /// Heartbeat and idle timeout; run by the pump.
    tick: Option<tick::Tick>,
    pump_waker: Option<Waker>,
    pump_wake_pending: bool,
    counters: Counters,
    last_activity: Instant,
    last_ping: Instant,
    span: tracing::Span,
}

/// Counts of messages (and their bytes) handed to the target and handled by it.
///
/// Handing each message over with `Recipient::send` costs a oneshot channel and a boxed
/// future per message. Instead, every message of a batch but the last goes with `do_send`,
/// and the last with `send`: the target's mailbox is FIFO, so when that one is handled,
/// every earlier one is too. Answers arrive in order too: a handler returns before the
/// next message is handled, and for a handler that returns a future actix answers when it
/// completes (so the window waits).
///
/// The `send` must be queued at once, before any later `do_send`. It goes through the
/// recipient all connections share; when actix's mailbox bound has parked that sender,
/// `send` refuses and hands back a request holding a fresh, unparked clone, which queues
/// the message on its first poll (see `hand_over_held`). A clone per hand-over would do
/// too, but costs three allocations and two atomic read-modify-writes each time.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    sent: u64,
    sent_bytes: u64,
    handled: u64,
    handled_bytes: u64,
}

impl Window {
    fn in_flight(&self) -> u64 {
        self.sent - self.handled
    }

    fn is_open(&self, config: &ConnectionConfig) -> bool {
        self.in_flight() < config.max_in_flight.max(1) as u64
            && self.sent_bytes - self.handled_bytes < config.max_in_flight_bytes as u64
    }
}

/// Ends of the incoming stream that wait for the target (see `WsConnection::after_target`).
enum Deferred {
    /// A protocol error: fail the connection.
    Fail(ProtocolError),
    /// The peer's close: answer it with this code.
    CloseReply(CloseCode),
}

/// A message handed over with `send`: when it is answered, the target has handled every
/// message up to `sent` (and `sent_bytes`).
struct Fence {
    answer: Answer,
    sent: u64,
    sent_bytes: u64,
}

/// A request in place; boxes are kept for the next hand-over (see `spare_request`).
type RequestBox = std::pin::Pin<Box<Option<RecipientRequest<Message>>>>;

enum Answer {
    Awaited(RequestBox),
    /// Answered on the poll that queued it (a request must not be polled again after).
    Ready(Result<(), MailboxError>),
}

/// Polls a request in its box; an answered request is dropped at once, so the box is free
/// for the next hand-over.
fn poll_request(
    request: &mut RequestBox,
    task: &mut std::task::Context<'_>,
) -> std::task::Poll<Result<(), MailboxError>> {
    let Some(pending) = request.as_mut().as_pin_mut() else {
        return std::task::Poll::Ready(Err(MailboxError::Closed)); // Not reached: polled once.
    };
    let answer = std::future::Future::poll(pending, task);
    if answer.is_ready() {
        request.set(None);
    }
    answer
}

/// A write waiting for room in the outgoing buffer, in arrival order.
struct Waiter {
    item: Outbound,
    /// The awaiting sender (`send_wait`); `None` for fire-and-forget writes.
    tx: Option<oneshot::Sender<Result<(), SendError>>>,
    since: Instant,
}

enum Outbound {
    Message(Message),
    Prepared(crate::PreparedMessage),
}

impl Outbound {
    fn len(&self) -> usize {
        match self {
            Outbound::Message(m) => m.body.len(),
            Outbound::Prepared(p) => p.body().len(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Counters {
    started: Instant,
    bytes_in: u64,
    bytes_out: u64,
    messages_in: u64,
    messages_out: u64,
}

/// What the target learns in `MessageConnect`, besides addresses.
pub(crate) struct ConnectInfo {
    pub(crate) uri: String,
    pub(crate) headers: HeaderMap,
    pub(crate) data: Option<ConnectData>,
}

/// A copy of `headers` in a map sized to them, for `MessageConnect`. `HeaderMap::clone`
/// keeps the source's capacity, and actix-http reuses request heads, so a plain clone cost
/// about 6.7 KB per handshake; freed, that memory was later reused under the HTTP layer's
/// buffers and kept pages of them resident (about 1.6 KiB of RSS per idle connection).
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
        let id = ConnectionId::new(NEXT_SEQ.fetch_add(1, Ordering::Relaxed), ctx.address());
        ctx.run(Self::new(setup, id.clone()));
        id
    }

    /// Starts the actor inside the HTTP task of an accepted upgrade, polled by its body.
    pub(crate) fn start_in_body(setup: Setup, body: &mut BodyStream) -> ConnectionId {
        let ctx = Context::new();
        let id = ConnectionId::new(NEXT_SEQ.fetch_add(1, Ordering::Relaxed), ctx.address());
        let actor = Self::new(setup, id.clone());
        body.host(Host::start(Box::pin(ctx.into_future(actor))));
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
            target: setup.target,
            connect_info: Some(Box::new(setup.info)),
            local_addr: setup.local_addr,
            remote_addr: setup.remote_addr,
            protocol: setup.protocol,
            compressed: deflate.is_some(),
            registry: setup.registry,
            config,
            open: false,
            window: Window::default(),
            held: None,
            fences: VecDeque::new(),
            spare_request: None,
            deferred: None,
            answered_at: 0,
            pump_polls: 0,
            close_sent: false,
            close_received: false,
            fail_fast: false,
            finished: false,
            reason: None,
            waiters: VecDeque::new(),
            waiting_bytes: 0,
            stall_timer: false,
            tick: None,
            pump_waker: None,
            pump_wake_pending: false,
            counters: Counters { started: now, bytes_in: 0, bytes_out: 0, messages_in: 0, messages_out: 0 },
            last_activity: now,
            last_ping: now,
            span,
        }
    }

    fn id(&self) -> Option<ConnectionId> {
        Some(self.id.clone())
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
    /// while the buffer has room and nothing waits before them; otherwise queued to wait
    /// for the peer to read, like `send_wait`. The queue holds at most `max_write_buffer`
    /// bytes and its oldest write waits at most `write_timeout`: past either, the peer is
    /// a slow consumer.
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
        let len = item.len();
        if self.waiting_bytes + len > self.config.max_write_buffer && self.waiting_bytes > 0 {
            self.slow_consumer(ctx);
            return;
        }
        self.waiting_bytes += len;
        self.enqueue(Waiter { item, tx: None, since: Instant::now() }, ctx);
    }

    /// Whether a write has to queue behind earlier ones or for room. Pings and pongs never
    /// wait (they are small and may go between anything); a close waits for the writes
    /// before it, so they are not lost; data also waits for room.
    fn must_wait(&self, item: &Outbound) -> bool {
        match item {
            Outbound::Message(m) if matches!(m.kind, MessageKind::Ping | MessageKind::Pong) => false,
            Outbound::Message(m) if m.kind == MessageKind::Close => !self.waiters.is_empty(),
            _ => !self.waiters.is_empty() || !self.has_room(),
        }
    }

    fn enqueue(&mut self, waiter: Waiter, ctx: &mut Context<Self>) {
        self.waiters.push_back(waiter);
        if !self.stall_timer {
            self.stall_timer = true;
            ctx.run_later(self.config.write_timeout, |act, ctx| act.check_stall(ctx));
        }
    }

    /// Closes as a slow consumer if the oldest waiting write has waited `write_timeout`;
    /// otherwise watches the new oldest one.
    fn check_stall(&mut self, ctx: &mut Context<Self>) {
        self.stall_timer = false;
        let Some(front) = self.waiters.front() else { return };
        let waited = front.since.elapsed();
        if waited >= self.config.write_timeout {
            self.slow_consumer(ctx);
        } else {
            self.stall_timer = true;
            ctx.run_later(self.config.write_timeout - waited, |act, ctx| act.check_stall(ctx));
        }
    }

    fn fragment_size(&self) -> usize {
        self.config.fragment_size.unwrap_or(usize::MAX)
    }

    fn has_room(&self) -> bool {
        self.out.len() + self.transport.buffered() < self.config.max_write_buffer
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
        self.fail_waiters();
        ctx.run_later(self.config.close_timeout, |act, ctx| {
            if !act.finished {
                tracing::debug!(parent: &act.span, "closing handshake timed out");
                act.set_reason(DisconnectReason::CloseTimeout);
                act.fail_fast = true;
                act.finished = true;
                ctx.stop();
            }
        });
        self.wake();
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
        tracing::debug!(parent: &self.span, buffered = self.out.len(), "slow consumer");
        self.start_close(CloseCode::POLICY_VIOLATION, "slow consumer", DisconnectReason::SlowConsumer, ctx);
        // The peer is not reading, so waiting for its close would only hold memory.
        self.fail_fast = true;
    }

    fn target_gone(&mut self, ctx: &mut Context<Self>) {
        tracing::info!(parent: &self.span, "target actor gone, closing with 1011");
        self.start_close(CloseCode::INTERNAL_ERROR, "target gone", DisconnectReason::TargetGone, ctx);
    }

    fn fail_waiters(&mut self) {
        let dropped = self.waiters.iter().filter(|w| w.tx.is_none()).count();
        if dropped > 0 {
            tracing::debug!(parent: &self.span, dropped, "queued messages dropped by the close");
        }
        let error = match self.reason {
            Some(DisconnectReason::SlowConsumer) => SendError::SlowConsumer,
            _ => SendError::Closed,
        };
        for w in self.waiters.drain(..) {
            if let Some(tx) = w.tx {
                let _ = tx.send(Err(error.clone()));
            }
        }
        self.waiting_bytes = 0;
    }

    /// Moves waiting writes into the outgoing buffer, in order, while there is room.
    fn release_waiters(&mut self, ctx: &mut Context<Self>) {
        while self.has_room() && !self.close_sent {
            let Some(w) = self.waiters.pop_front() else { break };
            if w.tx.is_none() {
                self.waiting_bytes -= w.item.len();
            }
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
                self.counters.messages_out += 1;
                self.wake();
                Ok(())
            }
        }
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
                    Ok(None) => (CloseCode::NORMAL, String::new()),
                    Err(e) => return Err(SendError::Invalid(format!("close payload: {e}"))),
                };
                let reason =
                    DisconnectReason::Closed { initiator: Initiator::Local, code, reason: text.clone() };
                self.start_close(code, &text, reason, ctx);
                return Ok(());
            }
        }
        self.counters.messages_out += 1;
        self.wake();
        Ok(())
    }

    fn write_data(&mut self, kind: DataKind, body: &[u8]) -> Result<(), SendError> {
        // Copied, not queued as shared `Bytes`: measured on the 64 KiB echo, sharing kept
        // the read buffer's allocation alive until the HTTP layer copied it out, so every
        // read allocated afresh (2-3 page faults a message) and the body stream yielded one
        // message per flush; the copy was 30% faster.
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
        if self.window.in_flight() == 0 {
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
        if self.deferred.is_none() || self.held.is_some() || self.window.in_flight() > 0 {
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
                    self.fail_waiters();
                }
            }
        }
    }

    fn deliver(&mut self, kind: MessageKind, body: bytes::Bytes) {
        if self.fail_fast || matches!(self.reason, Some(DisconnectReason::TargetGone)) {
            return; // Failing, or nobody to deliver to.
        }
        // After our own close frame the peer may still send what it had in flight: it is
        // delivered, not dropped, until the peer's close arrives.
        self.counters.messages_in += 1;
        self.window.sent += 1;
        self.window.sent_bytes += body.len() as u64;
        if let Some(previous) = self.held.take() {
            self.target.0.message.do_send(previous);
        }
        self.held = Some(Message { id: self.id(), kind, body });
        if !self.window.is_open(&self.config) {
            self.hand_over_held();
        }
    }

    /// Hands the held message to the target as the one whose handling is awaited; called
    /// whenever the pump stops reading, so no message waits in `held` across polls. The
    /// pump polls the answer (see `poll_fences`), which saves a task wake-up per batch.
    fn hand_over_held(&mut self) {
        let Some(msg) = self.held.take() else { return };
        let mut request = self.spare_request.take().unwrap_or_else(|| Box::pin(None));
        request.set(Some(self.target.0.message.send(msg)));
        // This first poll queues a refused send (see `Window`). It registers the pump's
        // waker for the oldest awaited answer only: `poll_fences` registers it for the
        // next one when that one is answered.
        let waker = match &self.pump_waker {
            Some(w) if self.fences.is_empty() => w,
            _ => Waker::noop(),
        };
        let answer = match poll_request(&mut request, &mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Pending => Answer::Awaited(request),
            std::task::Poll::Ready(res) => {
                // Refused for good (the target is gone): the pump must look again.
                self.spare_request = Some(request);
                self.wake();
                Answer::Ready(res)
            }
        };
        self.fences.push_back(Fence { answer, sent: self.window.sent, sent_bytes: self.window.sent_bytes });
    }

    /// Moves the window on for every answered hand-over, oldest first.
    fn poll_fences(&mut self, ctx: &mut Context<Self>, task: &mut std::task::Context<'_>) {
        while let Some(fence) = self.fences.front_mut() {
            let answer = match &mut fence.answer {
                Answer::Awaited(request) => poll_request(request, task),
                Answer::Ready(res) => std::task::Poll::Ready(*res),
            };
            match answer {
                std::task::Poll::Pending => break,
                std::task::Poll::Ready(res) => {
                    let (sent, sent_bytes) = (fence.sent, fence.sent_bytes);
                    if let Some(Fence { answer: Answer::Awaited(request), .. }) = self.fences.pop_front() {
                        self.spare_request = Some(request);
                    }
                    self.last_activity = Instant::now();
                    if res.is_err() {
                        // Nobody will answer the rest; reopen the window so the peer's close
                        // is still read (messages meanwhile are dropped: no target).
                        self.fences.clear();
                        self.window.handled = self.window.sent;
                        self.window.handled_bytes = self.window.sent_bytes;
                        self.target_gone(ctx);
                        break;
                    }
                    self.window.handled = sent;
                    self.window.handled_bytes = sent_bytes;
                    self.answered_at = self.pump_polls;
                }
            }
        }
    }

    fn on_tick(&mut self, ctx: &mut Context<Self>) {
        if self.close_sent || !self.open || self.window.in_flight() > 0 {
            return;
        }
        // A connection gone quiet gives back its spare request box (192 bytes) and what a
        // burst or a large message left in its buffers.
        self.spare_request = None;
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
        if self.waiters.is_empty() {
            self.waiters = VecDeque::new();
        }
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
        let id = self.id.clone();
        if let Some(reg) = &self.registry {
            reg.insert(id.clone());
        }
        let info = self.connect_info.take().map_or_else(
            || ConnectInfo { uri: String::new(), headers: HeaderMap::new(), data: None },
            |info| *info,
        );
        tracing::info!(parent: &self.span, uri = %info.uri, protocol = ?self.protocol, compressed = self.compressed, "connected");
        let connect = MessageConnect {
            id,
            remote_addr: self.remote_addr,
            local_addr: self.local_addr,
            uri: info.uri,
            headers: info.headers,
            protocol: self.protocol.clone(),
            compressed: self.compressed,
            data: info.data,
        };
        // MessageConnect always comes first. Through one mailbox, queueing it first is
        // enough; across actors, reading starts once the target has handled it.
        if self.target.0.one_mailbox {
            if self.target.0.connect.connected() {
                self.target.0.connect.do_send(connect);
                self.open = true;
            } else {
                self.target_gone(ctx);
            }
        } else {
            ctx.spawn(self.target.0.connect.send(connect).into_actor(self).map(|res, act, ctx| match res {
                Ok(()) => {
                    act.open = true;
                    act.last_activity = Instant::now();
                    act.wake();
                }
                Err(_) => act.target_gone(ctx),
            }));
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
        let reason =
            self.reason.take().unwrap_or_else(|| DisconnectReason::ConnectionLost("actor stopped".into()));
        tracing::info!(parent: &self.span, %reason, bytes_in = self.counters.bytes_in, bytes_out = self.counters.bytes_out, "disconnected");
        self.target.0.disconnect.do_send(MessageDisconnect { id: self.id.clone(), reason });
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
    type Result = ResponseActFuture<Self, Result<(), SendError>>;

    fn handle(&mut self, SendMessage(msg): SendMessage, ctx: &mut Self::Context) -> Self::Result {
        self.pump_runs_next();
        if self.close_sent {
            return Box::pin(actix::fut::ready(Err(SendError::Closed)));
        }
        let item = Outbound::Message(msg);
        if !self.must_wait(&item) {
            let r = self.write_outbound(item, ctx);
            return Box::pin(actix::fut::ready(r));
        }
        let (tx, rx) = oneshot::channel();
        self.enqueue(Waiter { item, tx: Some(tx), since: Instant::now() }, ctx);
        let timeout = self.config.write_timeout;
        Box::pin(actix::clock::timeout(timeout, rx).into_actor(self).map(|r, act, ctx| match r {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(SendError::Closed),
            Err(_) => {
                act.slow_consumer(ctx);
                Err(SendError::SlowConsumer)
            }
        }))
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
            buffered_out: self.out.len() + self.transport.buffered(),
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
