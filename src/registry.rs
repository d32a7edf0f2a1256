//! The set of live connections a handler started, for shutdown: each is in it from its
//! start to its end, by number, as whatever the handler keeps of it (its id).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Live connections by sequence number; clones share the set. Holding the connection's
/// own id costs no allocation (a new actix address would cost two).
///
/// Joining and the start of shutdown take one lock, so every connection either is in the
/// set shutdown closes, or learns when it joins that shutdown has begun.
pub(crate) struct Registry<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Registry<T> {
    fn clone(&self) -> Self {
        Registry { inner: self.inner.clone() }
    }
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        let state = State { conns: HashMap::new(), shutting_down: false };
        Registry {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                shutting_down: AtomicBool::new(false),
                emptied: Notify::new(),
            }),
        }
    }
}

struct Inner<T> {
    state: Mutex<State<T>>,
    /// `State::shutting_down`, readable without the lock.
    shutting_down: AtomicBool,
    emptied: Notify,
}

struct State<T> {
    conns: HashMap<u64, T>,
    shutting_down: bool,
}

impl<T> Inner<T> {
    /// For the upgrade's early answer (503) without taking the lock.
    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

/// A connection's place in a registry: it leaves when this is dropped.
pub(crate) struct Registration<T> {
    registry: Registry<T>,
    seq: u64,
}

impl<T> Drop for Registration<T> {
    fn drop(&mut self) {
        self.registry.remove(self.seq);
    }
}

impl<T: Clone> Registry<T> {
    /// Adds connection `seq`; the flag says whether shutdown has begun (the connection is
    /// added all the same, so shutdown waits for it to end).
    pub(crate) fn join(&self, seq: u64, conn: T) -> (Registration<T>, bool) {
        let mut state = self.lock();
        state.conns.insert(seq, conn);
        let registration = Registration { registry: self.clone(), seq };
        (registration, state.shutting_down)
    }

    /// Marks shutdown as begun and returns the connections that joined before.
    pub(crate) fn begin_shutdown(&self) -> Vec<T> {
        let mut state = self.lock();
        state.shutting_down = true;
        self.inner.shutting_down.store(true, Ordering::Release);
        state.conns.values().cloned().collect()
    }
}

impl<T> Registry<T> {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // A panic while holding this lock leaves a plain map behind: still usable.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
