//! One connection's bytes and the codec over them: what was read and not yet decoded,
//! what was encoded and not yet written, the transport between them, and the wire bytes
//! counted both ways.
//!
//! Knows frames and bytes; nothing of actors, targets or write policies.

use std::io;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};

use super::transport::{RoleTransport, Transport};
use super::write_buffer::WriteBuffer;
use crate::protocol::{
    CloseCode, DataKind, Decoder, DeflateConfig, DeflateParams, EncodeError, Encoder, FrameKey, Incoming,
    Limits, OpCode, ProtocolError, Role,
};

/// How far a flush got.
pub(super) enum Flushed {
    /// Everything encoded is with the transport.
    All,
    /// The transport takes no more for now; it wakes the task when it does.
    Blocked,
    Failed(io::Error),
}

/// What a read brought.
pub(super) enum Read {
    Bytes,
    Eof,
    Failed(io::Error),
    Pending,
}

pub(super) struct Wire {
    role: Role,
    transport: RoleTransport,
    read_buf: BytesMut,
    decoder: Decoder,
    encoder: Encoder,
    write_buf: WriteBuffer,
    bytes_in: u64,
    bytes_out: u64,
}

/// The codec's settings for one connection.
pub(super) struct Codec<'a> {
    pub(super) role: Role,
    pub(super) limits: Limits,
    pub(super) deflate: Option<&'a DeflateParams>,
    pub(super) config: &'a DeflateConfig,
}

impl Wire {
    pub(super) fn new(codec: Codec<'_>, transport: RoleTransport, read_buf: BytesMut) -> Self {
        Wire {
            role: codec.role,
            transport,
            read_buf,
            decoder: Decoder::with_memory(codec.role, codec.limits, codec.deflate, codec.config.memory),
            encoder: Encoder::with_config(codec.role, codec.deflate, codec.config),
            write_buf: WriteBuffer::default(),
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    #[inline]
    pub(super) fn role(&self) -> Role {
        self.role
    }

    /// What this connection's frame of a data message depends on, when only on the
    /// message, so a broadcast's frame can be shared.
    pub(super) fn frame_key(&self) -> Option<FrameKey> {
        self.encoder.frame_key()
    }

    /// Hands encoded bytes to the transport until it takes no more, then has it push out
    /// what it holds (a TLS stream keeps records a full socket refused until flushed).
    #[inline]
    pub(super) fn flush(&mut self, task: &mut Context<'_>) -> Flushed {
        while let Some(chunk) = self.write_buf.front() {
            match self.transport.poll_write(task, chunk) {
                Poll::Ready(Ok(n)) => {
                    self.write_buf.consumed(n);
                    self.bytes_out += n as u64;
                }
                Poll::Ready(Err(e)) => return Flushed::Failed(e),
                Poll::Pending => return Flushed::Blocked,
            }
        }
        match self.transport.poll_flush(task) {
            Poll::Ready(Ok(())) => Flushed::All,
            Poll::Ready(Err(e)) => Flushed::Failed(e),
            Poll::Pending => Flushed::Blocked,
        }
    }

    /// Encoded bytes not yet taken by the peer: ours and the transport's.
    #[inline]
    pub(super) fn pending_out(&self) -> usize {
        self.write_buf.len() + self.transport.buffered()
    }

    /// Nothing encoded waits for the transport, nor in it for a flush.
    #[inline]
    pub(super) fn is_flushed(&self) -> bool {
        self.write_buf.is_empty() && !self.transport.needs_flush()
    }

    /// Wakes `task` when the transport's own buffer shrinks.
    pub(super) fn want_room(&mut self, task: &mut Context<'_>) {
        self.transport.want_room(task);
    }

    /// Bytes the peer has taken: written to the socket, or taken by the HTTP layer.
    pub(super) fn bytes_taken(&self) -> u64 {
        self.bytes_out - self.transport.buffered() as u64
    }

    pub(super) fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    pub(super) fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    /// Received bytes not yet decoded.
    pub(super) fn buffered_in(&self) -> usize {
        self.read_buf.len()
    }

    /// Ends the outgoing direction once everything written has gone out.
    pub(super) fn poll_close(&mut self, task: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.transport.poll_close(task)
    }

    /// Reads what the transport has, sized for the frame being received.
    #[inline]
    pub(super) fn read(&mut self, task: &mut Context<'_>) -> Read {
        let hint = self.decoder.pending_payload();
        match self.transport.poll_read(task, &mut self.read_buf, hint) {
            Poll::Ready(Ok(0)) => Read::Eof,
            Poll::Ready(Ok(n)) => {
                self.bytes_in += n as u64;
                Read::Bytes
            }
            Poll::Ready(Err(e)) => Read::Failed(e),
            Poll::Pending => Read::Pending,
        }
    }

    /// Forgets what was read (after the closing handshake only EOF matters).
    pub(super) fn discard_read(&mut self) {
        self.read_buf.clear();
    }

    /// The next whole frame or message, if the read buffer holds one.
    #[inline]
    pub(super) fn decode(&mut self) -> Result<Option<Incoming>, ProtocolError> {
        if self.read_buf.is_empty() {
            return Ok(None); // Every frame takes at least one byte (the decoder keeps none).
        }
        self.decoder.decode(&mut self.read_buf)
    }

    /// Encodes a data message, in frames of at most `fragment_size` payload bytes.
    ///
    /// The payload is copied into the write buffer rather than queued as shared `Bytes`:
    /// sharing keeps the read buffer's allocation alive until the HTTP layer copies it out,
    /// so every read would allocate afresh.
    pub(super) fn encode_data(
        &mut self,
        kind: DataKind,
        body: &[u8],
        fragment_size: usize,
    ) -> Result<(), EncodeError> {
        self.encoder.encode_message_fragmented(kind, body, fragment_size, &mut self.write_buf.tail)
    }

    pub(super) fn encode_control(&mut self, opcode: OpCode, body: &[u8]) -> Result<(), EncodeError> {
        self.encoder.encode_control(opcode, body, &mut self.write_buf.tail)
    }

    /// A close frame with `code` and `text`; `NO_STATUS`, or a code that may not be sent,
    /// gives a bare close frame.
    pub(super) fn encode_close(&mut self, code: CloseCode, text: &str) {
        let close = (code != CloseCode::NO_STATUS && code.is_valid_on_wire()).then_some((code, text));
        // A valid code and a reason cut to fit cannot fail to encode.
        let _ = self.encoder.encode_close(close, &mut self.write_buf.tail);
    }

    /// Queues a frame encoded elsewhere (a broadcast's), without copying it.
    pub(super) fn push_frame(&mut self, frame: Bytes) {
        self.write_buf.push_shared(frame);
    }

    /// Gives back the buffers that hold nothing. A buffer keeps the capacity of the
    /// largest message it carried. (Compression keeps no buffer per connection.)
    pub(super) fn release_buffers(&mut self) {
        self.release_buffers_over(0);
    }

    /// Gives back the buffers that are empty and hold more than `bytes` of room: a burst
    /// or a large message grew them, and a connection that goes quiet keeps nothing of it.
    pub(super) fn release_buffers_over(&mut self, bytes: usize) {
        if self.read_buf.is_empty() && self.read_buf.capacity() > bytes {
            self.read_buf = BytesMut::new();
        }
        if self.write_buf.is_empty() && self.write_buf.capacity() > bytes {
            self.write_buf = WriteBuffer::default();
        }
    }
}
