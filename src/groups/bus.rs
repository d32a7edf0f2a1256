//! What groups tell a cluster: the changes of their members and their broadcasts, so that
//! other nodes can hand those to their own members and show them in presence.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::{
    HistoryError, HistoryLimits, Position, PresenceChange, Published, Recovered, RecoveryError, Since,
};
use crate::connection::ConnectionId;
use crate::prepared::PreparedMessage;

/// Makes a broadcast from the position it gets.
pub(crate) type Build = Box<dyn Fn(&Position) -> PreparedMessage + Send>;

/// Told of every change and broadcast, in the order they are made; must not block.
pub(crate) trait Bus: Send + Sync {
    /// `id` joined `group` (`fresh`) or changed its metadata there.
    fn joined(&self, group: &Arc<str>, id: &ConnectionId, meta: &Arc<str>, fresh: bool) {
        let change = if fresh { PresenceChange::Joined } else { PresenceChange::Updated };
        self.changed(group, id.seq(), meta, change);
    }
    /// The member `seq` of `group` joined, changed its metadata or left (`meta` is then
    /// empty).
    fn changed(&self, group: &Arc<str>, seq: u64, meta: &Arc<str>, change: PresenceChange);
    /// `msg` was broadcast to `group` on this node.
    fn broadcast(&self, group: &str, msg: &PreparedMessage);
    /// A broadcast to `group`, which keeps history within `limits`: placed in history (and
    /// delivered on every node, this one too, but not to the member `except`) in one step;
    /// `reply` is told where, or why not. Whether it was taken (false: refused at once,
    /// and `reply` told why).
    fn publish(
        &self,
        group: &str,
        limits: HistoryLimits,
        build: Build,
        except: Option<u64>,
        reply: oneshot::Sender<Result<Published, HistoryError>>,
    ) -> bool;
    /// `id` joins `group` (which keeps history within `limits`) after what history holds
    /// `since`, read from the cluster's history; `reply` is told the outcome.
    fn join_since(
        &self,
        group: &str,
        id: &ConnectionId,
        meta: Arc<str>,
        since: Since,
        limits: HistoryLimits,
        reply: oneshot::Sender<Result<Recovered, RecoveryError>>,
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::groups::{test_ids, Groups};

    /// An in-memory bus: what it was told, as lines.
    #[derive(Default)]
    struct Record(Mutex<Vec<String>>);

    impl Bus for Record {
        fn changed(&self, group: &Arc<str>, seq: u64, meta: &Arc<str>, change: PresenceChange) {
            self.0.lock().unwrap().push(format!("{group} {seq} {change:?} {meta}"));
        }
        fn broadcast(&self, group: &str, msg: &PreparedMessage) {
            self.0.lock().unwrap().push(format!("{group} says {}", String::from_utf8_lossy(msg.body())));
        }
        fn publish(
            &self,
            group: &str,
            _: HistoryLimits,
            build: Build,
            _: Option<u64>,
            _: oneshot::Sender<Result<Published, HistoryError>>,
        ) -> bool {
            let msg = build(&Position { epoch: 1, offset: 1 });
            self.0.lock().unwrap().push(format!("{group} keeps {}", String::from_utf8_lossy(msg.body())));
            true
        }
        fn join_since(
            &self,
            group: &str,
            id: &ConnectionId,
            _: Arc<str>,
            since: Since,
            _: HistoryLimits,
            _: oneshot::Sender<Result<Recovered, RecoveryError>>,
        ) {
            self.0.lock().unwrap().push(format!("{group} {} since {since:?}", id.seq()));
        }
    }

    #[actix_rt::test]
    async fn the_bus_hears_every_change_and_broadcast_in_order() {
        let bus = Arc::new(Record::default());
        let groups = Groups::with_bus(bus.clone());
        let ids = test_ids(2);
        assert_eq!(groups.join_with("g", &ids[0], "ada"), Ok(true));
        assert_eq!(groups.join_with("g", &ids[0], "ada l."), Ok(false));
        assert_eq!(groups.join("g", &ids[1]), Ok(true));
        assert_eq!(groups.broadcast("g", "hi"), 2);
        // No member here: other nodes may have some.
        assert_eq!(groups.broadcast("elsewhere", "hello"), 0);
        assert!(groups.leave("g", &ids[1]));
        assert!(!groups.leave("g", &ids[1]), "not told twice");
        ids[0].subscriber().end();
        assert_eq!(
            *bus.0.lock().unwrap(),
            [
                "g 1 Joined ada",
                "g 1 Updated ada l.",
                "g 2 Joined ",
                "g says hi",
                "elsewhere says hello",
                "g 2 Left ",
                "g 1 Disconnected ",
            ]
        );
    }
}
