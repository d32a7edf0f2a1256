//! Where a client stands in a group's history, carried in the URL of each dial, so that a
//! reconnecting client rejoins right after the last broadcast it saw.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::groups::Position;

/// The last [`Position`] a client saw, put into the query of every dial as
/// `<key>=<position>` (see [`DialOptions::resume`](crate::DialOptions::resume)). The
/// client's target tells it each position it sees (the server puts them in its
/// broadcasts); the server reads it back with [`Since::from_query`](crate::groups::Since::from_query)
/// and joins the connection [`since`](crate::Groups::join_since) there.
///
/// ```no_run
/// use actix::prelude::*;
/// use actix_meta_websocket::*;
/// use actix_meta_websocket::client::{Backoff, Resume};
///
/// /// Broadcasts arrive as `<position> <text>`.
/// struct Reader { resume: Resume }
/// # impl Actor for Reader { type Context = Context<Self>; }
/// # impl Handler<MessageConnect> for Reader { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
/// # impl Handler<MessageDisconnect> for Reader { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
/// impl Handler<WsMessage> for Reader {
///     type Result = ();
///     fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
///         let at = m.as_text().and_then(|t| t.split(' ').next()?.parse().ok());
///         if let Some(at) = at {
///             self.resume.seen(at);
///         }
///     }
/// }
/// # #[actix::main] async fn main() {
/// let resume = Resume::new("since");
/// let reader = Reader { resume: resume.clone() }.start();
/// // Every dial, the first and each one after a lost connection, asks for what came after.
/// let options = DialOptions::new("wss://feed.example.com/ws", reader).resume(resume);
/// let _client = reconnect(options, Backoff::default(), None);
/// # let resume = Resume::new("since");
/// // Where the next dial resumes; and, when the server says it cannot, start afresh.
/// println!("resuming after {:?}", resume.last());
/// resume.clear();
/// # }
/// ```
#[derive(Clone)]
pub struct Resume {
    key: Arc<str>,
    last: Arc<Mutex<Option<Position>>>,
}

impl Resume {
    /// Nothing seen yet; the query key is `key` (`since`, say).
    pub fn new(key: &str) -> Self {
        Resume { key: key.into(), last: Arc::default() }
    }

    /// A broadcast at `at` was seen: the newest in its epoch is kept (a position of
    /// another epoch replaces what was kept: history started afresh).
    pub fn seen(&self, at: Position) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|l| l.epoch != at.epoch || l.offset < at.offset) {
            *last = Some(at);
        }
    }

    /// The position the next dial asks to resume after.
    pub fn last(&self) -> Option<Position> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the position: the next dial starts afresh (after the server said history
    /// could not recover it).
    pub fn clear(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// A connection ended with `reason`: if the server closed it saying that history cannot
    /// recover the position and the client must start over (close codes 4001 to 4004, see
    /// [`Unrecoverable`](crate::groups::Unrecoverable)), the position is forgotten; it is kept for
    /// every other ending (1013 included: history comes back). Returns the reason read.
    ///
    /// ```
    /// # use actix_meta_websocket::*;
    /// # use actix_meta_websocket::{client::Resume, groups::Unrecoverable};
    /// let resume = Resume::new("since");
    /// resume.seen("00000000075bcd15:42".parse().unwrap());
    /// let busy = DisconnectReason::Closed { initiator: Initiator::Peer, code: 1013.into(), reason: String::new() };
    /// assert_eq!(resume.closed(&busy), Some(Unrecoverable::Unavailable));
    /// assert!(resume.last().is_some(), "kept: try again");
    /// let gone = DisconnectReason::Closed { initiator: Initiator::Peer, code: 4002.into(), reason: String::new() };
    /// assert_eq!(resume.closed(&gone), Some(Unrecoverable::TooOld));
    /// assert_eq!(resume.last(), None, "start over");
    /// ```
    pub fn closed(&self, reason: &crate::message::DisconnectReason) -> Option<crate::groups::Unrecoverable> {
        let crate::message::DisconnectReason::Closed {
            initiator: crate::message::Initiator::Peer, code, ..
        } = reason
        else {
            return None;
        };
        let unrecoverable = crate::groups::Unrecoverable::from_close_code(*code)?;
        if !unrecoverable.is_retryable() {
            self.clear();
        }
        Some(unrecoverable)
    }

    /// `url` with the position in its query (replacing the key's value if it had one).
    pub(crate) fn apply(&self, url: &mut url::Url) {
        let Some(at) = self.last() else { return };
        let kept: Vec<(String, String)> =
            url.query_pairs().filter(|(k, _)| **k != *self.key).map(|(k, v)| (k.into(), v.into())).collect();
        let mut query = url.query_pairs_mut();
        query.clear();
        for (k, v) in kept {
            query.append_pair(&k, &v);
        }
        query.append_pair(&self.key, &at.to_string());
    }
}

impl fmt::Debug for Resume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resume").field("key", &self.key).field("last", &self.last()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_position_goes_into_the_query_in_place_of_an_older_one() {
        let r = Resume::new("since");
        let mut url = url::Url::parse("ws://h/ws?room=a&since=old").unwrap();
        r.apply(&mut url);
        assert_eq!(url.as_str(), "ws://h/ws?room=a&since=old", "nothing seen: the URL as given");
        r.seen(Position { epoch: 1, offset: 5 });
        r.seen(Position { epoch: 1, offset: 3 });
        assert_eq!(r.last(), Some(Position { epoch: 1, offset: 5 }), "an older one does not win");
        r.apply(&mut url);
        assert_eq!(url.as_str(), "ws://h/ws?room=a&since=0000000000000001%3A5");
        assert_eq!(
            crate::groups::Since::from_query(url.query().unwrap(), "since"),
            Ok(Some(crate::groups::Since::After(Position { epoch: 1, offset: 5 })))
        );
        r.seen(Position { epoch: 2, offset: 1 });
        assert_eq!(r.last(), Some(Position { epoch: 2, offset: 1 }), "a new epoch replaces");
        r.clear();
        assert_eq!(r.last(), None);
    }
}
