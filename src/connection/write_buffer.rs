//! The bytes a connection has encoded and not yet handed to its transport.
//!
//! Frames are encoded one after another into the tail buffer, so a burst of messages
//! leaves as one chunk. A frame that is already encoded and shared (a `PreparedMessage` broadcast
//! to many connections) is queued as it is, without a copy per connection.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

#[derive(Default)]
pub(crate) struct WriteBuffer {
    /// Finished chunks, oldest first; they go out before `tail`.
    sealed: VecDeque<Bytes>,
    sealed_len: usize,
    /// Where frames are encoded.
    pub(crate) tail: BytesMut,
}

impl WriteBuffer {
    pub(crate) fn len(&self) -> usize {
        self.sealed_len + self.tail.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room held for encoding.
    pub(crate) fn capacity(&self) -> usize {
        self.tail.capacity()
    }

    /// Queues `bytes` after everything encoded so far, without copying.
    pub(crate) fn push_shared(&mut self, bytes: Bytes) {
        self.seal();
        if !bytes.is_empty() {
            self.sealed_len += bytes.len();
            self.sealed.push_back(bytes);
        }
    }

    fn seal(&mut self) {
        if !self.tail.is_empty() {
            let chunk = self.tail.split().freeze();
            self.sealed_len += chunk.len();
            self.sealed.push_back(chunk);
        }
    }

    /// The next bytes to write, if any.
    pub(crate) fn front(&mut self) -> Option<&mut Bytes> {
        if self.sealed.is_empty() && !self.tail.is_empty() {
            self.seal();
        }
        self.sealed.front_mut()
    }

    /// Records that the transport took `n` bytes from the front chunk (it advanced it).
    pub(crate) fn consumed(&mut self, n: usize) {
        self.sealed_len -= n;
        if self.sealed.front().is_some_and(|c| c.is_empty()) {
            self.sealed.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    fn drain(out: &mut WriteBuffer, step: usize) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(chunk) = out.front() {
            let n = step.min(chunk.len());
            all.extend_from_slice(&chunk[..n]);
            chunk.advance(n);
            out.consumed(n);
        }
        all
    }

    #[test]
    fn keeps_the_order_of_encoded_and_shared_bytes() {
        let mut out = WriteBuffer::default();
        out.tail.extend_from_slice(b"h1");
        out.push_shared(Bytes::from_static(b"payload-one"));
        out.tail.extend_from_slice(b"h2");
        out.tail.extend_from_slice(b"small");
        out.push_shared(Bytes::new());
        out.push_shared(Bytes::from_static(b"payload-two"));
        out.tail.extend_from_slice(b"tail");
        assert_eq!(out.len(), 2 + 11 + 2 + 5 + 11 + 4);
        assert_eq!(drain(&mut out, 3), b"h1payload-oneh2smallpayload-twotail");
        assert!(out.is_empty());
    }

    #[test]
    fn counts_partial_writes() {
        let mut out = WriteBuffer::default();
        out.push_shared(Bytes::from_static(b"abcdef"));
        let chunk = out.front().unwrap();
        chunk.advance(4);
        out.consumed(4);
        assert_eq!(out.len(), 2);
        out.tail.extend_from_slice(b"gh");
        assert_eq!(drain(&mut out, 1), b"efgh");
        assert!(out.is_empty() && out.front().is_none());
    }
}
