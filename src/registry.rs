//! The set of live connections a handler started, for shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::ConnectionId;

/// Live connections by sequence number; clones share the set. Holding the connection's
/// own `ConnectionId` costs no allocation (a new actix address would cost two).
#[derive(Clone, Default)]
pub(crate) struct Registry {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    conns: Mutex<HashMap<u64, ConnectionId>>,
    emptied: Notify,
}

impl Registry {
    pub(crate) fn insert(&self, id: ConnectionId) {
        self.lock().insert(id.seq(), id);
    }

    pub(crate) fn remove(&self, seq: u64) {
        let mut conns = self.lock();
        conns.remove(&seq);
        if conns.is_empty() {
            self.inner.emptied.notify_waiters();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn snapshot(&self) -> Vec<ConnectionId> {
        self.lock().values().cloned().collect()
    }

    /// Waits until no connection is left.
    pub(crate) async fn wait_empty(&self) {
        loop {
            let notified = self.inner.emptied.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().is_empty() {
                return;
            }
            notified.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, ConnectionId>> {
        // A panic while holding this lock leaves a plain map behind: still usable.
        self.inner.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}
