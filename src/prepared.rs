//! Messages encoded once and sent to many connections (gorilla's `PreparedMessage`).

use std::sync::{Arc, Mutex, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::message::{MessageKind, Outgoing};
use crate::protocol::{DataKind, DeflateParams, Encoder, FrameKey, Role};

/// A text or binary message for broadcasting, encoded once per kind of frame.
///
/// Server connections without compression share one frame, encoded on first use.
/// Compressed server connections without context takeover (the
/// [`shared`](crate::protocol::DeflateConfig::shared) mode) share one compressed frame
/// per window size and level: a broadcast to ten thousand of them compresses once.
/// Connections that take context over, and client connections, encode it themselves,
/// since their frame depends on what they sent before.
///
/// ```
/// use actix_meta_websocket::PreparedMessage;
/// let m = PreparedMessage::text("tick 42");
/// assert_eq!(m.body(), "tick 42".as_bytes());
/// assert!(m.is_text() && !PreparedMessage::binary(vec![0u8, 1]).is_text());
/// let one = m.to_outgoing(); // an `Outgoing` for a writer that takes only those
/// # fn broadcast(ids: &[actix_meta_websocket::ConnectionId], m: &PreparedMessage) {
/// for id in ids {
///     id.send_prepared(m);
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PreparedMessage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    kind: DataKind,
    body: Bytes,
    server_frame: OnceLock<Bytes>,
    /// The compressed frame for the first key asked for: in a server with one setting,
    /// the only one, read without a lock.
    deflated_first: OnceLock<(FrameKey, Bytes)>,
    /// Compressed frames for any further keys.
    deflated: Mutex<Vec<(FrameKey, Bytes)>>,
}

impl PreparedMessage {
    /// A text message.
    pub fn text(body: impl Into<String>) -> Self {
        Self::new(DataKind::Text, Bytes::from(body.into()))
    }

    /// A binary message.
    pub fn binary(body: impl Into<Bytes>) -> Self {
        Self::new(DataKind::Binary, body.into())
    }

    /// `value` as a JSON text message (feature `serde`), for broadcasting.
    ///
    /// ```
    /// # #[cfg(feature = "serde")] {
    /// use actix_meta_websocket::{Groups, PreparedMessage};
    /// #[derive(serde::Serialize)]
    /// struct Price { symbol: &'static str, bid: f64 }
    /// let groups = Groups::new();
    /// let tick = PreparedMessage::json(&Price { symbol: "ACME", bid: 101.5 }).unwrap();
    /// assert_eq!(tick.body(), br#"{"symbol":"ACME","bid":101.5}"#);
    /// groups.broadcast("prices", tick); // encoded once for every member
    /// # }
    /// ```
    #[cfg(feature = "serde")]
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Self::new(DataKind::Text, Bytes::from(serde_json::to_vec(value)?)))
    }

    fn new(kind: DataKind, body: Bytes) -> Self {
        PreparedMessage {
            inner: Arc::new(Inner {
                kind,
                body,
                server_frame: OnceLock::new(),
                deflated_first: OnceLock::new(),
                deflated: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The payload.
    pub fn body(&self) -> &[u8] {
        &self.inner.body
    }

    /// Whether it is a text message (else binary).
    pub fn is_text(&self) -> bool {
        matches!(self.inner.kind, DataKind::Text)
    }

    /// A message whose text, if `text`, is known to be UTF-8.
    #[cfg(feature = "cluster")]
    pub(crate) fn checked(text: bool, body: Bytes) -> Self {
        Self::new(if text { DataKind::Text } else { DataKind::Binary }, body)
    }

    /// The payload, shared.
    #[cfg(feature = "cluster")]
    pub(crate) fn bytes(&self) -> &Bytes {
        &self.inner.body
    }

    /// The frame for server connections with this key, encoded on first use.
    pub(crate) fn frame(&self, key: FrameKey) -> Bytes {
        let (bits, level, threshold) = match key {
            FrameKey::Plain => return self.server_frame().clone(),
            FrameKey::Deflate { threshold, .. } if self.inner.body.len() < threshold => {
                return self.server_frame().clone()
            }
            FrameKey::Deflate { bits, level, threshold } => (bits, level, threshold),
        };
        // The first key is compressed under the OnceLock, others under the lock: either
        // way concurrent first senders compress once between them.
        let (first_key, first) =
            self.inner.deflated_first.get_or_init(|| (key, self.deflate(bits, level, threshold)));
        if *first_key == key {
            return first.clone();
        }
        let mut frames = self.inner.deflated.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, frame)) = frames.iter().find(|(k, _)| *k == key) {
            return frame.clone();
        }
        let frame = self.deflate(bits, level, threshold);
        frames.push((key, frame.clone()));
        frame
    }

    /// The compressed frame, as a server without context takeover sends it.
    fn deflate(&self, bits: u8, level: u32, threshold: usize) -> Bytes {
        let params = DeflateParams {
            server_no_context_takeover: true,
            server_max_window_bits: bits,
            ..DeflateParams::default()
        };
        let mut enc = Encoder::new(Role::Server, Some(&params), level, threshold);
        let mut out = BytesMut::with_capacity(self.inner.body.len() / 2 + 16);
        match enc.encode_message(self.inner.kind, &self.inner.body, &mut out) {
            Ok(()) => out.freeze(),
            // zlib failing on valid input and settings: send it uncompressed.
            Err(_) => self.server_frame().clone(),
        }
    }

    /// The single unmasked, uncompressed frame, encoded on first use.
    fn server_frame(&self) -> &Bytes {
        self.inner.server_frame.get_or_init(|| {
            let mut out = BytesMut::with_capacity(self.inner.body.len() + 10);
            let mut enc = Encoder::new(Role::Server, None, 0, 0);
            // Data frames without compression cannot fail to encode.
            let _ = enc.encode_message(self.inner.kind, &self.inner.body, &mut out);
            out.freeze()
        })
    }

    /// The same content as an ordinary [`Outgoing`] message.
    pub fn to_outgoing(&self) -> Outgoing {
        let kind = match self.inner.kind {
            DataKind::Text => MessageKind::Text,
            DataKind::Binary => MessageKind::Binary,
        };
        Outgoing { kind, body: self.inner.body.clone() }
    }
}

impl From<&str> for PreparedMessage {
    fn from(text: &str) -> Self {
        PreparedMessage::text(text)
    }
}

impl From<String> for PreparedMessage {
    fn from(text: String) -> Self {
        PreparedMessage::text(text)
    }
}

impl From<Vec<u8>> for PreparedMessage {
    fn from(bytes: Vec<u8>) -> Self {
        PreparedMessage::binary(bytes)
    }
}

impl From<Bytes> for PreparedMessage {
    fn from(bytes: Bytes) -> Self {
        PreparedMessage::binary(bytes)
    }
}

impl From<&PreparedMessage> for PreparedMessage {
    fn from(msg: &PreparedMessage) -> Self {
        msg.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Decoder, Incoming, Limits};

    #[test]
    fn each_kind_of_frame_is_encoded_once_and_decodes() {
        let body = r#"{"symbol":"ACME","bid":101.25,"ask":101.27}"#.repeat(50);
        let m = PreparedMessage::text(body.clone());
        let shared = FrameKey::Deflate { bits: 12, level: 6, threshold: 128 };
        let other = FrameKey::Deflate { bits: 15, level: 1, threshold: 128 };
        let (a, b) = (m.frame(shared), m.clone().frame(shared));
        assert_eq!(a.as_ptr(), b.as_ptr(), "compressed twice");
        let (c, d) = (m.frame(other), m.frame(other));
        assert_eq!(c.as_ptr(), d.as_ptr(), "compressed twice for a second key");
        assert_ne!(a.as_ptr(), c.as_ptr());
        assert_eq!(m.frame(FrameKey::Plain).as_ptr(), m.frame(FrameKey::Plain).as_ptr());
        assert!(a.len() * 5 < body.len(), "{} of {}", a.len(), body.len());
        for (frame, bits) in [(a, 12), (c, 15)] {
            let params = DeflateParams {
                server_no_context_takeover: true,
                server_max_window_bits: bits,
                ..DeflateParams::default()
            };
            let mut dec = Decoder::new(Role::Client, Limits::default(), Some(&params));
            let got = dec.decode(&mut BytesMut::from(&frame[..])).unwrap();
            assert_eq!(got, Some(Incoming::Text(Bytes::from(body.clone()))));
        }
        // Below the threshold the plain frame serves compressed connections too.
        let small = PreparedMessage::binary(vec![1u8, 2, 3]);
        assert_eq!(small.frame(shared).as_ptr(), small.frame(FrameKey::Plain).as_ptr());
    }
}
