//! This node's part in each group: its members here (seq to metadata) and the actors that
//! watch the group through `Cluster::watch`. From them follow the decisions the node
//! carries out on Redis: which group channels to listen to, which presence entries to
//! write or delete, and which groups to write again after a lost link. A group has
//! presence of this node in Redis exactly while it has members here.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::Recipient;

use crate::cluster::events::ClusterEvent;
use crate::groups::PresenceChange;
use crate::watchers::Watchers;

#[derive(Default)]
struct Local {
    members: HashMap<u64, Arc<str>>,
    /// Watchers that have been told the group's members and get every change since.
    watchers: Watchers<ClusterEvent>,
    /// Watchers that still wait to be told the group's members.
    waiting: Vec<Recipient<ClusterEvent>>,
}

impl Local {
    fn is_unused(&self) -> bool {
        self.members.is_empty() && self.watchers.is_empty() && self.waiting.is_empty()
    }
}

/// What a change of membership asks of Redis.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Change {
    /// The member's metadata: the new one, or the one it had when it left.
    pub(super) meta: Arc<str>,
    /// The node starts listening to the group's channel.
    pub(super) subscribe: bool,
    /// The node stops listening to it.
    pub(super) unsubscribe: bool,
    pub(super) write: Write,
}

/// The presence entry to write.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Write {
    /// Set the member's metadata.
    Set,
    /// Delete the member; `last`: the node has no member left in the group.
    Delete { last: bool },
}

#[derive(Default)]
pub(super) struct LocalGroups {
    groups: HashMap<Arc<str>, Local>,
    /// Groups whose members changed while Redis was away: written whole, and announced,
    /// once it is back.
    changed_while_down: HashSet<Arc<str>>,
}

impl LocalGroups {
    /// A member of `group` on this node joined, changed its metadata or left; `up` says
    /// whether Redis is there now.
    pub(super) fn changed(
        &mut self,
        group: &Arc<str>,
        seq: u64,
        meta: Arc<str>,
        change: PresenceChange,
        up: bool,
    ) -> Change {
        if !up {
            self.changed_while_down.insert(group.clone());
        }
        let local = self.groups.entry(group.clone()).or_default();
        let was_unused = local.is_unused();
        match change {
            PresenceChange::Joined | PresenceChange::Updated => {
                local.members.insert(seq, meta.clone());
                Change { meta, subscribe: was_unused, unsubscribe: false, write: Write::Set }
            }
            _ => {
                let meta = local.members.remove(&seq).unwrap_or(meta);
                let last = local.members.is_empty();
                let unsubscribe = local.is_unused();
                if unsubscribe {
                    self.groups.remove(group);
                }
                Change { meta, subscribe: false, unsubscribe, write: Write::Delete { last } }
            }
        }
    }

    /// `watcher` will watch `group`, once told its members; whether the node starts
    /// listening to the group's channel for it.
    pub(super) fn watch(&mut self, group: &Arc<str>, watcher: Recipient<ClusterEvent>) -> bool {
        let local = self.groups.entry(group.clone()).or_default();
        let first = local.is_unused();
        local.waiting.push(watcher);
        first
    }

    /// The groups with watchers waiting to be told the members.
    pub(super) fn with_waiting_watchers(&self) -> Vec<Arc<str>> {
        self.groups.iter().filter(|(_, l)| !l.waiting.is_empty()).map(|(g, _)| g.clone()).collect()
    }

    /// The waiting watchers of `group`, from now on told of every change.
    pub(super) fn introduce(&mut self, group: &str) -> Vec<Recipient<ClusterEvent>> {
        let Some(local) = self.groups.get_mut(group) else { return Vec::new() };
        let new = std::mem::take(&mut local.waiting);
        for w in &new {
            local.watchers.add(w.clone());
        }
        new
    }

    /// Tells the watchers of `group` of `event`.
    pub(super) fn tell(&mut self, group: &str, event: ClusterEvent) {
        if let Some(local) = self.groups.get_mut(group) {
            local.watchers.tell(event);
        }
    }

    /// Whether `group` has watchers (told or waiting).
    pub(super) fn is_watched(&self, group: &str) -> bool {
        self.groups.get(group).is_some_and(|l| !l.watchers.is_empty() || !l.waiting.is_empty())
    }

    /// The groups watched from this node.
    pub(super) fn watched(&self) -> Vec<Arc<str>> {
        self.groups.keys().filter(|g| self.is_watched(g)).cloned().collect()
    }

    /// This node's members of `group`, by number.
    pub(super) fn members(&self, group: &str) -> Vec<(u64, Arc<str>)> {
        let mut members: Vec<(u64, Arc<str>)> = self
            .groups
            .get(group)
            .map(|l| l.members.iter().map(|(s, m)| (*s, m.clone())).collect())
            .unwrap_or_default();
        members.sort_unstable_by_key(|(seq, _)| *seq);
        members
    }

    /// The groups whose channels the node listens to.
    pub(super) fn channels(&self) -> Vec<Arc<str>> {
        self.groups.keys().cloned().collect()
    }

    /// The groups with members here: their presence entries are this node's to refresh.
    pub(super) fn with_members(&self) -> Vec<Arc<str>> {
        self.groups.iter().filter(|(_, l)| !l.members.is_empty()).map(|(g, _)| g.clone()).collect()
    }

    /// The groups to write whole after the link to Redis is back: those with members
    /// here, and those whose members changed meanwhile (their last one may have left).
    pub(super) fn to_rewrite(&self) -> Vec<Arc<str>> {
        let mut groups: HashSet<Arc<str>> = self.changed_while_down.clone();
        groups.extend(self.with_members());
        groups.into_iter().collect()
    }

    /// The groups of [`to_rewrite`](Self::to_rewrite) are written.
    pub(super) fn rewritten(&mut self) {
        self.changed_while_down.clear();
    }

    /// Whether the node listens to `group`'s channel: it has members or watchers there.
    pub(super) fn listens(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// Forgets the watchers that have stopped; the groups left with neither members nor
    /// watchers, which the node no longer needs to listen to.
    pub(super) fn drop_stopped_watchers(&mut self) -> Vec<Arc<str>> {
        let mut unused = Vec::new();
        for (group, local) in &mut self.groups {
            local.watchers.drop_stopped();
            local.waiting.retain(|w| w.connected());
            if local.is_unused() {
                unused.push(group.clone());
            }
        }
        for group in &unused {
            self.groups.remove(group);
        }
        unused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(name: &str) -> Arc<str> {
        name.into()
    }

    #[test]
    fn the_first_member_subscribes_and_writes_the_last_deletes_and_unsubscribes() {
        let mut l = LocalGroups::default();
        let room = g("room");
        let first = l.changed(&room, 1, "ada".into(), PresenceChange::Joined, true);
        assert_eq!(
            first,
            Change { meta: "ada".into(), subscribe: true, unsubscribe: false, write: Write::Set }
        );
        let second = l.changed(&room, 2, "bo".into(), PresenceChange::Joined, true);
        assert!(!second.subscribe);
        let update = l.changed(&room, 1, "ada l.".into(), PresenceChange::Updated, true);
        assert_eq!(update.write, Write::Set);
        assert_eq!(l.members("room"), [(1, "ada l.".into()), (2, "bo".into())]);
        assert_eq!(l.with_members(), std::slice::from_ref(&room));
        // A leave reports the metadata the member had.
        let left = l.changed(&room, 1, "".into(), PresenceChange::Left, true);
        assert_eq!(
            left,
            Change {
                meta: "ada l.".into(),
                subscribe: false,
                unsubscribe: false,
                write: Write::Delete { last: false }
            }
        );
        let gone = l.changed(&room, 2, "".into(), PresenceChange::Disconnected, true);
        assert_eq!(gone.write, Write::Delete { last: true });
        assert!(gone.unsubscribe);
        assert!(l.channels().is_empty() && l.with_members().is_empty() && !l.listens("room"));
        assert!(l.to_rewrite().is_empty(), "nothing happened while Redis was away");
    }

    #[test]
    fn changes_while_redis_is_away_are_written_again_even_when_the_group_emptied() {
        let mut l = LocalGroups::default();
        let (a, b) = (g("a"), g("b"));
        l.changed(&a, 1, "x".into(), PresenceChange::Joined, true);
        l.changed(&b, 2, "y".into(), PresenceChange::Joined, true);
        // Redis goes: b's only member leaves, a's stays.
        l.changed(&b, 2, "".into(), PresenceChange::Left, false);
        let mut again = l.to_rewrite();
        again.sort();
        assert_eq!(again, [a.clone(), b], "b is written (empty) so that others drop the member");
        assert_eq!(l.to_rewrite().len(), 2, "until written");
        l.rewritten();
        assert_eq!(l.to_rewrite(), [a], "then the groups with members only");
    }

    #[actix_rt::test]
    async fn watchers_wait_until_introduced_and_keep_a_group_listened_to() {
        use actix::prelude::*;
        struct Quiet;
        impl Actor for Quiet {
            type Context = Context<Self>;
        }
        impl Handler<ClusterEvent> for Quiet {
            type Result = ();
            fn handle(&mut self, _: ClusterEvent, _: &mut Context<Self>) {}
        }
        let mut l = LocalGroups::default();
        let room = g("room");
        let watcher = Quiet.start();
        assert!(l.watch(&room, watcher.clone().recipient()), "the first interest listens");
        assert!(l.is_watched("room"));
        assert_eq!(l.with_waiting_watchers(), std::slice::from_ref(&room));
        assert!(!l.changed(&room, 1, "x".into(), PresenceChange::Joined, true).subscribe, "listened already");
        assert_eq!(l.introduce("room").len(), 1);
        assert!(l.with_waiting_watchers().is_empty());
        assert!(!l.changed(&room, 1, "".into(), PresenceChange::Left, true).unsubscribe, "still watched");
        assert!(l.drop_stopped_watchers().is_empty());
        drop(watcher);
        // A watcher whose actor has stopped no longer keeps the group.
        let mut l2 = LocalGroups::default();
        let stopped = {
            let addr = Quiet.start();
            let r = addr.clone().recipient();
            addr.do_send(StopNow);
            r
        };
        l2.watch(&room, stopped);
        while l2.groups["room"].waiting[0].connected() {
            tokio::task::yield_now().await;
        }
        assert_eq!(l2.drop_stopped_watchers(), [room]);
        assert!(l2.channels().is_empty());

        #[derive(Message)]
        #[rtype(result = "()")]
        struct StopNow;
        impl Handler<StopNow> for Quiet {
            type Result = ();
            fn handle(&mut self, _: StopNow, ctx: &mut Context<Self>) {
                ctx.stop();
            }
        }
    }
}
