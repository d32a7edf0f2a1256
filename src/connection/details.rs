//! What a connection reports about itself: the addresses and negotiated settings of
//! `MessageConnect`, and the message counts of `Stats`.
//!
//! Plain data; knows nothing of sockets, frames or actors.

use std::net::SocketAddr;
use std::time::Instant;

use actix_http::header::HeaderMap;

use super::Parts;
use crate::message::ConnectData;
use crate::{ConnectionId, MessageConnect};

pub(super) struct Details {
    pub(super) started: Instant,
    pub(super) local_addr: Option<SocketAddr>,
    pub(super) remote_addr: Option<SocketAddr>,
    pub(super) protocol: Option<String>,
    pub(super) compressed: bool,
    /// Needed only until `MessageConnect` goes out.
    connect: Option<Box<ConnectInfo>>,
    pub(super) messages: MessageCounts,
}

/// Data messages and their payload bytes, both ways.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct MessageCounts {
    pub(super) messages_in: u64,
    pub(super) messages_out: u64,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
}

impl MessageCounts {
    pub(super) fn received(&mut self, payload: usize) {
        self.messages_in += 1;
        self.bytes_in += payload as u64;
    }

    pub(super) fn sent(&mut self, payload: usize) {
        self.messages_out += 1;
        self.bytes_out += payload as u64;
    }
}

struct ConnectInfo {
    uri: String,
    headers: HeaderMap,
    data: Option<ConnectData>,
}

impl Details {
    /// Takes what `parts` says about the connection; `Parts::headers` is copied.
    pub(super) fn new(parts: &mut Parts<'_>, now: Instant) -> Self {
        let info = ConnectInfo {
            uri: std::mem::take(&mut parts.uri),
            headers: sized_copy(parts.headers),
            data: parts.data.take(),
        };
        Details {
            started: now,
            local_addr: parts.local_addr,
            remote_addr: parts.remote_addr,
            protocol: parts.protocol.take(),
            compressed: parts.deflate.is_some(),
            connect: Some(Box::new(info)),
            messages: MessageCounts::default(),
        }
    }

    /// The connection's `MessageConnect`; its request data is handed over, so this is
    /// called once.
    pub(super) fn message_connect(&mut self, id: ConnectionId) -> MessageConnect {
        let info = self.connect.take().map_or_else(
            || ConnectInfo { uri: String::new(), headers: HeaderMap::new(), data: None },
            |info| *info,
        );
        MessageConnect {
            id,
            remote_addr: self.remote_addr,
            local_addr: self.local_addr,
            uri: info.uri,
            headers: info.headers,
            protocol: self.protocol.clone(),
            compressed: self.compressed,
            data: info.data,
        }
    }
}

/// A copy of `headers` in a map sized to them. `HeaderMap::clone` keeps the source's
/// capacity, and actix-http reuses request heads, so a plain clone would keep a pooled
/// head's whole table alive for the life of the connection.
fn sized_copy(headers: &HeaderMap) -> HeaderMap {
    let mut copy = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        copy.append(name.clone(), value.clone());
    }
    copy
}

#[cfg(test)]
mod tests {
    use actix_http::header::{HeaderName, HeaderValue};

    use super::*;

    #[test]
    fn header_copies_are_sized_to_their_content() {
        // A pooled request head keeps the capacity of the largest request it ever held.
        let mut pooled = HeaderMap::with_capacity(200);
        let tag = HeaderName::from_static("x-tag");
        pooled.append(tag.clone(), HeaderValue::from_static("one"));
        pooled.append(tag.clone(), HeaderValue::from_static("two"));
        pooled.insert(HeaderName::from_static("host"), HeaderValue::from_static("example"));
        assert!(pooled.clone().capacity() >= 200, "a plain clone keeps the capacity");

        let copy = sized_copy(&pooled);
        assert!(copy.capacity() < 16, "capacity {}", copy.capacity());
        let tags: Vec<_> = copy.get_all(&tag).collect();
        assert_eq!(tags, ["one", "two"]);
        assert_eq!(copy.get("host").map(|v| v.as_bytes()), Some(&b"example"[..]));
        assert_eq!(copy.len(), pooled.len());
    }
}
