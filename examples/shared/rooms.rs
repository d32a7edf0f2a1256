//! The rooms of both chat examples: everyone starts in `lobby`, `/join <room>` moves to
//! another room, and anything else is said to one's room. Each room is watched from the
//! moment anyone here first enters it; news of who came and went goes to this server's
//! members of the room.
//!
//! Every room keeps its recent history: each message is sent as `@<position> [room] ...`,
//! and a page that reconnects with `?room=<room>&since=<position>` gets what it missed and
//! nothing twice (a new page gets the room's latest messages).

use std::collections::HashSet;
use std::time::Duration;

use actix_meta_websocket::{
    groups::{HistoryLimits, PresenceChange, RecoveryError, Since, Unrecoverable},
    ConnectionId, Groups, WsMessage,
};

pub struct Rooms {
    pub groups: Groups,
    /// What guests' names hold between `guest` and their number.
    pub prefix: String,
    watched: HashSet<String>,
}

/// Where a connection starts: the room and the place in its history its URL asks for.
pub struct Start {
    pub room: String,
    pub since: Since,
}

impl Start {
    /// `?room=<room>&since=<position>` (both optional): the lobby and its latest messages
    /// by default.
    pub fn of(uri: &str) -> Result<Start, String> {
        let query = uri.split_once('?').map_or("", |(_, q)| q);
        let room = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "room")
            .map_or_else(|| "lobby".to_owned(), |(_, v)| v.into_owned());
        let since = Since::from_query(query, "since").map_err(|e| e.to_string())?;
        Ok(Start { room, since: since.unwrap_or(Since::Start) })
    }
}

impl Rooms {
    /// Rooms on `groups`, each keeping its last `keep` messages of the last hour.
    pub fn new(groups: Groups, prefix: String, keep: usize) -> Self {
        let limits = HistoryLimits::default()
            .max_messages(keep)
            .max_replay(keep)
            .max_bytes(keep.saturating_mul(4096))
            .max_age(Duration::from_secs(3600));
        groups.keep_history("*", limits);
        Rooms { groups, prefix, watched: HashSet::new() }
    }

    pub fn name(&self, id: &ConnectionId) -> String {
        format!("guest{}{}", self.prefix, id.seq())
    }

    /// Leaves the current room for `room`, replaying its history `since`; `watch` starts
    /// watching a room entered here for the first time. If history cannot give back what
    /// was missed, the page is told, and gets the room's latest messages instead.
    pub fn enter(&mut self, room: &str, id: &ConnectionId, since: Since, watch: impl FnOnce(&str)) {
        if !valid_room(room) {
            id.send("a room's name has 1 to 32 bytes");
            return;
        }
        if self.watched.insert(room.to_owned()) {
            watch(room);
        }
        for old in self.groups.groups_of(id) {
            self.groups.leave(&old, id);
        }
        let (groups, id, room, name) = (self.groups.clone(), id.clone(), room.to_owned(), self.name(id));
        actix::spawn(async move {
            let joined = match groups.join_since(&room, &id, name.clone(), since).await {
                Err(RecoveryError::Unrecoverable { reason: Unrecoverable::Unavailable, .. }) => {
                    // History cannot be read now (Redis is away): 1013, the page keeps its
                    // position and comes back shortly (the crate's refusal convention).
                    Unrecoverable::Unavailable.refuse(&id);
                    return;
                }
                // Through `send_to`, not `id.send`: in order with the greeting before it and
                // the room's broadcasts after it (`id.send` takes a path of its own).
                Err(RecoveryError::Unrecoverable { reason, .. }) => {
                    let gone = format!("[{room}] missed messages are gone ({reason}); here are the latest");
                    groups.send_to([&id], gone);
                    groups.join_since(&room, &id, name, Since::Start).await
                }
                other => other,
            };
            match joined {
                Ok(_) => {
                    groups.send_to([&id], format!("[{room}] you are here; /join <room> to move"));
                }
                Err(e) => {
                    let _ = id.close(1013, &format!("could not join {room}: {e}"));
                }
            }
        });
    }

    /// A line from `m`'s connection.
    pub fn said(&mut self, m: &WsMessage, watch: impl FnOnce(&str)) {
        let Some(text) = m.as_text().map(str::trim) else { return };
        match text.strip_prefix("/join ").map(str::trim) {
            Some(room) => self.enter(room, &m.id, Since::Start, watch),
            None => {
                let (text, name) = (text.to_owned(), self.name(&m.id));
                for room in self.groups.groups_of(&m.id) {
                    let line = format!("[{room}] {name}: {text}");
                    let sent = self.groups.publish(&room, move |at| format!("@{at} {line}"));
                    let id = m.id.clone();
                    actix::spawn(async move {
                        if let Err(e) = sent.await {
                            id.send(format!("[{room}] not sent: {e}"));
                        }
                    });
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

fn valid_room(room: &str) -> bool {
    (1..=32).contains(&room.len()) && !room.contains(['[', ']', '@'])
}
