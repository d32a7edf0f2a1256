//! The receiving half of the message layer: a decoder that turns bytes into whole
//! messages with every RFC 6455 rule and limit enforced (the encoder is in `encoder`).

use bytes::{Buf, Bytes, BytesMut};

use super::deflate::{Decompressor, DeflateMemory};
use super::frame::{FrameHeader, OpCode, RSV1};
use super::{parse_close_payload, CloseFrame, DeflateParams, ProtocolError, Utf8Validator};

/// Which end of the connection this codec serves; it fixes the masking rules.
///
/// See the second example of [`Encoder`](crate::protocol::Encoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepted connection: incoming frames must be masked, outgoing ones are not.
    Server,
    /// Dialled connection: outgoing frames are masked with a fresh key, incoming must not be.
    Client,
}

impl Role {
    /// The other end.
    ///
    /// See the second example of [`Encoder`](crate::protocol::Encoder).
    pub fn peer(self) -> Role {
        match self {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        }
    }

    /// How logs and metrics name a connection of this role.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Role::Server => "accepted",
            Role::Client => "dialled",
        }
    }
}

/// Size limits, checked from frame headers before payloads are buffered.
///
/// ```
/// use actix_meta_websocket::protocol::Limits;
/// let l = Limits::default();
/// assert_eq!((l.max_frame_size, l.max_message_size), (16 << 20, 64 << 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of a single frame (default 16 MiB).
    pub max_frame_size: usize,
    /// Largest message after reassembly and inflation (default 64 MiB).
    pub max_message_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_frame_size: 16 << 20, max_message_size: 64 << 20 }
    }
}

/// What the decoder hands up: a whole data message or a control frame.
///
/// See the second example of [`Encoder`](crate::protocol::Encoder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A complete text message, already validated as UTF-8.
    Text(Bytes),
    /// A complete binary message.
    Binary(Bytes),
    /// A ping with its application data.
    Ping(Bytes),
    /// A pong with its application data.
    Pong(Bytes),
    /// A close frame; `None` when it carried no status code.
    Close(Option<CloseFrame>),
}

/// The data-message kinds an encoder sends.
///
/// See the second example of [`Encoder`](crate::protocol::Encoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// Text (the caller guarantees UTF-8).
    Text,
    /// Binary.
    Binary,
}

/// Unmasking and validation work in blocks of this size (fits L1 with room to spare).
const BLOCK: usize = 16 * 1024;

#[derive(Debug)]
struct FrameInProgress {
    header: FrameHeader,
    /// Payload bytes already unmasked (and, for plain text, validated) in the buffer.
    processed: usize,
}

#[derive(Debug)]
struct MessageInProgress {
    text: bool,
    compressed: bool,
    /// Fragments so far (uncompressed) or inflated output (compressed).
    data: Vec<u8>,
    /// Bytes received on the wire for this message, for the uncompressed limit.
    wire_len: u64,
}

/// Turns received bytes into [`Incoming`] messages.
///
/// Sans-IO: feed it the connection's read buffer; it consumes whole frames and leaves any
/// partial frame in place. Text is validated as it arrives, even inside one frame whose
/// bytes are still coming, so invalid UTF-8 fails at the first bad byte.
///
/// ```
/// use actix_meta_websocket::protocol::{Decoder, DeflateMemory, DeflateParams, Incoming, Limits, Role};
/// use bytes::{Bytes, BytesMut};
///
/// let mut dec = Decoder::new(Role::Client, Limits::default(), None);
/// // RFC 6455 5.7: unmasked "Hel" + "lo" as two fragments.
/// let mut buf = BytesMut::from(&[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f][..]);
/// assert_eq!(dec.decode(&mut buf).unwrap(), Some(Incoming::Text(Bytes::from_static(b"Hello"))));
/// assert!(buf.is_empty());
/// // With permessage-deflate, the inflater's zlib state can be pooled per thread.
/// let agreed = DeflateParams { server_no_context_takeover: true, client_no_context_takeover: true, ..DeflateParams::default() };
/// let dec = Decoder::with_memory(Role::Server, Limits::default(), Some(&agreed), DeflateMemory::Pooled);
/// ```
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    limits: Limits,
    /// Boxed: most connections do not compress, and an idle one should stay small.
    inflater: Option<Box<Decompressor>>,
    frame: Option<FrameInProgress>,
    message: Option<MessageInProgress>,
    utf8: Utf8Validator,
}

impl Decoder {
    /// A decoder for `role`; `deflate` when permessage-deflate was negotiated.
    pub fn new(role: Role, limits: Limits, deflate: Option<&DeflateParams>) -> Self {
        Self::with_memory(role, limits, deflate, DeflateMemory::Pooled)
    }

    /// The same, with the inflater's zlib stream kept as `memory` says.
    pub fn with_memory(
        role: Role,
        limits: Limits,
        deflate: Option<&DeflateParams>,
        memory: DeflateMemory,
    ) -> Self {
        Decoder {
            role,
            limits,
            inflater: deflate.map(|p| Box::new(Decompressor::with_memory(p, role, memory))),
            frame: None,
            message: None,
            utf8: Utf8Validator::default(),
        }
    }

    /// The limits in force.
    ///
    /// See the second example of [`Encoder`](crate::protocol::Encoder).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Bytes still missing to complete the frame under way (0 when between frames), so a
    /// reader can size its next read.
    ///
    /// See the second example of [`Encoder`](crate::protocol::Encoder).
    pub fn pending_payload(&self) -> usize {
        self.frame.as_ref().map_or(0, |f| f.header.payload_len as usize - f.processed)
    }

    /// Whether a fragmented data message is partly received.
    ///
    /// See the second example of [`Encoder`](crate::protocol::Encoder).
    pub fn in_message(&self) -> bool {
        self.message.is_some()
    }

    /// Decodes the next message or control frame from `src`.
    ///
    /// `Ok(None)`: more bytes are needed (everything usable was consumed or kept). An error
    /// is final: the connection must be failed with [`ProtocolError::close_code`].
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, ProtocolError> {
        loop {
            if self.frame.is_none() {
                let Some((header, header_len)) = FrameHeader::parse(src)? else { return Ok(None) };
                self.check_header(&header)?;
                src.advance(header_len);
                self.frame = Some(FrameInProgress { header, processed: 0 });
            }
            let Some(frame) = self.frame.as_mut() else { return Ok(None) };
            let len = frame.header.payload_len as usize;
            let available = src.len().min(len);
            if available > frame.processed {
                // Plain text is validated as it arrives, for fail-fast.
                let validate =
                    !frame.header.opcode.is_control()
                        && self.message.as_ref().map_or(
                            frame.header.opcode == OpCode::Text && frame.header.rsv & RSV1 == 0,
                            |m| m.text && !m.compressed,
                        );
                // Unmask and validate block by block, so each block is still in L1 when
                // the validator reads it.
                let mut at = frame.processed;
                for block in src[frame.processed..available].chunks_mut(BLOCK) {
                    if let Some(key) = frame.header.mask {
                        super::apply_mask(block, key, at);
                    }
                    if validate {
                        self.utf8.feed(block).map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                    at += block.len();
                }
                frame.processed = available;
            }
            if frame.processed < len {
                return Ok(None);
            }
            let header = frame.header;
            self.frame = None;
            let payload = src.split_to(len);
            if let Some(out) = self.complete_frame(header, payload)? {
                return Ok(Some(out));
            }
        }
    }

    fn check_header(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let rsv1_allowed = self.inflater.is_some() && matches!(h.opcode, OpCode::Text | OpCode::Binary);
        let bad_rsv = if rsv1_allowed { h.rsv & !RSV1 } else { h.rsv };
        if bad_rsv != 0 {
            return Err(ProtocolError::ReservedBits(h.rsv));
        }
        match h.opcode {
            OpCode::Continuation if self.message.is_none() => {
                return Err(ProtocolError::UnexpectedContinuation)
            }
            OpCode::Text | OpCode::Binary if self.message.is_some() => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            _ => {}
        }
        if h.payload_len > self.limits.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooLarge {
                size: h.payload_len,
                limit: self.limits.max_frame_size,
            });
        }
        let compressed = match (&self.message, h.opcode) {
            (Some(m), OpCode::Continuation) => m.compressed,
            (_, op) => !op.is_control() && h.rsv & RSV1 != 0,
        };
        if !h.opcode.is_control() && !compressed {
            let so_far = self.message.as_ref().map_or(0, |m| m.wire_len);
            let total = so_far + h.payload_len;
            if total > self.limits.max_message_size as u64 {
                return Err(ProtocolError::MessageTooLarge {
                    size: total,
                    limit: self.limits.max_message_size,
                });
            }
        }
        Ok(())
    }

    fn complete_frame(
        &mut self,
        h: FrameHeader,
        payload: BytesMut,
    ) -> Result<Option<Incoming>, ProtocolError> {
        match h.opcode {
            OpCode::Ping => return Ok(Some(Incoming::Ping(payload.freeze()))),
            OpCode::Pong => return Ok(Some(Incoming::Pong(payload.freeze()))),
            OpCode::Close => return Ok(Some(Incoming::Close(parse_close_payload(&payload)?))),
            _ => {}
        }
        let limit = self.limits.max_message_size;
        let mut msg = match self.message.take() {
            Some(m) => m,
            None => {
                let text = h.opcode == OpCode::Text;
                let compressed = h.rsv & RSV1 != 0;
                if h.fin && !compressed {
                    // The common case: one uncompressed frame, handed up without a copy.
                    return self.finish_text_check(text).map(|()| Some(wrap(text, payload.freeze())));
                }
                MessageInProgress { text, compressed, data: Vec::new(), wire_len: 0 }
            }
        };
        msg.wire_len += payload.len() as u64;
        if msg.compressed {
            let inflater = self.inflater.as_mut().ok_or(ProtocolError::ReservedBits(RSV1))?;
            let before = msg.data.len();
            let r = inflater.inflate(&payload, &mut msg.data, limit);
            let r = r.and_then(|()| if h.fin { inflater.finish(&mut msg.data, limit) } else { Ok(()) });
            if let Err(e) = r {
                inflater.reset();
                return Err(e);
            }
            if msg.text {
                self.utf8.feed(&msg.data[before..]).map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        } else {
            msg.data.extend_from_slice(&payload);
        }
        if !h.fin {
            self.message = Some(msg);
            return Ok(None);
        }
        self.finish_text_check(msg.text)?;
        Ok(Some(wrap(msg.text, Bytes::from(msg.data))))
    }

    fn finish_text_check(&mut self, text: bool) -> Result<(), ProtocolError> {
        if text {
            let complete = self.utf8.is_complete();
            self.utf8.reset();
            if !complete {
                return Err(ProtocolError::InvalidUtf8);
            }
        }
        Ok(())
    }
}

fn wrap(text: bool, b: Bytes) -> Incoming {
    if text {
        Incoming::Text(b)
    } else {
        Incoming::Binary(b)
    }
}
