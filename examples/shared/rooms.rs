//! The rooms of both chat examples: everyone starts in `lobby`, `/join <room>` moves to
//! another room, and anything else is said to one's room. Each room is watched by the
//! actor that `watcher` names, from the moment it comes into being.

use actix::prelude::*;
use actix_meta_websocket::{ConnectionId, Groups, PresenceEvent, WsMessage};

pub struct Rooms {
    pub groups: Groups,
    /// What guests' names hold between `guest` and their number.
    pub prefix: String,
}

impl Rooms {
    pub fn name(&self, id: &ConnectionId) -> String {
        format!("guest{}{}", self.prefix, id.seq())
    }

    /// Leaves the current room for `room`; the rooms' watchers tell everyone.
    pub fn enter(&self, room: &str, id: &ConnectionId, watcher: impl FnOnce() -> Recipient<PresenceEvent>) {
        // A group lasts while it has members or watchers: one that does not exist is new.
        if !self.groups.names().iter().any(|name| **name == *room) {
            self.groups.watch(room, watcher());
        }
        for old in self.groups.groups_of(id) {
            self.groups.leave(&old, id);
        }
        let _ = self.groups.join_with(room, id, self.name(id));
    }

    /// A line from `m`'s connection.
    pub fn said(&self, m: &WsMessage, watcher: impl FnOnce() -> Recipient<PresenceEvent>) {
        let Some(text) = m.as_text().map(str::trim) else { return };
        match text.strip_prefix("/join ").map(str::trim) {
            Some(room) if (1..=32).contains(&room.len()) => self.enter(room, &m.id, watcher),
            Some(_) => m.id.send("a room's name has 1 to 32 bytes"),
            None => {
                for room in self.groups.groups_of(&m.id) {
                    self.groups.broadcast(&room, format!("[{room}] {}: {text}", self.name(&m.id)));
                }
            }
        }
    }
}
