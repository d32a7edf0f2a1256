//! The sending half of the message layer: messages into frames, masked for the client
//! role, compressed above a threshold when permessage-deflate was negotiated.

use bytes::BytesMut;

use super::codec::{DataKind, Role};
use super::deflate::{CompressError, Compressor, DeflateConfig};
use super::frame::{FrameHeader, OpCode, RSV1};
use super::{truncate_reason, CloseCode, DeflateParams};

/// Turns outgoing messages into frames: masks them for the client role, compresses data
/// messages above the threshold when permessage-deflate was negotiated.
///
/// ```
/// use actix_meta_websocket::protocol::{DataKind, Encoder, Role};
/// use bytes::BytesMut;
/// let mut enc = Encoder::new(Role::Server, None, 0, 0);
/// let mut out = BytesMut::new();
/// enc.encode_message(DataKind::Text, b"Hello", &mut out).unwrap();
/// assert_eq!(&out[..], &[0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
/// ```
///
/// A whole exchange, client to server: fragments, control frames, a close, and a raw
/// frame; each end checks what the other sent.
///
/// ```
/// use actix_meta_websocket::protocol::{
///     CloseCode, CloseFrame, DataKind, Decoder, EncodeError, Encoder, FrameHeader, Incoming, Limits, OpCode, Role,
/// };
/// use bytes::{Bytes, BytesMut};
///
/// let mut client = Encoder::new(Role::Client, None, 0, 0);
/// let mut server = Decoder::new(Role::Client.peer(), Limits { max_frame_size: 16, ..Limits::default() }, None);
/// assert!(!client.compresses() && client.retained() == 0); // no permessage-deflate agreed
/// let mut wire = BytesMut::new();
///
/// // A message in frames of at most 4 bytes, for a peer with a small frame limit.
/// client.encode_message_fragmented(DataKind::Binary, b"0123456789", 4, &mut wire).unwrap();
/// assert_eq!(server.decode(&mut wire).unwrap(), Some(Incoming::Binary(Bytes::from_static(b"0123456789"))));
///
/// // Half a frame: the decoder keeps it and says how much is missing.
/// client.encode_message_fragmented(DataKind::Text, b"hi", 4, &mut wire).unwrap();
/// let mut rest = wire.split_off(wire.len() - 1);
/// assert_eq!(server.decode(&mut wire).unwrap(), None);
/// assert_eq!((server.pending_payload(), server.in_message()), (1, false));
/// wire.unsplit(rest.split());
/// assert_eq!(server.decode(&mut wire).unwrap(), Some(Incoming::Text(Bytes::from_static(b"hi"))));
/// assert_eq!(server.limits().max_frame_size, 16);
///
/// // Control frames: at most 125 bytes.
/// client.encode_control(OpCode::Ping, b"are you there", &mut wire).unwrap();
/// assert_eq!(server.decode(&mut wire).unwrap(), Some(Incoming::Ping(Bytes::from_static(b"are you there"))));
/// assert_eq!(client.encode_control(OpCode::Pong, &[0; 126], &mut wire), Err(EncodeError::ControlTooLong(126)));
///
/// // A close; 1006 is for reports, never for the wire.
/// client.encode_close(Some((CloseCode(1001), "going away")), &mut wire).unwrap();
/// let close = CloseFrame { code: CloseCode(1001), reason: "going away".into() };
/// assert_eq!(server.decode(&mut wire).unwrap(), Some(Incoming::Close(Some(close))));
/// assert_eq!(client.encode_close(Some((CloseCode(1006), "")), &mut wire), Err(EncodeError::InvalidCloseCode(1006)));
///
/// // A raw frame, as a test peer would write one: a server's unmasked "hi".
/// let mut raw = Encoder::new(Role::Server, None, 0, 0);
/// raw.encode_frame(true, OpCode::Text, b"hi", &mut wire);
/// let (header, len) = FrameHeader::parse(&wire).unwrap().unwrap();
/// assert_eq!((header.opcode.as_u8(), header.mask, len), (0x1, None, 2));
/// assert!(OpCode::from_u8(0x9).is_some_and(OpCode::is_control));
/// let mut again = BytesMut::new();
/// header.encode(&mut again);
/// assert_eq!(&again[..], &wire[..2]);
/// ```
#[derive(Debug)]
pub struct Encoder {
    role: Role,
    /// Boxed, as `Decoder::inflater`.
    deflater: Option<Box<Compressor>>,
    threshold: usize,
}

/// The frame a server connection makes of a data message when that frame depends only
/// on the message: uncompressed, or compressed without context takeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameKey {
    Plain,
    Deflate { bits: u8, level: u32, threshold: usize },
}

thread_local! {
    /// Compressed output on its way into a frame: one per thread, not one per connection.
    static SCRATCH: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// A thread's scratch larger than this is given back after use.
const SCRATCH_KEPT: usize = 256 * 1024;

/// Why a frame could not be encoded.
///
/// See the second example of [`Encoder`](crate::protocol::Encoder).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Control frames carry at most 125 bytes.
    #[error("control frame payload of {0} bytes (at most 125)")]
    ControlTooLong(usize),
    /// Close codes 1005, 1006, 1015 and unregistered ones may not be sent.
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// Compression failed.
    #[error(transparent)]
    Compress(#[from] CompressError),
}

impl Encoder {
    /// An encoder for `role`; with `deflate`, messages of at least `threshold` bytes are
    /// compressed at zlib `level`.
    pub fn new(role: Role, deflate: Option<&DeflateParams>, level: u32, threshold: usize) -> Self {
        Encoder { role, deflater: deflate.map(|p| Box::new(Compressor::new(p, role, level))), threshold }
    }

    /// An encoder for `role` with the level, threshold and memory of `config`.
    ///
    /// ```
    /// use actix_meta_websocket::protocol::{DeflateConfig, DeflateParams, Encoder, Role};
    /// let agreed = DeflateParams { server_no_context_takeover: true, ..DeflateParams::default() };
    /// let enc = Encoder::with_config(Role::Server, Some(&agreed), &DeflateConfig::shared());
    /// assert!(enc.compresses());
    /// ```
    pub fn with_config(role: Role, deflate: Option<&DeflateParams>, config: &DeflateConfig) -> Self {
        let compressor = |p| Box::new(Compressor::with_memory(p, role, config.level, config.memory));
        Encoder { role, deflater: deflate.map(compressor), threshold: config.threshold }
    }

    /// Bytes kept between messages for compression (the window of context takeover).
    pub fn retained(&self) -> usize {
        self.deflater.as_ref().map_or(0, |c| c.retained())
    }

    /// What a server's frame of a data message depends on, when only on the message.
    pub(crate) fn frame_key(&self) -> Option<FrameKey> {
        match (self.role, self.deflater.as_deref()) {
            (Role::Client, _) => None,
            (Role::Server, None) => Some(FrameKey::Plain),
            (Role::Server, Some(c)) if c.resets_each_message() => {
                let (bits, level) = c.stream_key();
                Some(FrameKey::Deflate { bits, level, threshold: self.threshold })
            }
            (Role::Server, Some(_)) => None,
        }
    }

    /// Whether messages may be compressed.
    pub fn compresses(&self) -> bool {
        self.deflater.is_some()
    }

    /// Appends one data message as a single frame.
    pub fn encode_message(
        &mut self,
        kind: DataKind,
        payload: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        self.encode_message_fragmented(kind, payload, usize::MAX, dst)
    }

    /// Appends one data message split into frames of at most `max_frame` payload bytes
    /// (after compression), for peers with small frame limits.
    pub fn encode_message_fragmented(
        &mut self,
        kind: DataKind,
        payload: &[u8],
        max_frame: usize,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let opcode = match kind {
            DataKind::Text => OpCode::Text,
            DataKind::Binary => OpCode::Binary,
        };
        let role = self.role;
        match self.deflater.as_mut() {
            Some(c) if payload.len() >= self.threshold => SCRATCH.with_borrow_mut(|z| {
                z.clear();
                let r = c.compress(payload, z);
                if r.is_ok() {
                    write_fragments(role, RSV1, opcode, z, max_frame, dst);
                }
                if z.capacity() > SCRATCH_KEPT {
                    *z = BytesMut::new();
                }
                r
            })?,
            _ => write_fragments(role, 0, opcode, payload, max_frame, dst),
        }
        Ok(())
    }

    /// Appends a ping, pong or close frame with `payload`.
    pub fn encode_control(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if payload.len() > 125 {
            return Err(EncodeError::ControlTooLong(payload.len()));
        }
        write_frame(self.role, true, 0, opcode, payload, dst);
        Ok(())
    }

    /// Appends a close frame; the reason is cut to fit the 125-byte control frame.
    /// `None` sends a close without status.
    pub fn encode_close(
        &mut self,
        close: Option<(CloseCode, &str)>,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let mut body = [0u8; 125];
        let len = match close {
            None => 0,
            Some((code, reason)) => {
                if !code.is_valid_on_wire() {
                    return Err(EncodeError::InvalidCloseCode(code.0));
                }
                let reason = truncate_reason(reason);
                body[..2].copy_from_slice(&code.0.to_be_bytes());
                body[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
                2 + reason.len()
            }
        };
        self.encode_control(OpCode::Close, &body[..len], dst)
    }

    /// Appends one raw frame with the role's masking: the building block for callers that
    /// fragment messages themselves (RSV bits are theirs to set correctly).
    pub fn encode_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8], dst: &mut BytesMut) {
        write_frame(self.role, fin, 0, opcode, payload, dst)
    }
}

fn write_fragments(
    role: Role,
    rsv: u8,
    opcode: OpCode,
    payload: &[u8],
    max_frame: usize,
    dst: &mut BytesMut,
) {
    let max_frame = max_frame.max(1);
    if payload.len() <= max_frame {
        return write_frame(role, true, rsv, opcode, payload, dst);
    }
    let mut chunks = payload.chunks(max_frame).peekable();
    let mut first = true;
    while let Some(chunk) = chunks.next() {
        let (rsv, op) = if first { (rsv, opcode) } else { (0, OpCode::Continuation) };
        first = false;
        write_frame(role, chunks.peek().is_none(), rsv, op, chunk, dst);
    }
}

fn write_frame(role: Role, fin: bool, rsv: u8, opcode: OpCode, payload: &[u8], dst: &mut BytesMut) {
    let mask = match role {
        Role::Server => None,
        Role::Client => Some(rand::random::<[u8; 4]>()),
    };
    let header = FrameHeader { fin, rsv, opcode, mask, payload_len: payload.len() as u64 };
    dst.reserve(14 + payload.len());
    header.encode(dst);
    let at = dst.len();
    dst.extend_from_slice(payload);
    if let Some(key) = mask {
        super::apply_mask(&mut dst[at..], key, 0);
    }
}
