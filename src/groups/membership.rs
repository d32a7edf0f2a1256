//! The groups a connection belongs to, kept with its id, so that it leaves them all when
//! it ends.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::group::Group;
use super::PresenceChange;
use super::Shared;
use crate::ConnectionId;

/// Held, locked, while a join or leave changes a group: a join racing the connection's
/// end either lands before it (and is undone by it) or sees `ended` and is refused.
#[derive(Default)]
pub(crate) struct Memberships {
    pub(super) ended: bool,
    pub(super) list: Vec<(Weak<Shared>, Arc<Group>)>,
}

pub(crate) fn lock(m: &Mutex<Memberships>) -> MutexGuard<'_, Memberships> {
    // A plain list: whole after a panic elsewhere.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The connection has ended: it leaves every group it is in, and joins no more.
pub(crate) fn leave_all(id: &ConnectionId) {
    let list = {
        let mut m = id.memberships();
        m.ended = true;
        std::mem::take(&mut m.list)
    };
    for (shared, group) in list {
        group.leave(id.seq(), PresenceChange::Disconnected);
        if let Some(shared) = shared.upgrade() {
            if let Some(bus) = &shared.bus {
                bus.changed(&group.name, id, &Arc::from(""), PresenceChange::Disconnected);
            }
            shared.drop_if_unused(&group);
        }
    }
    id.lane().clear();
}
