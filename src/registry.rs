//! The set of live connections a handler started, for shutdown: each is in it from its
//! start to its end, by number, as whatever the handler keeps of it (its id); and the
//! upgrades accepted whose connection has not started yet (a server that takes the socket
//! over starts it after the 101 is written), so that shutdown waits for those too.

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
        let state = State { conns: HashMap::new(), reserved: 0, shutting_down: false };
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
    /// Accepted upgrades whose connection has not joined yet.
    reserved: usize,
    shutting_down: bool,
}

impl<T> State<T> {
    fn is_empty(&self) -> bool {
        self.conns.is_empty() && self.reserved == 0
    }
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

/// An accepted upgrade's place, held until its connection joins (or the upgrade is
/// dropped before it starts).
pub(crate) struct Reservation<T> {
    /// `None` once the connection has taken the place.
    registry: Option<Registry<T>>,
}

impl<T> Drop for Reservation<T> {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.take() {
            let mut state = registry.lock();
            state.reserved -= 1;
            if state.is_empty() {
                registry.inner.emptied.notify_waiters();
            }
        }
    }
}

impl<T: Clone> Reservation<T> {
    /// The connection starts: it takes the place held for it, in one step, and learns
    /// whether shutdown has begun meanwhile.
    pub(crate) fn join(mut self, seq: u64, conn: T) -> (Registration<T>, bool) {
        let registry = self.registry.take().expect("a reservation is joined once");
        let mut state = registry.lock();
        state.reserved -= 1;
        state.conns.insert(seq, conn);
        let shutting_down = state.shutting_down;
        drop(state);
        (Registration { registry, seq }, shutting_down)
    }
}

impl<T: Clone> Registry<T> {
    /// Holds a place for an upgrade accepted now whose connection starts later; `None` once
    /// shutdown has begun.
    pub(crate) fn reserve(&self) -> Option<Reservation<T>> {
        let mut state = self.lock();
        if state.shutting_down {
            return None;
        }
        state.reserved += 1;
        Some(Reservation { registry: Some(self.clone()) })
    }

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
        if state.is_empty() {
            self.inner.emptied.notify_waiters();
        }
    }

    /// Connections, and upgrades accepted whose connection has not started yet.
    pub(crate) fn len(&self) -> usize {
        let state = self.lock();
        state.conns.len() + state.reserved
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
            if self.lock().is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn shutdown_waits_for_accepted_upgrades_whose_connection_has_not_started() {
        let r: Registry<&'static str> = Registry::default();
        let (a, _) = r.join(1, "a");
        let held = r.reserve().expect("not shutting down");
        assert_eq!(r.len(), 2, "the accepted upgrade counts");
        assert_eq!(r.begin_shutdown(), ["a"], "only started connections can be told");
        assert!(r.reserve().is_none(), "no new places once shutdown has begun");
        drop(a);
        let waiting = tokio::spawn({
            let r = r.clone();
            async move { r.wait_empty().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the held place keeps shutdown waiting");
        let (b, shutting_down) = held.join(2, "b");
        assert!(shutting_down, "the late connection learns it must close");
        assert_eq!(r.len(), 1);
        drop(b);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.expect("emptied").unwrap();
        let dropped = Registry::<&'static str>::default();
        let unused = dropped.reserve().unwrap();
        drop(unused); // the 101 never went out
        assert_eq!(dropped.len(), 0);
        tokio::time::timeout(std::time::Duration::from_secs(5), dropped.wait_empty()).await.expect("empty");
    }
}
