//! The connection's I/O loop: one future, polled inside the actor, that flushes outgoing
//! bytes, reads and decodes while the target keeps up, and ends the transport when the
//! closing handshake (or a failure) says so.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, Waker};

use actix::prelude::*;

use super::wire::{Flushed, Read};
use super::WsConnection;

/// Rounds of work before the I/O loop yields to other actors on the same thread.
const BUDGET: usize = 64;

/// An empty buffer with more room than this is given back as soon as the connection
/// pauses: a large message leaves nothing behind, while the room a busy connection's
/// ordinary messages need is kept.
const LARGE_BUFFER: usize = 256 * 1024;

/// The I/O loop's own bookkeeping: how to wake it, and which poll saw the target's last answer.
#[derive(Default)]
pub(super) struct IoLoopState {
    waker: Option<Waker>,
    /// A wake-up stands: further ones are not needed until the I/O loop runs.
    wake_pending: bool,
    /// Wraps; only equality matters.
    polls: u32,
    answered_at: u32,
    /// Writes taken from the subscriber (broadcasts, writes by id), kept for its capacity.
    pub(super) taken: Vec<crate::delivery::Pending>,
}

impl IoLoopState {
    /// Starts a poll; true when the waker is new.
    fn enter(&mut self, task: &TaskContext<'_>) -> bool {
        self.wake_pending = false;
        self.polls = self.polls.wrapping_add(1);
        match &self.waker {
            Some(w) if w.will_wake(task.waker()) => false,
            _ => {
                self.waker = Some(task.waker().clone());
                true
            }
        }
    }

    pub(super) fn waker(&self) -> Option<&Waker> {
        self.waker.as_ref()
    }

    /// Asks for the I/O loop to run. One request stands until the I/O loop runs, so a burst of
    /// writes costs one wake-up, not one per message.
    pub(super) fn wake(&mut self) {
        if self.wake_pending {
            return;
        }
        if let Some(w) = &self.waker {
            w.wake_by_ref();
            self.wake_pending = true;
        }
    }

    /// For message handlers: actix polls an actor's spawned futures (the I/O loop among them)
    /// right after its mailbox, so a write made there needs no wake-up.
    pub(super) fn runs_next(&mut self) {
        self.wake_pending = true;
    }

    /// The target answered during this poll.
    pub(super) fn answered(&mut self) {
        self.answered_at = self.polls;
    }

    /// A reply written by id before the answer is in the connection's queue, taken in this
    /// poll; one written through the actor's address may sit in its mailbox, which actix
    /// drains before the I/O loop only on the next poll: what must follow the replies waits
    /// one poll after an answer.
    pub(super) fn answered_this_poll(&self) -> bool {
        self.answered_at == self.polls
    }
}

pub(super) struct IoLoop;

enum Step {
    Progress,
    Idle,
    Done,
}

impl ActorFuture<WsConnection> for IoLoop {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut WsConnection,
        ctx: &mut Context<WsConnection>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        if act.io.enter(task) {
            act.id.subscriber().set_waker(task.waker());
        }
        if act.tick.as_mut().is_some_and(|t| t.poll(task)) {
            act.on_tick(ctx);
        }
        // Answers arrive from other actors, which wake this task: once per poll is enough.
        act.poll_answers(ctx, task);
        act.take_pending(ctx);
        for _ in 0..BUDGET {
            match step(act, ctx, task) {
                Step::Progress => continue,
                Step::Idle => return pause(act, ctx),
                Step::Done => {
                    act.hand_over_last();
                    act.session.finish();
                    ctx.stop();
                    return Poll::Ready(());
                }
            }
        }
        task.waker().wake_by_ref();
        pause(act, ctx)
    }
}

/// Ends an I/O loop poll that leaves the connection running: no message stays back, a peer
/// that leaves bytes waiting is watched, and writers learn the backlog.
fn pause(act: &mut WsConnection, ctx: &mut Context<WsConnection>) -> Poll<()> {
    act.hand_over_last();
    if !act.has_room() {
        act.watch_stall(ctx);
    }
    act.publish_backlog();
    act.wire.release_buffers_over(LARGE_BUFFER);
    Poll::Pending
}

fn step(act: &mut WsConnection, ctx: &mut Context<WsConnection>, task: &mut TaskContext<'_>) -> Step {
    if act.session.handshake().is_done() {
        return Step::Done;
    }
    let mut progress = act.session.handshake().is_draining() && act.answer_peer_end(ctx, task);
    match write(act, ctx, task) {
        Some(Step::Done) => return Step::Done,
        Some(_) => progress = true,
        None => {}
    }
    if act.session.handshake().drop_tcp_when_flushed(act.wire.role()) && act.wire.is_flushed() {
        return match act.wire.poll_close(task) {
            Poll::Ready(_) => Step::Done,
            Poll::Pending => Step::Idle,
        };
    }
    match read(act, ctx, task) {
        Step::Idle if progress => Step::Progress,
        other => other,
    }
}

/// Flushes, and lets queued writes into the room that made; `Some` when that did
/// something the caller must know of.
fn write(
    act: &mut WsConnection,
    ctx: &mut Context<WsConnection>,
    task: &mut TaskContext<'_>,
) -> Option<Step> {
    match act.wire.flush(task) {
        // No step needed for this alone: room it makes is seen below.
        Flushed::All => {}
        Flushed::Blocked => act.watch_stall(ctx),
        Flushed::Failed(e) => {
            act.session.lost(&e);
            return Some(Step::Done);
        }
    }
    if act.queue.is_empty() {
        if !act.has_room() {
            // Reading waits for room, which a drained body makes without any write of
            // ours being refused.
            act.wire.want_room(task);
        }
        None
    } else if act.has_room() {
        act.release_waiters(ctx);
        Some(Step::Progress)
    } else {
        act.wire.want_room(task);
        None
    }
}

/// Decodes what was read, or reads more, while the connection may.
fn read(act: &mut WsConnection, ctx: &mut Context<WsConnection>, task: &mut TaskContext<'_>) -> Step {
    let may_read = act.may_read();
    if may_read && decode_one(act, ctx) {
        return Step::Progress;
    }
    let role = act.wire.role();
    if !may_read && !act.session.handshake().reads_for_eof(role) {
        return Step::Idle;
    }
    match act.wire.read(task) {
        Read::Eof => {
            act.session.eof();
            Step::Done
        }
        Read::Failed(e) => {
            act.session.lost(&e);
            Step::Done
        }
        Read::Bytes => {
            act.session.heard(std::time::Instant::now());
            if act.session.handshake().reads_for_eof(role) {
                act.wire.discard_read();
            } else if may_read {
                // Decode what arrived in this step, not the next.
                decode_one(act, ctx);
            }
            Step::Progress
        }
        Read::Pending => Step::Idle,
    }
}

/// Decodes and handles the next incoming frame, if the read buffer holds a whole one;
/// returns whether it did anything.
fn decode_one(act: &mut WsConnection, ctx: &mut Context<WsConnection>) -> bool {
    match act.wire.decode() {
        Ok(Some(incoming)) => {
            act.on_incoming(incoming, ctx);
            true
        }
        Ok(None) => false,
        Err(e) => {
            let action = act.session.violation(e, act.to_target.in_flight());
            act.carry_out(action, ctx);
            true
        }
    }
}
