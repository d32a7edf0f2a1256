//! The set of live connections a handler started, for shutdown.

use std::collections::HashMap;
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
    emptied: Notify,
}

#[derive(Default)]
struct State {
    conns: HashMap<u64, ConnectionId>,
    shutting_down: bool,
}

impl Registry {
    /// Adds a connection; returns false when shutdown has begun (the connection is added
    /// all the same, so shutdown waits for it to end).
    pub(crate) fn join(&self, id: ConnectionId) -> bool {
        let mut state = self.lock();
        state.conns.insert(id.seq(), id);
        !state.shutting_down
    }

    pub(crate) fn remove(&self, seq: u64) {
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
        self.lock().shutting_down
    }

    /// Marks shutdown as begun and returns the connections that joined before.
    pub(crate) fn begin_shutdown(&self) -> Vec<ConnectionId> {
        let mut state = self.lock();
        state.shutting_down = true;
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
