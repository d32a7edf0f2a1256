//! What the history tests share: a room that joins each connection since the position its
//! URL names, and a client that reconnects from the last position it saw and checks that
//! what it gets, session after session, is every broadcast once and in order.

use std::time::Duration;

use actix::prelude::*;
use actix_meta_websocket::groups::{Position, RecoveryError, Since};
use actix_meta_websocket::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message as TMessage;

/// Joins each connection to `group` since the position in its URL (`?since=now`,
/// `?since=start` or `?since=<position>`); tells a connection that cannot recover
/// `unrecoverable <reason> <current position>`, and does not join it.
pub struct Room {
    pub groups: Groups,
    pub group: &'static str,
}

impl Actor for Room {
    type Context = Context<Self>;
}

/// The `since` a connection asks for in its URL (now, if it asks for none).
pub fn since_of(uri: &str) -> Since {
    let query = uri.split_once('?').map_or("", |(_, q)| q);
    Since::from_query(query, "since").expect("a valid since").unwrap_or(Since::Now)
}

impl Handler<MessageConnect> for Room {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        let since = since_of(&m.uri);
        let joining = self.groups.join_since(self.group, &m.id, "", since);
        actix::spawn(async move {
            if let Err(RecoveryError::Unrecoverable { reason, current }) = joining.await {
                let current = current.map(|p| p.to_string()).unwrap_or_default();
                m.id.send(format!("unrecoverable {reason:?} {current}"));
            }
        });
    }
}

impl Handler<WsMessage> for Room {
    type Result = ();
    fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {}
}

impl Handler<MessageDisconnect> for Room {
    type Result = ();
    fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {}
}

/// Publishes `n` broadcasts to `group`, each its own position as text, a few at a time
/// (the load the joins meet); the positions, in order.
pub async fn publish(groups: &Groups, group: &'static str, n: usize) -> Vec<Position> {
    let mut made = Vec::with_capacity(n);
    for i in 0..n {
        let p = groups.publish(group, |at| at.to_string()).await.expect("published");
        made.push(p.position);
        if i % 8 == 7 {
            // Paces the load so that joins and reconnects happen in the middle of it.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    made
}

/// A client of `base` (a `ws://` URL without query) that reads `last_of` broadcasts in
/// sessions of random length, reconnecting each time since the last position it saw,
/// until it has seen `last`; every position it saw, in order.
pub async fn follow(urls: &[String], last: Position, first: Since) -> Vec<Position> {
    let mut seen: Vec<Position> = Vec::new();
    let mut session = 0usize;
    while seen.last() != Some(&last) {
        let since = match seen.last() {
            Some(p) => p.to_string(),
            None if first == Since::Start => "start".to_owned(),
            None => "now".to_owned(),
        };
        let url = format!("{}?since={since}", urls[session % urls.len()]);
        session += 1;
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("handshake");
        let quota = 20 + rand::random::<u64>() as usize % 200;
        for _ in 0..quota {
            let msg = tokio::time::timeout(Duration::from_secs(20), ws.next()).await;
            let Ok(Some(Ok(TMessage::Text(t)))) = msg else { panic!("session {session}: {msg:?}") };
            let p: Position = t.as_str().parse().unwrap_or_else(|_| panic!("not a position: {t}"));
            seen.push(p);
            if p == last {
                break;
            }
        }
        drop(ws);
    }
    seen
}

/// `seen` is every position after its first, up to `last`, once and in order.
pub fn assert_whole(seen: &[Position], last: Position) {
    assert!(!seen.is_empty());
    for w in seen.windows(2) {
        assert_eq!(w[1].epoch, w[0].epoch, "one epoch");
        assert_eq!(w[1].offset, w[0].offset + 1, "after {} came {}: a gap or a duplicate", w[0], w[1]);
    }
    assert_eq!(seen.last(), Some(&last));
}
