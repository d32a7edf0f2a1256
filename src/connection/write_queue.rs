//! Writes that wait for room in the outgoing buffer, in arrival order, and the watch that
//! tells a peer that does not read from one that reads slowly.
//!
//! Knows messages and clocks; nothing of sockets or frames. The policy it serves: a burst
//! queues and drains as fast as the peer reads; a peer that takes no byte for
//! `write_timeout` while bytes wait for it is a slow consumer; the queue holds at most
//! `max_write_queue` bytes, so a producer that outpaces its peer for good cannot grow
//! memory without bound.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::error::WriteError;
use crate::message::{MessageKind, Outgoing};
use crate::prepared::PreparedMessage;

/// A write for the connection.
pub(super) enum Outbound {
    Message(Outgoing),
    Prepared(PreparedMessage),
}

impl Outbound {
    /// Payload bytes.
    pub(super) fn len(&self) -> usize {
        match self {
            Outbound::Message(m) => m.body.len(),
            Outbound::Prepared(p) => p.body().len(),
        }
    }
}

/// Where an awaited write (`send_wait`) learns its outcome.
pub(super) use crate::delivery::Answer;

/// A write waiting for room.
pub(super) struct Waiter {
    pub(super) item: Outbound,
    /// The awaiting sender; `None` for fire-and-forget writes.
    pub(super) tx: Option<Answer>,
}

/// Where a write goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Into the outgoing buffer now.
    Write,
    /// Behind the writes already waiting, until the peer makes room.
    Queue,
    /// Past the queue's bound: the peer is a slow consumer.
    Overflow,
}

/// The writes waiting for room, oldest first, their payload bytes, and the watch over
/// the peer while bytes wait for it.
#[derive(Default)]
pub(super) struct WriteQueue {
    waiters: VecDeque<Waiter>,
    bytes: usize,
    pub(super) stall: StallWatch,
}

impl WriteQueue {
    /// The policy for one write. Pings and pongs never wait (they are small and may go
    /// between anything); a close waits for the writes before it, so they are not lost;
    /// data also waits for room. Awaited writes never overflow: their senders wait.
    pub(super) fn admit(
        &self,
        item: &Outbound,
        awaited: bool,
        has_room: bool,
        max_queue: usize,
    ) -> Admission {
        let waits = match item {
            Outbound::Message(m) if matches!(m.kind, MessageKind::Ping | MessageKind::Pong) => false,
            Outbound::Message(m) if m.kind == MessageKind::Close => !self.is_empty(),
            _ => !self.is_empty() || !has_room,
        };
        if !waits {
            Admission::Write
        } else if !awaited && self.would_overflow(item.len(), max_queue) {
            Admission::Overflow
        } else {
            Admission::Queue
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Payload bytes waiting.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether `len` more bytes would take the queue past `max`. One write always fits in
    /// an empty queue, so a message larger than the bound is not refused for its size.
    fn would_overflow(&self, len: usize, max: usize) -> bool {
        !self.waiters.is_empty() && self.bytes + len > max
    }

    pub(super) fn push(&mut self, waiter: Waiter) {
        self.bytes += waiter.item.len();
        self.waiters.push_back(waiter);
    }

    pub(super) fn pop(&mut self) -> Option<Waiter> {
        let w = self.waiters.pop_front()?;
        self.bytes -= w.item.len();
        Some(w)
    }

    /// Answers every awaiting sender with `error` and empties the queue; returns how many
    /// fire-and-forget writes were dropped with it.
    pub(super) fn fail_all(&mut self, error: &WriteError) -> usize {
        let mut dropped = 0;
        for w in self.waiters.drain(..) {
            match w.tx {
                Some(tx) => {
                    let _ = tx.send(Err(error.clone()));
                }
                None => dropped += 1,
            }
        }
        self.bytes = 0;
        dropped
    }

    /// Gives back the queue's memory when it is empty.
    pub(super) fn release(&mut self) {
        if self.waiters.is_empty() {
            self.waiters = VecDeque::new();
        }
    }
}

/// What a stall check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stall {
    /// Nothing waits for the peer: stop watching.
    Clear,
    /// The peer took no byte for the whole write timeout while bytes waited.
    Stuck,
    /// Check again after this long.
    Recheck(Duration),
}

/// Watches the bytes the peer takes while writes wait for it. Checked a few times per
/// write timeout, so a stuck peer is found within 1.25 write timeouts, and the watch costs
/// nothing while nothing waits.
#[derive(Debug, Default)]
pub(super) struct StallWatch {
    /// Bytes the peer had taken at the last check that saw it take any.
    mark: u64,
    /// When that was; `None` while no check is scheduled.
    since: Option<Instant>,
}

impl StallWatch {
    /// Starts watching, if not already; returns the delay of the first check when a check
    /// must be scheduled.
    pub(super) fn arm(&mut self, taken: u64, now: Instant, timeout: Duration) -> Option<Duration> {
        if self.since.is_some() {
            return None;
        }
        self.mark = taken;
        self.since = Some(now);
        Some(Self::period(timeout))
    }

    /// The scheduled check: `taken` is what the peer has taken so far, `waiting` whether
    /// bytes still wait for it.
    pub(super) fn check(&mut self, taken: u64, waiting: bool, now: Instant, timeout: Duration) -> Stall {
        let Some(since) = self.since.filter(|_| waiting) else {
            self.since = None;
            return Stall::Clear;
        };
        if taken != self.mark {
            self.mark = taken;
            self.since = Some(now);
        } else if now.duration_since(since) >= timeout {
            self.since = None;
            return Stall::Stuck;
        }
        Stall::Recheck(Self::period(timeout))
    }

    fn period(timeout: Duration) -> Duration {
        (timeout / 4).max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn fire_and_forget(len: usize) -> Waiter {
        Waiter { item: Outbound::Message(Outgoing::binary(vec![0u8; len])), tx: None }
    }

    #[test]
    fn the_queue_counts_bytes_and_keeps_order() {
        let mut q = WriteQueue::default();
        assert!(!q.would_overflow(10_000, 100), "an empty queue takes one write of any size");
        q.push(fire_and_forget(60));
        assert!(q.would_overflow(41, 100));
        assert!(!q.would_overflow(40, 100));
        q.push(fire_and_forget(40));
        assert_eq!(q.bytes(), 100);
        assert_eq!(q.pop().map(|w| w.item.len()), Some(60));
        assert_eq!(q.bytes(), 40);
    }

    #[test]
    fn control_frames_pass_data_waits_and_a_close_keeps_its_place() {
        let mut q = WriteQueue::default();
        let ping = Outbound::Message(Outgoing::ping("p"));
        let close = Outbound::Message(Outgoing::close(1000u16, ""));
        let data = Outbound::Message(Outgoing::text("d"));
        assert_eq!(q.admit(&data, false, true, 100), Admission::Write);
        assert_eq!(q.admit(&data, false, false, 100), Admission::Queue, "no room: data waits");
        assert_eq!(q.admit(&close, false, false, 100), Admission::Write, "nothing before it");
        q.push(fire_and_forget(100));
        assert_eq!(q.admit(&ping, false, false, 100), Admission::Write);
        assert_eq!(q.admit(&close, false, true, 1000), Admission::Queue, "behind the queued write");
        assert_eq!(q.admit(&data, false, true, 100), Admission::Overflow);
        assert_eq!(q.admit(&data, true, true, 100), Admission::Queue, "an awaited write waits instead");
    }

    #[test]
    fn failing_the_queue_answers_awaiting_senders_and_counts_the_rest() {
        let mut q = WriteQueue::default();
        let (tx, mut rx) = oneshot::channel();
        q.push(fire_and_forget(1));
        q.push(Waiter { item: Outbound::Message(Outgoing::text("x")), tx: Some(tx) });
        assert_eq!(q.fail_all(&WriteError::SlowConsumer), 1);
        assert_eq!(rx.try_recv(), Ok(Err(WriteError::SlowConsumer)));
        assert!(q.is_empty() && q.bytes() == 0);
    }

    #[test]
    fn a_peer_that_takes_nothing_for_the_timeout_is_stuck() {
        let t = Duration::from_millis(400);
        let start = Instant::now();
        let mut w = StallWatch::default();
        assert_eq!(w.arm(0, start, t), Some(Duration::from_millis(100)));
        assert_eq!(w.arm(0, start, t), None, "one check at a time");
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(w.check(0, true, at(100), t), Stall::Recheck(Duration::from_millis(100)));
        assert_eq!(w.check(0, true, at(300), t), Stall::Recheck(Duration::from_millis(100)));
        assert_eq!(w.check(0, true, at(400), t), Stall::Stuck);
    }

    #[test]
    fn a_peer_that_keeps_reading_is_not_stuck_however_long_it_takes() {
        let t = Duration::from_millis(400);
        let start = Instant::now();
        let mut w = StallWatch::default();
        w.arm(0, start, t);
        for step in 1..100u64 {
            let now = start + Duration::from_millis(100 * step);
            assert!(matches!(w.check(step * 10, true, now, t), Stall::Recheck(_)), "step {step}");
        }
        // Once it stops, the timeout counts from its last progress.
        let last = start + Duration::from_millis(9_900);
        assert!(matches!(w.check(990, true, last + Duration::from_millis(300), t), Stall::Recheck(_)));
        assert_eq!(w.check(990, true, last + Duration::from_millis(400), t), Stall::Stuck);
    }

    #[test]
    fn nothing_waiting_ends_the_watch_and_a_new_one_starts_afresh() {
        let t = Duration::from_millis(400);
        let start = Instant::now();
        let mut w = StallWatch::default();
        w.arm(0, start, t);
        assert_eq!(w.check(0, false, start + Duration::from_secs(5), t), Stall::Clear);
        let later = start + Duration::from_secs(10);
        assert!(w.arm(0, later, t).is_some());
        assert!(matches!(w.check(0, true, later + Duration::from_millis(100), t), Stall::Recheck(_)));
    }
}
