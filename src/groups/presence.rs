//! What presence reports: a group's members, and the changes a watcher is told of.

use std::sync::Arc;

use actix::Recipient;

use crate::connection::ConnectionId;

/// One member of a group: its connection and the metadata it joined with.
///
/// ```
/// # use actix_meta_websocket::groups::Member;
/// fn names(members: &[Member]) -> Vec<&str> {
///     members.iter().map(|m| &*m.meta).collect()
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Member {
    /// The member's connection.
    pub id: ConnectionId,
    /// What the application attached when it joined (a user name, a JSON object...);
    /// empty when it joined without any.
    pub meta: Arc<str>,
}

/// A change in a group's membership, sent to the group's watchers (see
/// [`Groups::watch`](crate::Groups::watch)) after the change is made: a
/// [`Groups::members`](crate::Groups::members) called on receipt already shows it.
///
/// ```
/// use actix::prelude::*;
/// use actix_meta_websocket::{groups::{PresenceChange, PresenceEvent}};
///
/// struct Lobby;
/// impl Actor for Lobby { type Context = Context<Self>; }
/// impl Handler<PresenceEvent> for Lobby {
///     type Result = ();
///     fn handle(&mut self, e: PresenceEvent, _: &mut Context<Self>) {
///         match e.change {
///             PresenceChange::Present => {} // there before this watcher: no news
///             PresenceChange::Joined => println!("{} joined {}", e.member.meta, e.group),
///             _ => println!("{} left {} ({:?})", e.member.meta, e.group, e.change),
///         }
///     }
/// }
/// ```
#[derive(Clone, Debug, actix::Message)]
#[rtype(result = "()")]
pub struct PresenceEvent {
    /// The group's name.
    pub group: Arc<str>,
    /// The member, with its metadata (the new one for [`PresenceChange::Updated`]).
    pub member: Member,
    /// What happened.
    pub change: PresenceChange,
}

/// What happened to a member (the example of [`PresenceEvent`] matches on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresenceChange {
    /// It was a member already when the watcher began to watch: a new watcher is first
    /// told every member there, so that watching late misses nobody.
    Present,
    /// It joined.
    Joined,
    /// It joined again with new metadata.
    Updated,
    /// It was made to leave ([`Groups::leave`](crate::Groups::leave)).
    Left,
    /// Its connection ended: it left every group before its `MessageDisconnect`.
    Disconnected,
}

impl super::Groups {
    /// Sends `watcher` the members of `group` there now (each as
    /// [`PresenceChange::Present`], in join order), then a [`PresenceEvent`] for every
    /// join, update and leave, until the watcher's actor stops; so watching late misses
    /// nobody. A watched group stays (empty) while it has watchers. These are this node's members only; across a cluster, use
    /// `Cluster::watch`.
    ///
    /// Events go out after the change, as actix messages, so other messages can overtake
    /// them: a joiner's first [`WsMessage`](crate::WsMessage) can reach its target before
    /// that target's own `PresenceEvent` for the join. A handler that must know who is in
    /// a group asks [`contains`](Self::contains) or [`members`](Self::members), exact when
    /// they return, and uses events only to tell others:
    ///
    /// ```no_run
    /// # use actix::prelude::*;
    /// # use actix_meta_websocket::{Groups, WsMessage, groups::PresenceEvent};
    /// struct Room { groups: Groups }
    /// # impl Actor for Room { type Context = Context<Self>; }
    /// impl Handler<WsMessage> for Room {
    ///     type Result = ();
    ///     fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
    ///         // Not "have I seen its Joined event yet": the group itself knows.
    ///         if let Some(text) = m.as_text().filter(|_| self.groups.contains("lobby", &m.id)) {
    ///             self.groups.broadcast_except("lobby", text, &m.id);
    ///         }
    ///     }
    /// }
    /// impl Handler<PresenceEvent> for Room {
    ///     type Result = ();
    ///     fn handle(&mut self, e: PresenceEvent, _: &mut Context<Self>) {
    ///         self.groups.broadcast(&e.group, format!("{} {:?}", e.member.meta, e.change));
    ///     }
    /// }
    /// # fn demo(groups: &Groups, room: Addr<Room>) {
    /// groups.watch("lobby", room.recipient());
    /// # }
    /// ```
    pub fn watch(&self, group: &str, watcher: Recipient<PresenceEvent>) {
        loop {
            if self.shared.get_or_make(group).watch(watcher.clone()).is_ok() {
                return;
            }
        }
    }
}
