//! A connection's lane: broadcasts its home handed it, waiting for its next turn.
//!
//! The home and the connection share a thread, so the lock is never contended; it is a
//! lock only because a connection's id, which holds the lane, is shared across threads.
//! The lane holds what reached the thread since the connection's last turn, within one
//! round of the home's wake-ups: each turn moves everything into the connection's write
//! path, where the connection's own bounds and slow-consumer policy apply, and what lanes
//! hold during a round counts toward the thread's backlog bound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::Waker;

use crate::PreparedMessage;

#[derive(Default)]
pub(crate) struct Lane {
    /// Something waits: read without the lock on every turn of the connection.
    pending: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    items: Vec<PreparedMessage>,
    waker: Option<Waker>,
}

impl Lane {
    /// Adds a broadcast; true when it is the first since the connection's last turn (the
    /// connection is then to be woken, see `wake`).
    pub(crate) fn push(&self, msg: &PreparedMessage) -> bool {
        let mut inner = self.lock();
        inner.items.push(msg.clone());
        !self.pending.swap(true, Ordering::AcqRel)
    }

    /// Wakes the connection if something still waits for it.
    pub(crate) fn wake(&self) {
        if self.pending.load(Ordering::Acquire) {
            if let Some(w) = &self.lock().waker {
                w.wake_by_ref();
            }
        }
    }

    /// Moves what waits into `out`, in order.
    pub(crate) fn take(&self, out: &mut Vec<PreparedMessage>) {
        if !self.pending.load(Ordering::Acquire) {
            return;
        }
        let mut inner = self.lock();
        self.pending.store(false, Ordering::Release);
        if out.is_empty() {
            std::mem::swap(out, &mut inner.items);
        } else {
            out.append(&mut inner.items);
        }
    }

    /// The connection's waker changed (it is set on its first turn).
    pub(crate) fn set_waker(&self, waker: &Waker) {
        self.lock().waker = Some(waker.clone());
    }

    /// Lets go of what waits and of the waker, once the connection has ended.
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.items = Vec::new();
        inner.waker = None;
        self.pending.store(false, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
