//! The inflating half: one connection's incoming messages, never past a size limit.

use flate2::{FlushDecompress, Status};

use super::streams::{self, Holder, InflateStream};
use super::window::Window;
use super::{DeflateMemory, DeflateParams, TAIL};
use crate::protocol::{ProtocolError, Role};

/// Inflates incoming messages for one connection, never past a size limit. (The
/// example of [`Compressor`](super::Compressor) keeps a window, resets it and pools one.)
///
/// ```
/// use actix_meta_websocket::protocol::{Decompressor, DeflateParams, ProtocolError, Role};
/// // RFC 7692 7.2.3.1: "Hello" compressed, without the 00 00 ff ff tail.
/// let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
/// let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
/// let mut out = Vec::new();
/// d.inflate(&hello, &mut out, 1024).unwrap();
/// d.finish(&mut out, 1024).unwrap();
/// assert_eq!(out, b"Hello");
/// // The same with a 4-byte limit: refused while inflating, not after.
/// let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
/// let r = d.inflate(&hello, &mut Vec::new(), 4).and_then(|()| d.finish(&mut Vec::new(), 4));
/// assert!(matches!(r, Err(ProtocolError::MessageTooLarge { .. })));
/// ```
pub struct Decompressor {
    reset_each: bool,
    token: u64,
    /// Pooled with the peer taking context over: what the peer's window holds.
    window: Option<Window>,
    /// The stream: during a message when pooled, always when dedicated.
    stream: Option<Box<InflateStream>>,
    dedicated: bool,
    /// A message is under way: its first piece took and primed the stream.
    in_message: bool,
    /// The peer ended a stream with BFINAL: the rest of this message is padding.
    stream_ended: bool,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("reset_each", &self.reset_each)
            .field("dedicated", &self.dedicated)
            .field("in_message", &self.in_message)
            .finish()
    }
}

impl Decompressor {
    /// A decompressor for the peer's side of the negotiated parameters, on the thread's
    /// pooled zlib streams.
    pub fn new(params: &DeflateParams, role: Role) -> Self {
        Self::with_memory(params, role, DeflateMemory::Pooled)
    }

    /// The same, with zlib streams kept as `memory` says.
    ///
    /// See the example of [`Compressor`](super::Compressor).
    pub fn with_memory(params: &DeflateParams, role: Role, memory: DeflateMemory) -> Self {
        let (bits, reset_each) = params.peer(role);
        let dedicated = memory == DeflateMemory::Dedicated;
        Decompressor {
            reset_each,
            token: streams::token(),
            window: (!dedicated && !reset_each).then(|| Window::new(bits)),
            stream: None,
            dedicated,
            in_message: false,
            stream_ended: false,
        }
    }

    /// Bytes this decompressor keeps between messages (pooled; a dedicated stream's
    /// zlib state comes on top).
    ///
    /// See the example of [`Compressor`](super::Compressor).
    pub fn retained(&self) -> usize {
        self.window.as_ref().map_or(0, Window::allocated)
    }

    /// Inflates the next piece of a compressed message into `out`. Output never grows
    /// past `limit` bytes and its allocation never past `limit + 1`: the message is
    /// refused as soon as it would.
    pub fn inflate(&mut self, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), ProtocolError> {
        if self.stream_ended {
            return Ok(());
        }
        let stream = self.begin()?;
        let in_start = stream.z.total_in();
        loop {
            let consumed = (stream.z.total_in() - in_start) as usize;
            if out.len() == out.capacity() {
                let room = (limit + 1).saturating_sub(out.len());
                if room == 0 {
                    return Err(ProtocolError::MessageTooLarge { size: out.len() as u64, limit });
                }
                // Geometric growth, capped so the allocation never exceeds the limit.
                let want =
                    ((input.len() - consumed).saturating_mul(4)).max(out.capacity()).clamp(1024, 4 << 20);
                out.reserve_exact(want.min(room));
            }
            let space = out.capacity() - out.len();
            let out_start = stream.z.total_out();
            let r = stream.z.decompress_vec(&input[consumed..], out, FlushDecompress::Sync);
            let produced = (stream.z.total_out() - out_start) as usize;
            let status = r.map_err(|e| ProtocolError::Inflate(e.to_string()))?;
            if out.len() > limit {
                return Err(ProtocolError::MessageTooLarge { size: out.len() as u64, limit });
            }
            if status == Status::StreamEnd {
                self.stream_ended = true;
                return Ok(());
            }
            let done = (stream.z.total_in() - in_start) as usize == input.len();
            if done && produced < space {
                return Ok(());
            }
        }
    }

    /// The stream for the message under way: taken and primed at its first piece.
    fn begin(&mut self) -> Result<&mut InflateStream, ProtocolError> {
        let token = self.token;
        let stream = self.stream.get_or_insert_with(|| streams::take_inflate(token));
        if self.in_message {
            return Ok(stream);
        }
        self.in_message = true;
        if stream.holder != Holder::Owner(token) || self.reset_each {
            if stream.holder != Holder::Fresh {
                stream.z.reset(false);
            }
            if let Some(w) = self.window.as_ref().filter(|w| !w.as_slice().is_empty()) {
                stream.z.set_dictionary(w.as_slice()).map_err(|e| ProtocolError::Inflate(e.to_string()))?;
            }
        }
        // Until the message is whole, nobody can go on from the stream.
        stream.holder = Holder::Dirty;
        Ok(stream)
    }

    /// Ends a message: feeds the `00 00 ff ff` tail the sender stripped; `out` holds the
    /// whole message. The window is kept only when the peer takes context over.
    pub fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), ProtocolError> {
        let r = self.inflate(&TAIL, out, limit);
        let goes_on = r.is_ok() && !self.reset_each && !self.stream_ended;
        if goes_on {
            if let Some(w) = self.window.as_mut() {
                w.push(out);
            }
        } else if self.stream_ended {
            // A new stream follows: nothing before it may be referred to.
            if let Some(w) = self.window.as_mut() {
                w.clear();
            }
        }
        self.stream_ended = false;
        self.end_message(goes_on);
        r
    }

    /// Forgets the current stream state after a failed message.
    ///
    /// See the example of [`Compressor`](super::Compressor).
    pub fn reset(&mut self) {
        self.stream_ended = false;
        self.end_message(false);
    }

    fn end_message(&mut self, goes_on: bool) {
        self.in_message = false;
        let Some(mut stream) = self.stream.take() else { return };
        stream.holder = if goes_on { Holder::Owner(self.token) } else { Holder::Dirty };
        if self.dedicated {
            self.stream = Some(stream);
        } else {
            streams::give_inflate(stream);
        }
    }
}

impl Drop for Decompressor {
    /// A stream lent for a message cut short goes back to the thread, to be reset.
    fn drop(&mut self) {
        if !self.dedicated {
            self.end_message(false);
        }
    }
}
