//! What groups tell a cluster: the changes of their members and their broadcasts, so that
//! other nodes can hand those to their own members and show them in presence.

use std::sync::Arc;

use super::PresenceChange;
use crate::{ConnectionId, PreparedMessage};

/// Told of every change and broadcast, in the order they are made; must not block.
pub(crate) trait Bus: Send + Sync {
    /// `id` joined `group` (or changed its metadata, or left: `meta` is then empty).
    fn changed(&self, group: &Arc<str>, id: &ConnectionId, meta: &Arc<str>, change: PresenceChange);
    /// `msg` was broadcast to `group` on this node.
    fn broadcast(&self, group: &str, msg: &PreparedMessage);
}
