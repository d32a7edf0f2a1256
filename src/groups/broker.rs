//! The broker: where a `Groups` keeps history and whom it tells of its changes and
//! broadcasts. Always there: in this process when groups span one node, a cluster's
//! (Redis) when they span several. `Groups` asks it and never which one it is.

use std::sync::Arc;

use super::recovery::Answer;
use super::{
    Groups, HistoryError, HistoryLimits, Position, PresenceChange, Published, Recovered, RecoveryError, Since,
};
use crate::connection::ConnectionId;
use crate::prepared::PreparedMessage;

/// Makes a broadcast from the position it gets.
pub(crate) type Build = Box<dyn Fn(&Position) -> PreparedMessage + Send>;

/// Carries a `Groups`' broadcasts and history. Told of every change and broadcast in the
/// order they are made; must not block. The `groups` each call takes are the ones it
/// serves (a broker delivers to this node's members through them).
pub(crate) trait Broker: Send + Sync {
    /// `id` joined `group` (`fresh`) or changed its metadata there.
    fn joined(&self, group: &Arc<str>, id: &ConnectionId, meta: &Arc<str>, fresh: bool) {
        let change = if fresh { PresenceChange::Joined } else { PresenceChange::Updated };
        self.changed(group, id.seq(), meta, change);
    }
    /// The member `seq` of `group` joined, changed its metadata or left (`meta` is then
    /// empty).
    fn changed(&self, group: &Arc<str>, seq: u64, meta: &Arc<str>, change: PresenceChange);
    /// Broadcasts `msg` to `group` (kept within `history` if the group keeps one), to
    /// every member but `except`; how many members on this node it reaches.
    fn broadcast(
        &self,
        groups: &Groups,
        group: &str,
        msg: &PreparedMessage,
        except: Option<&ConnectionId>,
        history: Option<HistoryLimits>,
    ) -> usize;
    /// A broadcast to `group`, which keeps history within `limits`: placed in history and
    /// delivered (on every node) in one step; the answer says where, or why not.
    fn publish(
        &self,
        groups: &Groups,
        group: &str,
        limits: HistoryLimits,
        build: Build,
    ) -> Answer<Result<Published, HistoryError>>;
    /// `id` joins `group` (which keeps history within `limits`) after what its history
    /// holds `since`; the answer says how it went.
    fn join_since(
        &self,
        groups: &Groups,
        group: &str,
        id: &ConnectionId,
        meta: Arc<str>,
        since: Since,
        limits: HistoryLimits,
    ) -> Answer<Result<Recovered, RecoveryError>>;
    /// Whether history lives in the groups of this process (then a group that keeps
    /// history holds it itself), or with the broker.
    fn history_in_groups(&self) -> bool;
}

/// The broker of groups that span this process only: nobody else to tell, and history
/// kept by each group beside its members, so that a join's replay and its first live
/// broadcast are one step under the group's lock.
pub(crate) struct InProcess;

impl Broker for InProcess {
    fn changed(&self, _: &Arc<str>, _: u64, _: &Arc<str>, _: PresenceChange) {}

    fn broadcast(
        &self,
        groups: &Groups,
        group: &str,
        msg: &PreparedMessage,
        except: Option<&ConnectionId>,
        history: Option<HistoryLimits>,
    ) -> usize {
        if history.is_some() {
            // A group with history is there even without members, to keep the broadcast.
            groups.shared.get_or_make(group);
        }
        groups.publish_here(group, msg, except)
    }

    fn publish(
        &self,
        groups: &Groups,
        group: &str,
        _: HistoryLimits,
        build: Build,
    ) -> Answer<Result<Published, HistoryError>> {
        Answer::Ready(Some(groups.publish_here_at(group, build)))
    }

    fn join_since(
        &self,
        groups: &Groups,
        group: &str,
        id: &ConnectionId,
        meta: Arc<str>,
        since: Since,
        _: HistoryLimits,
    ) -> Answer<Result<Recovered, RecoveryError>> {
        Answer::Ready(Some(groups.join_here_since(group, id, meta, since)))
    }

    fn history_in_groups(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::groups::test_ids;

    /// A broker that delivers here and writes down what it was told, as lines.
    #[derive(Default)]
    struct Record(Mutex<Vec<String>>);

    impl Record {
        fn note(&self, line: String) {
            self.0.lock().unwrap().push(line);
        }
    }

    impl Broker for Record {
        fn changed(&self, group: &Arc<str>, seq: u64, meta: &Arc<str>, change: PresenceChange) {
            self.note(format!("{group} {seq} {change:?} {meta}"));
        }
        fn broadcast(
            &self,
            groups: &Groups,
            group: &str,
            msg: &PreparedMessage,
            except: Option<&ConnectionId>,
            _: Option<HistoryLimits>,
        ) -> usize {
            self.note(format!("{group} says {}", String::from_utf8_lossy(msg.body())));
            groups.publish_here(group, msg, except)
        }
        fn publish(
            &self,
            _: &Groups,
            group: &str,
            _: HistoryLimits,
            build: Build,
        ) -> Answer<Result<Published, HistoryError>> {
            let msg = build(&Position { epoch: 1, offset: 1 });
            self.note(format!("{group} keeps {}", String::from_utf8_lossy(msg.body())));
            Answer::Ready(None)
        }
        fn join_since(
            &self,
            _: &Groups,
            group: &str,
            id: &ConnectionId,
            _: Arc<str>,
            since: Since,
            _: HistoryLimits,
        ) -> Answer<Result<Recovered, RecoveryError>> {
            self.note(format!("{group} {} since {since:?}", id.seq()));
            Answer::Ready(None)
        }
        fn history_in_groups(&self) -> bool {
            false
        }
    }

    #[actix_rt::test]
    async fn the_broker_hears_every_change_and_broadcast_in_order() {
        let broker = Arc::new(Record::default());
        let groups = Groups::with_broker(broker.clone());
        groups.keep_history("kept", HistoryLimits::default());
        let ids = test_ids(2);
        assert_eq!(groups.join_with("g", &ids[0], "ada"), Ok(true));
        assert_eq!(groups.join_with("g", &ids[0], "ada l."), Ok(false));
        assert_eq!(groups.join("g", &ids[1]), Ok(true));
        assert_eq!(groups.broadcast("g", "hi"), 2);
        // No member here: other nodes may have some.
        assert_eq!(groups.broadcast("elsewhere", "hello"), 0);
        assert!(groups.publish("kept", |at| format!("{at}")).now().is_ok());
        assert!(groups.join_since("kept", &ids[1], "", Since::Start).now().is_ok());
        assert!(groups.leave("g", &ids[1]));
        assert!(!groups.leave("g", &ids[1]), "not told twice");
        ids[0].subscriber().end();
        assert_eq!(
            *broker.0.lock().unwrap(),
            [
                "g 1 Joined ada",
                "g 1 Updated ada l.",
                "g 2 Joined ",
                "g says hi",
                "elsewhere says hello",
                "kept keeps 0000000000000001:1",
                "kept 2 since Start",
                "g 2 Left ",
                "g 1 Disconnected ",
            ]
        );
        // The broker keeps the history: the groups here do not.
        assert_eq!(groups.position("kept"), None);
    }
}
