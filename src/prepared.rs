//! Messages encoded once and sent to many connections (gorilla's `PreparedMessage`).

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::protocol::{DataKind, Encoder, Role};
use crate::{MessageKind, Outgoing};

/// A text or binary message for broadcasting: the frame for uncompressed server
/// connections is encoded once, on first use, and copied to each of them; compressed or
/// client connections encode it themselves.
///
/// ```
/// use actix_meta_websocket::PreparedMessage;
/// let m = PreparedMessage::text("tick 42");
/// assert_eq!(m.body(), "tick 42".as_bytes());
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

    fn new(kind: DataKind, body: Bytes) -> Self {
        PreparedMessage { inner: Arc::new(Inner { kind, body, server_frame: OnceLock::new() }) }
    }

    /// The payload.
    pub fn body(&self) -> &[u8] {
        &self.inner.body
    }

    /// The single unmasked, uncompressed frame, encoded on first use.
    pub(crate) fn server_frame(&self) -> &Bytes {
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
