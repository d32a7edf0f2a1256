//! The compressing half: one connection's outgoing messages.

use bytes::BytesMut;
use flate2::FlushCompress;

use super::streams::{self, DeflateStream, Holder};
use super::window::Window;
use super::{zlib_bits, DeflateMemory, DeflateParams, TAIL};
use crate::protocol::Role;

/// Compression failed inside zlib (not caused by peer input); what
/// [`Compressor::compress`] and, as [`EncodeError::Compress`](crate::protocol::EncodeError::Compress),
/// the encoder return.
///
/// ```
/// use actix_meta_websocket::protocol::{CompressError, EncodeError};
/// let e: EncodeError = CompressError("stream error".into()).into();
/// assert_eq!(e.to_string(), "deflate failed: stream error");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deflate failed: {0}")]
pub struct CompressError(pub String);

/// Compresses outgoing messages for one connection.
///
/// ```
/// use actix_meta_websocket::protocol::{Compressor, Decompressor, DeflateMemory, DeflateParams, Role};
/// use bytes::BytesMut;
/// let params = DeflateParams::default();
/// let mut server = Compressor::new(&params, Role::Server, 6);
/// let mut client = Decompressor::new(&params, Role::Client);
/// let json = br#"{"sym":"ABC","px":101.5,"qty":300}"#.repeat(20);
/// let mut wire = BytesMut::new();
/// server.compress(&json, &mut wire).unwrap();
/// assert!(wire.len() < json.len() / 4);
/// let mut back = Vec::new();
/// client.inflate(&wire, &mut back, 1 << 20).unwrap();
/// client.finish(&mut back, 1 << 20).unwrap();
/// assert_eq!(back, json);
/// // Context takeover: both ends keep a window between messages.
/// assert!(!server.resets_each_message() && server.retained() > 0 && client.retained() > 0);
/// client.reset(); // forget the window (after a connection's failed message, say)
///
/// // Without takeover and with zlib state pooled per thread, the frame depends on the
/// // message only: one compressed frame can serve every connection with this key.
/// let shared = DeflateParams { server_no_context_takeover: true, ..params };
/// let mut per_message = Compressor::with_memory(&shared, Role::Server, 6, DeflateMemory::Pooled);
/// assert!(per_message.resets_each_message());
/// assert_eq!(per_message.stream_key(), (15, 6)); // (window bits, level)
/// let mut plain = Decompressor::with_memory(&shared, Role::Client, DeflateMemory::Pooled);
/// # let _ = (&mut per_message, &mut plain);
/// ```
pub struct Compressor {
    bits: u8,
    level: u32,
    reset_each: bool,
    token: u64,
    /// Pooled with context takeover: what the peer's window holds.
    window: Option<Window>,
    /// Dedicated: the stream, for the connection's whole life.
    own: Option<Box<DeflateStream>>,
    dedicated: bool,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("bits", &self.bits)
            .field("level", &self.level)
            .field("reset_each", &self.reset_each)
            .field("dedicated", &self.dedicated)
            .finish()
    }
}

impl Compressor {
    /// A compressor for `role`'s side of the negotiated parameters, on the thread's
    /// pooled zlib streams.
    pub fn new(params: &DeflateParams, role: Role, level: u32) -> Self {
        Self::with_memory(params, role, level, DeflateMemory::Pooled)
    }

    /// The same, with zlib streams kept as `memory` says.
    pub fn with_memory(params: &DeflateParams, role: Role, level: u32, memory: DeflateMemory) -> Self {
        let (bits, reset_each) = params.own(role);
        let (bits, level) = (zlib_bits(bits), level.min(9));
        let dedicated = memory == DeflateMemory::Dedicated;
        Compressor {
            bits,
            level,
            reset_each,
            token: streams::token(),
            window: (!dedicated && !reset_each).then(|| Window::new(bits)),
            own: dedicated.then(|| DeflateStream::new(bits, level)),
            dedicated,
        }
    }

    /// Whether every message is compressed alone, so the same input always gives the
    /// same output and one compressed copy can go to many connections.
    pub fn resets_each_message(&self) -> bool {
        self.reset_each
    }

    /// The window bits and level of the zlib stream, which with
    /// [`resets_each_message`](Self::resets_each_message) decide the output.
    pub fn stream_key(&self) -> (u8, u32) {
        (self.bits, self.level)
    }

    /// Bytes this compressor keeps between messages.
    pub fn retained(&self) -> usize {
        self.window.as_ref().map_or(0, Window::allocated)
    }

    /// Appends the compressed form of one whole message to `out`, without the
    /// `00 00 ff ff` tail (RFC 7692 7.2.1).
    pub fn compress(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), CompressError> {
        let mut stream = match self.own.take() {
            Some(s) => s,
            None => streams::take_deflate(self.bits, self.level, self.token),
        };
        let r = self.compress_with(&mut stream, input, out);
        if self.dedicated {
            self.own = Some(stream);
        } else {
            streams::give_deflate(stream);
        }
        r
    }

    fn compress_with(
        &mut self,
        s: &mut DeflateStream,
        input: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), CompressError> {
        let goes_on = !self.reset_each && s.holder == Holder::Owner(self.token);
        if !goes_on {
            if s.holder != Holder::Fresh {
                s.z.reset();
            }
            if let Some(w) = self.window.as_ref().filter(|w| !w.as_slice().is_empty()) {
                s.z.set_dictionary(w.as_slice()).map_err(|e| CompressError(e.to_string()))?;
            }
        }
        // Until this message is whole, nobody can go on from the stream.
        s.holder = Holder::Dirty;
        deflate_sync(&mut s.z, input, out)?;
        if !self.reset_each {
            s.holder = Holder::Owner(self.token);
            if let Some(w) = self.window.as_mut() {
                w.push(input);
            }
        }
        Ok(())
    }
}

/// One whole message through `z`, sync-flushed, its empty-block tail cut.
fn deflate_sync(z: &mut flate2::Compress, input: &[u8], out: &mut BytesMut) -> Result<(), CompressError> {
    let in_start = z.total_in();
    loop {
        let consumed = (z.total_in() - in_start) as usize;
        let space = (input.len() - consumed) / 2 + 64;
        let at = out.len();
        out.resize(at + space, 0);
        let out_start = z.total_out();
        let r = z.compress(&input[consumed..], &mut out[at..], FlushCompress::Sync);
        let produced = (z.total_out() - out_start) as usize;
        out.truncate(at + produced);
        r.map_err(|e| CompressError(e.to_string()))?;
        let done = (z.total_in() - in_start) as usize == input.len();
        if done && produced < space {
            break;
        }
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    Ok(())
}
