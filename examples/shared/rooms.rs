//! The rooms of both chat examples: everyone starts in `lobby`, `/join <room>` moves to
//! another room, and anything else is said to one's room. Each room is watched from the
//! moment anyone here first enters it; news of who came and went goes to this server's
//! members of the room.

use std::collections::HashSet;

use actix_meta_websocket::{ConnectionId, Groups, PresenceChange, WsMessage};

pub struct Rooms {
    pub groups: Groups,
    /// What guests' names hold between `guest` and their number.
    pub prefix: String,
    watched: HashSet<String>,
}

impl Rooms {
    pub fn new(groups: Groups, prefix: String) -> Self {
        Rooms { groups, prefix, watched: HashSet::new() }
    }

    pub fn name(&self, id: &ConnectionId) -> String {
        format!("guest{}{}", self.prefix, id.seq())
    }

    /// Leaves the current room for `room`; `watch` starts watching a room entered here
    /// for the first time.
    pub fn enter(&mut self, room: &str, id: &ConnectionId, watch: impl FnOnce(&str)) {
        if self.watched.insert(room.to_owned()) {
            watch(room);
        }
        for old in self.groups.groups_of(id) {
            self.groups.leave(&old, id);
        }
        let _ = self.groups.join_with(room, id, self.name(id));
    }

    /// A line from `m`'s connection.
    pub fn said(&mut self, m: &WsMessage, watch: impl FnOnce(&str)) {
        let Some(text) = m.as_text().map(str::trim) else { return };
        match text.strip_prefix("/join ").map(str::trim) {
            Some(room) if (1..=32).contains(&room.len()) => self.enter(room, &m.id, watch),
            Some(_) => m.id.send("a room's name has 1 to 32 bytes"),
            None => {
                for room in self.groups.groups_of(&m.id) {
                    self.groups.broadcast(&room, format!("[{room}] {}: {text}", self.name(&m.id)));
                }
            }
        }
    }

    /// Tells this server's members of `room` that `who` came or went, and who is there.
    pub fn tell(&self, room: &str, who: &str, change: PresenceChange, names: &[String]) {
        let verb = match change {
            PresenceChange::Present => return, // there before the room was watched: no news
            PresenceChange::Joined => "joined",
            PresenceChange::Updated => "changed",
            _ => "left",
        };
        let here = self.groups.members(room);
        self.groups.send_to(
            here.iter().map(|m| &m.id),
            format!("[{room}] {who} {verb}; here: {}", names.join(", ")),
        );
    }
}
