//! The connection's I/O loop: one future, polled inside the actor, that flushes outgoing
//! bytes, reads and decodes when the target is ready, and closes the transport when the
//! closing handshake (or a failure) says so.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use actix::prelude::*;

use super::transport::Transport;
use super::{Deferred, WsConnection};
use crate::protocol::Role;
use crate::DisconnectReason;

/// Rounds of work before the pump yields to other actors on the same thread.
const BUDGET: usize = 64;

pub(super) struct Pump;

enum Step {
    Progress,
    Idle,
    Done,
}

impl ActorFuture<WsConnection> for Pump {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut WsConnection,
        ctx: &mut Context<WsConnection>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        act.pump_wake_pending = false;
        act.pump_polls += 1;
        match &act.pump_waker {
            Some(w) if w.will_wake(task.waker()) => {}
            _ => act.pump_waker = Some(task.waker().clone()),
        }
        if let Some(mut tick) = act.tick.take() {
            tick.poll(act, ctx, task);
            act.tick = Some(tick);
        }
        // Answers arrive from other actors, which wake this task: once per poll is enough.
        act.poll_answers(ctx, task);
        for _ in 0..BUDGET {
            match step(act, ctx, task) {
                Step::Progress => continue,
                Step::Idle => return pause(act, ctx),
                Step::Done => {
                    act.hand_over_held();
                    act.finished = true;
                    ctx.stop();
                    return Poll::Ready(());
                }
            }
        }
        task.waker().wake_by_ref();
        pause(act, ctx)
    }
}

/// Ends a pump poll that leaves the connection running: no message stays held, a peer
/// that leaves bytes waiting is watched, and writers learn the backlog.
fn pause(act: &mut WsConnection, ctx: &mut Context<WsConnection>) -> Poll<()> {
    act.hand_over_held();
    if !act.has_room() {
        act.watch_stall(ctx);
    }
    act.publish_backlog();
    Poll::Pending
}

fn step(act: &mut WsConnection, ctx: &mut Context<WsConnection>, task: &mut TaskContext<'_>) -> Step {
    if act.finished {
        return Step::Done;
    }
    let mut progress = act.run_deferred(ctx, task);

    // Write what is buffered.
    while let Some(chunk) = act.out.front() {
        match act.transport.poll_write(task, chunk) {
            // No step needed for this alone: room it makes is seen below.
            Poll::Ready(Ok(n)) => {
                act.out.consumed(n);
                act.counters.bytes_out += n as u64;
            }
            Poll::Ready(Err(e)) => {
                act.set_reason(DisconnectReason::ConnectionLost(e.to_string()));
                return Step::Done;
            }
            Poll::Pending => {
                act.watch_stall(ctx);
                break;
            }
        }
    }
    if !act.has_room() {
        // Reading and queued writes wait for room, which a drained body makes without
        // any write of ours being refused.
        act.transport.want_room(task);
    } else if !act.queue.is_empty() {
        act.release_waiters(ctx);
        progress = true;
    }

    // Close the transport once our close is flushed: right away when failing or when the
    // handshake is complete on the server (RFC 6455 7.1.1: the server closes TCP first);
    // a client waits for the server to close.
    let handshake_done = act.close_sent && act.close_received;
    let close_now = act.fail_fast || (handshake_done && act.role == Role::Server);
    if close_now && act.out.is_empty() {
        return match act.transport.poll_close(task) {
            Poll::Ready(_) => Step::Done,
            Poll::Pending => Step::Idle,
        };
    }

    let may_read = act.may_read();
    if may_read && decode_one(act, ctx) {
        return Step::Progress;
    }
    // A client that completed the handshake still reads, to see the server's EOF.
    if may_read || (handshake_done && act.role == Role::Client) {
        let hint = act.decoder.pending_payload();
        match act.transport.poll_read(task, &mut act.read_buf, hint) {
            Poll::Ready(Ok(0)) => {
                if !handshake_done {
                    act.set_reason(DisconnectReason::ConnectionLost(
                        "peer closed the TCP connection without a close frame".into(),
                    ));
                }
                return Step::Done;
            }
            Poll::Ready(Ok(n)) => {
                act.counters.bytes_in += n as u64;
                act.last_activity = std::time::Instant::now();
                if handshake_done {
                    act.read_buf.clear();
                }
                // Decode what arrived in this step, not the next.
                if may_read {
                    decode_one(act, ctx);
                }
                progress = true;
            }
            Poll::Ready(Err(e)) => {
                act.set_reason(DisconnectReason::ConnectionLost(e.to_string()));
                return Step::Done;
            }
            Poll::Pending => {}
        }
    }
    if progress {
        Step::Progress
    } else {
        Step::Idle
    }
}

/// Decodes and handles the next incoming frame, if the read buffer holds a whole one;
/// returns whether it did anything.
fn decode_one(act: &mut WsConnection, ctx: &mut Context<WsConnection>) -> bool {
    if act.read_buf.is_empty() {
        return false; // Every frame takes at least one byte (the decoder keeps none).
    }
    match act.decoder.decode(&mut act.read_buf) {
        Ok(Some(incoming)) => {
            act.on_incoming(incoming, ctx);
            true
        }
        Ok(None) => false,
        Err(e) => {
            act.after_target(Deferred::Fail(e), ctx);
            true
        }
    }
}
