//! The members on other nodes of each group watched from this node, as this node knows
//! them: loaded from Redis when the first watcher comes (and again after a lost link),
//! kept current by the presence frames on the group's channel, by a node's roster after
//! its own lost link, and by a node's death. Every change to the picture is a change to
//! tell the watchers, so they never keep a member that is gone.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::cluster::events::ClusterMember;
use crate::cluster::ids::{GlobalId, NodeId};
use crate::groups::PresenceChange;

/// A change of the picture, as watchers are told it.
pub(super) type Told = (ClusterMember, PresenceChange);

#[derive(Default)]
pub(super) struct Rosters {
    groups: HashMap<Arc<str>, BTreeMap<GlobalId, Arc<str>>>,
}

impl Rosters {
    pub(super) fn is_loaded(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// What Redis lists for `group` now, members on `me` left out: the roster becomes that,
    /// and the differences are returned (every member as joined, the first time).
    pub(super) fn load(
        &mut self,
        group: &Arc<str>,
        listed: impl IntoIterator<Item = ClusterMember>,
        me: NodeId,
    ) -> Vec<Told> {
        let now: BTreeMap<GlobalId, Arc<str>> =
            listed.into_iter().filter(|m| m.id.node() != me).map(|m| (m.id, m.meta)).collect();
        let before = self.groups.entry(group.clone()).or_default();
        let told = diff(before, &now, |_| true);
        *before = now;
        told
    }

    /// A presence frame on `group`'s channel; what to tell, if the roster is kept and the
    /// frame changes it (after a load, a frame may repeat what the load already saw).
    pub(super) fn apply(
        &mut self,
        group: &str,
        member: ClusterMember,
        change: PresenceChange,
    ) -> Option<Told> {
        let roster = self.groups.get_mut(group)?;
        match change {
            PresenceChange::Joined | PresenceChange::Updated => {
                let known = roster.insert(member.id, member.meta.clone());
                match known {
                    Some(meta) if meta == member.meta => None,
                    Some(_) => Some((member, PresenceChange::Updated)),
                    None => Some((member, PresenceChange::Joined)),
                }
            }
            _ => {
                let meta = roster.remove(&member.id)?;
                Some((ClusterMember { id: member.id, meta }, change))
            }
        }
    }

    /// `node`'s own list of its members of `group`, sent when its link to Redis came back:
    /// what it did meanwhile reached nobody.
    pub(super) fn replace_node(
        &mut self,
        group: &str,
        node: NodeId,
        members: Vec<(u64, String)>,
    ) -> Vec<Told> {
        let Some(roster) = self.groups.get_mut(group) else { return Vec::new() };
        let now: BTreeMap<GlobalId, Arc<str>> =
            members.into_iter().map(|(seq, meta)| (GlobalId { node, seq }, meta.into())).collect();
        let told = diff(roster, &now, |id| id.node() == node);
        roster.retain(|id, _| id.node() != node);
        roster.extend(now);
        told
    }

    /// `node` is gone (it said goodbye, or its heartbeats stopped): each of its members
    /// disconnected, in every watched group.
    pub(super) fn node_down(&mut self, node: NodeId) -> Vec<(Arc<str>, Told)> {
        let mut told = Vec::new();
        for (group, roster) in &mut self.groups {
            let gone: Vec<GlobalId> = roster.keys().filter(|id| id.node() == node).copied().collect();
            for id in gone {
                if let Some(meta) = roster.remove(&id) {
                    told.push((group.clone(), (ClusterMember { id, meta }, PresenceChange::Disconnected)));
                }
            }
        }
        told
    }

    /// The members of `group` on other nodes, by id.
    pub(super) fn members(&self, group: &str) -> Vec<ClusterMember> {
        self.groups
            .get(group)
            .map(|r| r.iter().map(|(id, meta)| ClusterMember { id: *id, meta: meta.clone() }).collect())
            .unwrap_or_default()
    }

    /// Nobody watches `group` any more.
    pub(super) fn forget(&mut self, group: &str) {
        self.groups.remove(group);
    }

    /// Keeps the rosters of the groups `watched` accepts.
    pub(super) fn keep(&mut self, watched: impl Fn(&str) -> bool) {
        self.groups.retain(|g, _| watched(g));
    }
}

/// How `before` became `now`, over the members `mine` selects: joined, updated,
/// disconnected (the reason a member left while nobody could see is not known).
fn diff(
    before: &BTreeMap<GlobalId, Arc<str>>,
    now: &BTreeMap<GlobalId, Arc<str>>,
    mine: impl Fn(&GlobalId) -> bool,
) -> Vec<Told> {
    let mut told = Vec::new();
    for (id, meta) in before.iter().filter(|(id, _)| mine(id)) {
        if !now.contains_key(id) {
            told.push((ClusterMember { id: *id, meta: meta.clone() }, PresenceChange::Disconnected));
        }
    }
    for (id, meta) in now {
        let member = || ClusterMember { id: *id, meta: meta.clone() };
        match before.get(id) {
            None => told.push((member(), PresenceChange::Joined)),
            Some(old) if old != meta => told.push((member(), PresenceChange::Updated)),
            Some(_) => {}
        }
    }
    told
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: NodeId = NodeId(1);
    const B: NodeId = NodeId(2);
    const C: NodeId = NodeId(3);

    fn m(node: NodeId, seq: u64, meta: &str) -> ClusterMember {
        ClusterMember { id: GlobalId { node, seq }, meta: meta.into() }
    }

    fn room() -> Arc<str> {
        "room".into()
    }

    #[test]
    fn a_first_load_is_every_remote_member_joining_and_a_reload_the_difference() {
        let mut r = Rosters::default();
        assert!(!r.is_loaded("room"));
        let told = r.load(&room(), [m(ME, 1, "me"), m(B, 1, "bo"), m(C, 7, "cy")], ME);
        assert_eq!(told, [(m(B, 1, "bo"), PresenceChange::Joined), (m(C, 7, "cy"), PresenceChange::Joined)]);
        assert!(r.is_loaded("room"));
        // After our lost link: bo left, cy renamed, di joined meanwhile.
        let told = r.load(&room(), [m(C, 7, "cy!"), m(C, 8, "di")], ME);
        assert_eq!(
            told,
            [
                (m(B, 1, "bo"), PresenceChange::Disconnected),
                (m(C, 7, "cy!"), PresenceChange::Updated),
                (m(C, 8, "di"), PresenceChange::Joined),
            ]
        );
        assert_eq!(r.members("room"), [m(C, 7, "cy!"), m(C, 8, "di")]);
    }

    #[test]
    fn frames_change_the_picture_once_and_only_for_kept_rosters() {
        let mut r = Rosters::default();
        assert_eq!(r.apply("room", m(B, 1, "bo"), PresenceChange::Joined), None, "not watched here");
        r.load(&room(), [m(B, 1, "bo")], ME);
        // The frame of a join the load already saw tells nothing new.
        assert_eq!(r.apply("room", m(B, 1, "bo"), PresenceChange::Joined), None);
        assert_eq!(
            r.apply("room", m(B, 1, "bo2"), PresenceChange::Updated),
            Some((m(B, 1, "bo2"), PresenceChange::Updated))
        );
        assert_eq!(
            r.apply("room", m(B, 2, "x"), PresenceChange::Joined),
            Some((m(B, 2, "x"), PresenceChange::Joined))
        );
        // A leave is told with the metadata the member had.
        assert_eq!(
            r.apply("room", m(B, 1, ""), PresenceChange::Left),
            Some((m(B, 1, "bo2"), PresenceChange::Left))
        );
        assert_eq!(r.apply("room", m(B, 1, ""), PresenceChange::Left), None, "once");
        r.forget("room");
        assert!(r.members("room").is_empty());
    }

    #[test]
    fn a_dead_node_takes_its_members_with_it_in_every_group() {
        let mut r = Rosters::default();
        r.load(&room(), [m(B, 1, "bo"), m(C, 1, "cy")], ME);
        r.load(&"other".into(), [m(B, 2, "bo-too")], ME);
        let mut told = r.node_down(B);
        told.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            told,
            [
                ("other".into(), (m(B, 2, "bo-too"), PresenceChange::Disconnected)),
                (room(), (m(B, 1, "bo"), PresenceChange::Disconnected)),
            ]
        );
        assert_eq!(r.members("room"), [m(C, 1, "cy")]);
        assert!(r.node_down(B).is_empty(), "once");
    }

    #[test]
    fn a_nodes_roster_replaces_what_it_did_while_nobody_could_hear() {
        let mut r = Rosters::default();
        r.load(&room(), [m(B, 1, "bo"), m(B, 2, "bea"), m(C, 1, "cy")], ME);
        let told = r.replace_node("room", B, vec![(2, "bea".into()), (3, "new".into())]);
        assert_eq!(
            told,
            [(m(B, 1, "bo"), PresenceChange::Disconnected), (m(B, 3, "new"), PresenceChange::Joined)]
        );
        assert_eq!(r.members("room"), [m(B, 2, "bea"), m(B, 3, "new"), m(C, 1, "cy")]);
        assert!(r.replace_node("unwatched", B, vec![(1, "x".into())]).is_empty());
    }
}
