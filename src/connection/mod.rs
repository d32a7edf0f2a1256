//! `WsConnection`: the actor that owns one WebSocket connection, accepted or dialled.
//!
//! The actor is where its parts meet; each part lives in a file of its own:
//!
//! ```text
//! peer ──bytes──> wire (transport, read buffer, decoder) ──message──> target_window ──> target
//!                  │                                      (window of unhandled messages,
//!                  │ pings, closes                          connect first, disconnect last)
//!                  v
//! peer <──bytes── wire (encoder, write buffer, transport) <── write_queue <── ConnectionId::send
//!                                                           (bounded queue, stall watch)
//! ```
//!
//! - `wire`: the bytes both ways and the codec over them; `target_window`: what is
//!   handed to the target and not yet handled by it.
//! - `id`: the `ConnectionId` that addresses the actor, with what writers read without
//!   asking it; `events` and `target`: what the target is told, and who the target is.
//! - `io_loop`: the loop, polled inside the actor: flush, let queued writes in, read and
//!   decode while the target's window has room, end TCP when the handshake says so.
//! - `session`: the connection's decisions without I/O: what a frame, a close, the
//!   periodic check or a timer calls for, returned as actions the actor carries out;
//!   its state is `lifecycle` (the closing handshake, and the reason the target is given)
//!   and `liveness` (when the peer was last heard from: heartbeat pings, the idle timeout).
//! - `tick`: the timer of the periodic check.
//! - `mailbox`: the messages the actor accepts (`Outgoing` by address, stats, shutdown);
//!   writes by id come through the subscriber's queue (`delivery`) instead.
//! - `transport` and `body_driven`: the byte pipes, and how an accepted connection's actor
//!   runs inside actix-web's HTTP task.
//!
//! Broadcasts reach the connection through its `delivery::Subscriber`, which its id holds
//! and its I/O loop takes from; the connection knows nothing of groups.
//!
//! How a connection ends: the peer's close frame or a protocol error stops the reading
//! and waits until the target has handled what came before (at most `close_timeout`),
//! then our close frame goes out; our own close (a `Close` message, shutdown, a timeout)
//! goes out after the writes queued before it. TCP ends when the server has both close
//! frames, at once when failing, or `close_timeout` after our close frame in any case.
//! When the actor stops, the target gets every message already decoded, then
//! `MessageDisconnect`.

mod body_driven;
mod details;
mod events;
mod id;
mod io_loop;
mod lifecycle;
mod liveness;
mod mailbox;
mod session;
mod target;
mod target_window;
mod tick;
pub(crate) mod transport;
mod wire;
mod write_buffer;
mod write_queue;
mod writes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_http::header::HeaderMap;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::WriteError;
use crate::message::{DisconnectReason, MessageKind};
use crate::protocol::{CloseCode, DeflateParams, Incoming, OpCode, Role};
use crate::registry::Registration;
use crate::settings::ConnectionSettings;
use crate::telemetry;
use body_driven::BodyDriven;
pub(crate) use details::copy_headers;
use details::Details;
pub(crate) use events::ConnectData;
pub use events::{MessageConnect, MessageDisconnect, WsMessage};
pub use id::ConnectionId;
use io_loop::IoLoopState;
pub(crate) use mailbox::Shutdown;
use session::{Action, Session, Timer};
use target_window::TargetWindow;
use wire::{Codec, Wire};

pub use target::Target;
use tick::Tick;
use transport::{BodyStream, IoTransport, RoleTransport, ServerTransport};
use write_queue::WriteQueue;

static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

/// The actor behind one WebSocket connection (Ergo's WebSocket Connection meta-process).
///
/// It is started by a [`WsHandler`](crate::WsHandler) for each accepted upgrade and by
/// [`connect`](crate::connect) for each dialled connection; users address it through its
/// [`ConnectionId`], which it reports in [`MessageConnect`](crate::MessageConnect).
///
/// Write to it through its [`ConnectionId`]: [`send`](ConnectionId::send),
/// [`send_wait`](ConnectionId::send_wait), [`send_prepared`](ConnectionId::send_prepared),
/// [`stats`](ConnectionId::stats). Its address is public for code that works with actix
/// addresses directly; it takes [`Outgoing`](crate::Outgoing), as a `Recipient` too:
///
/// ```no_run
/// # use actix_meta_websocket::{ConnectionId, Outgoing};
/// # fn demo(id: ConnectionId) {
/// let addr = id.addr().clone(); // Addr<WsConnection>
/// addr.do_send(Outgoing::text("the same as id.send"));
/// let feed: actix::Recipient<Outgoing> = addr.recipient();
/// feed.do_send(Outgoing::text("from anything that holds a Recipient"));
/// # }
/// ```
pub struct WsConnection {
    id: ConnectionId,
    config: Arc<ConnectionSettings>,
    wire: Wire,
    to_target: TargetWindow,
    queue: WriteQueue,
    session: Session,
    tick: Option<Tick>,
    io: IoLoopState,
    details: Details,
    /// Its place in the handler's set of live connections, left when the actor stops.
    registration: Option<Registration<ConnectionId>>,
    span: tracing::Span,
}

/// What a connection starts with, besides its transport: the way into this module for
/// the handler and the dialer.
pub(crate) struct Setup {
    pub(crate) target: Target,
    pub(crate) config: Arc<ConnectionSettings>,
    pub(crate) deflate: Option<DeflateParams>,
    pub(crate) protocol: Option<String>,
    pub(crate) local_addr: Option<SocketAddr>,
    pub(crate) remote_addr: Option<SocketAddr>,
    /// The request path and query, or the dialled URL.
    pub(crate) uri: String,
    /// The upgrade request's headers, or the 101 response's (an owned copy: see
    /// [`copy_headers`]).
    pub(crate) headers: HeaderMap,
    pub(crate) data: Option<ConnectData>,
}

impl WsConnection {
    /// Starts an accepted connection inside the HTTP task: returns its id and the
    /// response body, which carries what it writes and drives the actor. `join` is called
    /// with the id before anything else happens, so the caller can register it.
    pub(crate) fn accept(
        mut setup: Setup,
        payload: actix_web::dev::Payload,
        join: impl FnOnce(&ConnectionId) -> Option<Registration<ConnectionId>>,
    ) -> (ConnectionId, BodyStream) {
        let (transport, mut body) = ServerTransport::new(payload);
        let ctx = Context::new();
        let id = new_id(&ctx, &mut setup);
        let registration = join(&id);
        let transport = RoleTransport::InHttpTask(transport);
        let actor = Self::new(setup, Role::Server, transport, BytesMut::new(), id.clone(), registration);
        body.drive_actor(BodyDriven::start(Box::pin(ctx.into_future(actor))));
        (id, body)
    }

    /// Starts a dialled connection on a task of its own, over `io` and what was read past
    /// the handshake.
    pub(crate) fn dial<T>(mut setup: Setup, io: T, read_buf: BytesMut) -> ConnectionId
    where
        T: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let ctx = Context::new();
        let id = new_id(&ctx, &mut setup);
        let transport = RoleTransport::Socket(Box::new(IoTransport::new(io)));
        ctx.run(Self::new(setup, Role::Client, transport, read_buf, id.clone(), None));
        id
    }

    /// Starts an accepted connection on a task of its own, over the socket the HTTP layer
    /// handed over after the 101 (and what it had read past the request). `join` is called
    /// with the id before anything else happens, so the caller can register it.
    pub(crate) fn take_over<T>(
        mut setup: Setup,
        io: T,
        read_ahead: BytesMut,
        join: impl FnOnce(&ConnectionId) -> Option<Registration<ConnectionId>>,
    ) -> ConnectionId
    where
        T: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let ctx = Context::new();
        let id = new_id(&ctx, &mut setup);
        let registration = join(&id);
        // The HTTP layer's read buffer is 8 KiB or more, and almost always empty by now.
        let read_buf = if read_ahead.is_empty() { BytesMut::new() } else { BytesMut::from(&read_ahead[..]) };
        let transport = RoleTransport::Socket(Box::new(IoTransport::new(io)));
        ctx.run(Self::new(setup, Role::Server, transport, read_buf, id.clone(), registration));
        id
    }

    fn new(
        mut setup: Setup,
        role: Role,
        transport: RoleTransport,
        read_buf: BytesMut,
        id: ConnectionId,
        registration: Option<Registration<ConnectionId>>,
    ) -> Self {
        let now = Instant::now();
        // Every log line of the connection carries these, so that one id finds them all.
        let path = setup.uri.split('?').next().unwrap_or_default();
        let peer = setup.remote_addr.map(tracing::field::display);
        let span = tracing::info_span!("ws", id = id.seq(), role = role.label(), peer, path);
        let details = Details::new(&mut setup, now);
        let config = setup.config;
        let codec =
            Codec { role, limits: config.limits, deflate: setup.deflate.as_ref(), config: &config.deflate };
        WsConnection {
            span,
            id,
            wire: Wire::new(codec, transport, read_buf),
            to_target: TargetWindow::new(setup.target),
            queue: WriteQueue::default(),
            session: Session::new(now),
            tick: None,
            io: IoLoopState::default(),
            details,
            registration,
            config,
        }
    }

    fn wake(&mut self) {
        self.io.wake();
    }

    fn has_room(&self) -> bool {
        self.wire.pending_out() < self.config.max_write_buffer
    }

    /// Whether the I/O loop may read and decode: `MessageConnect` is with the target and its
    /// window has room, the closing handshake allows it, and the outgoing buffer has room
    /// (pongs to a ping flood would pile up).
    fn may_read(&self) -> bool {
        self.session.handshake().may_read()
            && self.to_target.is_connected()
            && self.to_target.has_room(&self.config)
            && self.has_room()
    }

    /// Carries out what the session decided.
    fn carry_out(&mut self, action: Action, ctx: &mut Context<Self>) {
        match action {
            Action::Nothing => {}
            Action::Deliver(kind, body) => self.deliver(kind, body),
            // Called from the I/O loop, which flushes next.
            Action::Pong(body) => {
                let _ = self.wire.encode_control(OpCode::Pong, &body);
            }
            Action::Ping => {
                let _ = self.wire.encode_control(OpCode::Ping, b"");
                self.wake();
            }
            Action::SendClose { code, text, refused } => self.send_close(code, &text, &refused, ctx),
            Action::Arm(timer) => self.arm(timer, ctx),
            Action::Stop => ctx.stop(),
        }
    }

    /// Writes our close frame; from then on writes are refused and the close timer runs.
    #[cold]
    #[inline(never)]
    fn send_close(&mut self, code: CloseCode, text: &str, refused: &WriteError, ctx: &mut Context<Self>) {
        match self.session.handshake().reason() {
            Some(reason @ DisconnectReason::TargetTimeout) => {
                tracing::warn!(parent: &self.span, %code, %reason, "closing: the target did not handle MessageConnect in time")
            }
            reason => tracing::debug!(parent: &self.span, %code, reason = ?reason, "closing"),
        }
        self.wire.encode_close(code, text);
        self.id.mark_closing();
        let dropped = self.queue.fail_all(refused);
        if dropped > 0 {
            tracing::debug!(parent: &self.span, dropped, "queued messages dropped by the close");
        }
        self.arm(Timer::Close, ctx);
        self.wake();
    }

    #[inline(never)]
    fn arm(&mut self, timer: Timer, ctx: &mut Context<Self>) {
        ctx.run_later(self.config.close_timeout, move |act, ctx| {
            if let Some(action) = act.session.on_timer(timer) {
                tracing::debug!(parent: &act.span, ?timer, "close timeout ran out");
                act.carry_out(action, ctx);
                act.wake();
            }
        });
    }

    fn slow_consumer(&mut self, ctx: &mut Context<Self>) {
        let pending = self.wire.pending_out();
        tracing::debug!(parent: &self.span, pending, queued = self.queue.bytes(), "slow consumer");
        let action = self.session.slow_consumer();
        self.carry_out(action, ctx);
    }

    fn target_gone(&mut self, ctx: &mut Context<Self>) {
        tracing::info!(parent: &self.span, "target actor gone, closing with 1011");
        let action = self.session.target_gone();
        self.carry_out(action, ctx);
    }

    #[inline]
    fn on_incoming(&mut self, incoming: Incoming, ctx: &mut Context<Self>) {
        if let Incoming::Close(frame) = &incoming {
            let (code, text) = frame.as_ref().map_or((CloseCode::NO_STATUS, ""), |f| (f.code, &f.reason));
            tracing::debug!(parent: &self.span, %code, reason = %text, "close received");
        }
        match self.session.on_frame(incoming, self.to_target.in_flight()) {
            // Once per message: straight to the target, the rest of the actions stay off
            // this path.
            Action::Deliver(kind, body) => self.deliver(kind, body),
            action => self.carry_out(action, ctx),
        }
    }

    /// Called by the I/O loop: answers the peer's end once the target is done with what came
    /// before it, and the replies it wrote meanwhile have been taken in.
    fn answer_peer_end(&mut self, ctx: &mut Context<Self>, task: &std::task::Context<'_>) -> bool {
        if !self.session.handshake().is_draining() || !self.to_target.is_drained() {
            return false;
        }
        if self.io.answered_this_poll() {
            task.waker().wake_by_ref();
            return false;
        }
        match self.session.answer_peer_end() {
            Some(action) => {
                self.carry_out(action, ctx);
                true
            }
            None => false,
        }
    }

    /// Hands a decoded message to the target. Every decoded message goes, whatever ends
    /// the connection afterwards; only a target that is gone does not get it.
    #[inline]
    fn deliver(&mut self, kind: MessageKind, body: bytes::Bytes) {
        self.details.messages.received(body.len());
        let msg = WsMessage::new(self.id.clone(), kind, body);
        if self.to_target.push(msg, &self.config) {
            self.hand_over_last();
        }
    }

    /// Hands the last decoded message over, awaited, closing its batch (see `TargetWindow`).
    fn hand_over_last(&mut self) {
        if self.to_target.hand_over_last(self.io.waker()) {
            // Refused for good (the target is gone): the I/O loop must look again.
            self.wake();
        }
    }

    /// Moves the window on for every answered hand-over.
    fn poll_answers(&mut self, ctx: &mut Context<Self>, task: &mut std::task::Context<'_>) {
        let answers = self.to_target.poll_answers(task);
        if answers.any {
            self.session.heard(Instant::now());
            self.io.answered();
        }
        if answers.target_gone {
            self.target_gone(ctx);
        }
    }

    fn on_tick(&mut self, ctx: &mut Context<Self>) {
        self.report_traffic(false);
        if !self.tick.as_mut().is_some_and(Tick::is_check) {
            return;
        }
        let (connected, in_flight) = (self.to_target.is_connected(), self.to_target.in_flight());
        let checked =
            self.session.check(Instant::now(), connected, in_flight, self.details.started, &self.config);
        if checked.quiet {
            // A connection gone quiet gives back what a burst or a large message left.
            self.to_target.release_spare();
            self.wire.release_buffers();
            self.queue.release();
            self.io.taken = Vec::new();
            self.id.subscriber().release_spare();
        }
        self.carry_out(checked.action, ctx);
    }
}

/// A new connection's id: it carries the actor's own address, made once, which serves
/// every message, the registry and `MessageConnect` without a new actix sender each.
fn new_id(ctx: &Context<WsConnection>, setup: &mut Setup) -> ConnectionId {
    let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
    ConnectionId::new(seq, ctx.address(), setup.config.max_write_buffer, setup.data.take())
}

impl Actor for WsConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let connect = self.details.message_connect(self.id.clone());
        tracing::info!(parent: &self.span, uri = %crate::redact::for_logs(&connect.uri), protocol = ?connect.protocol, compressed = connect.compressed, "connected");
        // The I/O loop is not polled yet: an awaited answer is polled on its first poll.
        if !self.to_target.connect(connect, None) {
            self.target_gone(ctx);
        }
        ctx.spawn(io_loop::IoLoop);
        self.tick = Tick::for_config(&self.config);
        telemetry::connection_opened(self.wire.role());
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.session.finish();
        let dropped = self.queue.fail_all(&WriteError::Closed);
        if dropped > 0 {
            tracing::debug!(parent: &self.span, dropped, "queued messages dropped by the end");
        }
        self.registration = None;
        self.id.mark_closing();
        self.id.set_backlog(0);
        self.id.subscriber().end();
        let reason = self.session.take_reason();
        self.report_traffic(true);
        telemetry::connection_closed(self.wire.role(), &reason);
        let (bytes_in, bytes_out) = (self.wire.bytes_in(), self.wire.bytes_out());
        tracing::info!(parent: &self.span, %reason, bytes_in, bytes_out, "disconnected");
        self.to_target.finish(MessageDisconnect { id: self.id.clone(), reason });
        self.id.mark_ended();
    }
}
