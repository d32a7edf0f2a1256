//! What a connection reports about itself: the addresses and negotiated settings of
//! `MessageConnect`, and the message counts of `Stats`.
//!
//! Plain data; knows nothing of sockets, frames or actors.

use std::net::SocketAddr;
use std::time::Instant;

use actix_http::header::{HeaderMap, HeaderValue};

use super::Setup;
use crate::connection::{ConnectionId, MessageConnect};
use crate::telemetry::Reported;

pub(super) struct Details {
    pub(super) started: Instant,
    pub(super) local_addr: Option<SocketAddr>,
    pub(super) remote_addr: Option<SocketAddr>,
    pub(super) protocol: Option<String>,
    pub(super) compressed: bool,
    /// Needed only until `MessageConnect` goes out.
    connect: Option<Box<ConnectInfo>>,
    pub(super) messages: MessageCounts,
    /// What the metrics recorder has been told of its traffic (nothing without `metrics`).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(super) reported: Reported,
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
}

impl Details {
    /// Takes what `setup` says about the connection.
    pub(super) fn new(setup: &mut Setup, now: Instant) -> Self {
        let info =
            ConnectInfo { uri: std::mem::take(&mut setup.uri), headers: std::mem::take(&mut setup.headers) };
        Details {
            started: now,
            local_addr: setup.local_addr,
            remote_addr: setup.remote_addr,
            protocol: setup.protocol.take(),
            compressed: setup.deflate.is_some(),
            connect: Some(Box::new(info)),
            messages: MessageCounts::default(),
            reported: Reported::default(),
        }
    }

    /// The connection's `MessageConnect`; its request data is handed over, so this is
    /// called once.
    pub(super) fn message_connect(&mut self, id: ConnectionId) -> MessageConnect {
        let info = self
            .connect
            .take()
            .map_or_else(|| ConnectInfo { uri: String::new(), headers: HeaderMap::new() }, |info| *info);
        MessageConnect {
            id,
            remote_addr: self.remote_addr,
            local_addr: self.local_addr,
            uri: info.uri,
            headers: info.headers,
            protocol: self.protocol.clone(),
            compressed: self.compressed,
        }
    }
}

/// A copy of `headers` that owns its memory, in a map sized to them. The values a request
/// head parses into are slices of actix-http's read buffer, and `HeaderMap::clone` keeps
/// the source's capacity (actix-http reuses request heads): a target that keeps the
/// headers would otherwise keep the whole buffer and table alive for the connection's life.
/// The values share one buffer of their own, sized to them: one allocation, not one each.
pub(crate) fn copy_headers(headers: &HeaderMap) -> HeaderMap {
    let mut all = Vec::with_capacity(headers.iter().map(|(_, v)| v.len()).sum());
    for (_, value) in headers.iter() {
        all.extend_from_slice(value.as_bytes());
    }
    let all = bytes::Bytes::from(all);
    let mut copy = HeaderMap::with_capacity(headers.len());
    let mut at = 0;
    for (name, value) in headers.iter() {
        let end = at + value.len();
        copy.append(name.clone(), owned_value(value, all.slice(at..end)));
        at = end;
    }
    copy
}

/// `value`, now over `bytes` (the same bytes, in memory of the copy's own).
fn owned_value(value: &HeaderValue, bytes: bytes::Bytes) -> HeaderValue {
    // Valid already, so this cannot fail; the clone is only a fallback that never runs.
    let mut owned = HeaderValue::from_maybe_shared(bytes).unwrap_or_else(|_| value.clone());
    owned.set_sensitive(value.is_sensitive());
    owned
}

#[cfg(test)]
mod tests {
    use actix_http::header::{HeaderName, HeaderValue};

    use super::*;

    #[test]
    fn header_copies_are_sized_to_their_content_and_own_their_bytes() {
        // A pooled request head keeps the capacity of the largest request it ever held.
        let mut pooled = HeaderMap::with_capacity(200);
        let tag = HeaderName::from_static("x-tag");
        // As actix-http parses them: slices of the connection's read buffer.
        let read_buf = bytes::Bytes::from(b"one two example secret".to_vec());
        let slice = |at: std::ops::Range<usize>| HeaderValue::from_maybe_shared(read_buf.slice(at)).unwrap();
        pooled.append(tag.clone(), slice(0..3));
        pooled.append(tag.clone(), slice(4..7));
        pooled.insert(HeaderName::from_static("host"), slice(8..15));
        let mut secret = slice(16..22);
        secret.set_sensitive(true);
        pooled.insert(HeaderName::from_static("authorization"), secret);
        assert!(pooled.clone().capacity() >= 200, "a plain clone keeps the capacity");

        let copy = copy_headers(&pooled);
        assert!(copy.capacity() < 16, "capacity {}", copy.capacity());
        let tags: Vec<_> = copy.get_all(&tag).collect();
        assert_eq!(tags, ["one", "two"]);
        assert_eq!(copy.get("host").map(|v| v.as_bytes()), Some(&b"example"[..]));
        assert!(copy.get("authorization").is_some_and(|v| v.is_sensitive()));
        assert_eq!(copy.len(), pooled.len());
        let buf = read_buf.as_ptr_range();
        for (_, value) in copy.iter() {
            assert!(!buf.contains(&value.as_bytes().as_ptr()), "{value:?} still points into the read buffer");
        }
    }
}
