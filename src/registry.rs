//! The set of live connections a handler started, for shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::ConnectionId;

/// Live connections by sequence number; clones share the set. Holding the connection's
/// own `ConnectionId` costs no allocation (a new actix address would cost two).
///
/// Joining and the start of shutdown take one lock, so every connection either is in the
/// set shutdown closes, or learns when it joins that shutdown has begun.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    /// `State::shutting_down`, readable without the lock.
    shutting_down: AtomicBool,
    emptied: Notify,
}

#[derive(Default)]
struct State {
    conns: HashMap<u64, ConnectionId>,
    shutting_down: bool,
}

impl Inner {
    /// For the upgrade's early answer (503) without taking the lock.
    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

/// A connection's place in a registry: it leaves when this is dropped.
pub(crate) struct Registration {
    registry: Registry,
    seq: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.remove(self.seq);
    }
}

impl Registry {
    /// Adds a connection; the flag says whether shutdown has begun (the connection is
    /// added all the same, so shutdown waits for it to end).
    pub(crate) fn join(&self, id: &ConnectionId) -> (Registration, bool) {
        let mut state = self.lock();
        state.conns.insert(id.seq(), id.clone());
        let registration = Registration { registry: self.clone(), seq: id.seq() };
        (registration, state.shutting_down)
    }

    fn remove(&self, seq: u64) {
        let mut state = self.lock();
        state.conns.remove(&seq);
        if state.conns.is_empty() {
            self.inner.emptied.notify_waiters();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().conns.len()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.inner.is_shutting_down()
    }

    /// Marks shutdown as begun and returns the connections that joined before.
    pub(crate) fn begin_shutdown(&self) -> Vec<ConnectionId> {
        let mut state = self.lock();
        state.shutting_down = true;
        self.inner.shutting_down.store(true, Ordering::Release);
        state.conns.values().cloned().collect()
    }

    /// Waits until no connection is left.
    pub(crate) async fn wait_empty(&self) {
        loop {
            let notified = self.inner.emptied.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().conns.is_empty() {
                return;
            }
            notified.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves a plain map behind: still usable.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
