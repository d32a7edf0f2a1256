//! What every clone of a `Groups` shares: its groups by name, its bound per thread, the
//! broker, its history rules, and the sweep of groups that only keep history.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::broker::{Broker, InProcess};
use super::group::Group;
use super::recovery;
use crate::delivery::lock;

/// Bytes of broadcasts a thread may have waiting before further broadcasts skip it.
pub(super) const DEFAULT_THREAD_BACKLOG: usize = 64 << 20;

/// The next key of a group or of a `Groups`. One counter for the whole process: every
/// `Groups` (local or a cluster's) shares the worker threads' inboxes, which know groups
/// by key only.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

pub(super) fn next_key() -> u64 {
    NEXT_KEY.fetch_add(1, Ordering::Relaxed)
}

pub(crate) struct Shared {
    /// Tells the groups of this `Groups` from those of others.
    pub(super) key: u64,
    pub(super) map: Mutex<HashMap<Arc<str>, Arc<Group>>>,
    /// Bytes of broadcasts that may wait for one thread (see `with_thread_backlog`).
    pub(super) thread_backlog: AtomicUsize,
    /// Where history is kept and whom changes and broadcasts are told to: this process,
    /// or the cluster these groups span.
    pub(super) broker: Arc<dyn Broker>,
    /// Which groups keep history.
    pub(super) rules: recovery::Rules,
    /// When groups that only keep history were last looked at (ms since `clock()`).
    pub(super) swept: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            key: next_key(),
            map: Mutex::default(),
            thread_backlog: AtomicUsize::new(DEFAULT_THREAD_BACKLOG),
            broker: Arc::new(InProcess),
            rules: recovery::Rules::default(),
            swept: AtomicU64::new(0),
        }
    }
}

/// How often groups that only keep history (no member, no watcher) are looked at, to drop
/// those whose history has aged out.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Milliseconds since the first call: a clock for sweeps.
pub(super) fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Group>>> {
        lock(&self.map)
    }

    pub(super) fn get(&self, name: &str) -> Option<Arc<Group>> {
        self.lock().get(name).cloned()
    }

    pub(super) fn thread_backlog(&self) -> usize {
        self.thread_backlog.load(Ordering::Relaxed)
    }

    pub(super) fn get_or_make(self: &Arc<Self>, name: &str) -> Arc<Group> {
        if let Some(g) = self.get(name) {
            return g;
        }
        // Before the new group is in: a sweep would take it out again, empty as it is.
        self.sweep_if_due();
        let mut map = self.lock();
        if let Some(g) = map.get(name) {
            return g.clone();
        }
        let name: Arc<str> = name.into();
        let g = Arc::new(Group::new(next_key(), name.clone(), Arc::downgrade(self)));
        if self.broker.history_in_groups() {
            if let Some(limits) = self.rules.limits(&name) {
                g.keep_history(limits, rand::random());
            }
        }
        map.insert(name, g.clone());
        drop(map);
        crate::telemetry::groups(1);
        g
    }

    /// Drops the groups left with nothing but history that has aged out, at most once per
    /// `SWEEP_EVERY`.
    pub(super) fn sweep_if_due(&self) {
        let (now, last) = (clock(), self.swept.load(Ordering::Relaxed));
        if now < last + SWEEP_EVERY.as_millis() as u64
            || self.swept.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        self.lock().retain(|_, g| !g.retire_if_unused());
    }

    /// Drops `group` from the map once nobody is in it or watches it.
    pub(super) fn drop_if_unused(&self, group: &Arc<Group>) {
        let mut map = self.lock();
        if map.get(&group.name).is_some_and(|g| Arc::ptr_eq(g, group)) && group.retire_if_unused() {
            map.remove(&group.name);
        }
    }
}
