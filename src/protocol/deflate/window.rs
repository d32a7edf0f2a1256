//! The last bytes of a compressed stream's uncompressed data: all a direction that takes
//! context over must keep between messages, since the peer's LZ77 window holds the same.

/// At most `capacity` bytes: the tail of everything pushed.
#[derive(Debug, Default)]
pub(super) struct Window {
    bytes: Vec<u8>,
    capacity: usize,
}

impl Window {
    /// An empty window of `1 << bits` bytes; nothing is allocated before the first push.
    pub(super) fn new(bits: u8) -> Self {
        Window { bytes: Vec::new(), capacity: 1 << bits }
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// Appends one message's data, keeping the last `capacity` bytes.
    pub(super) fn push(&mut self, data: &[u8]) {
        if self.bytes.capacity() < self.capacity {
            // One allocation of the window's size, never more.
            self.bytes.reserve_exact(self.capacity - self.bytes.len());
        }
        if data.len() >= self.capacity {
            self.bytes.clear();
            self.bytes.extend_from_slice(&data[data.len() - self.capacity..]);
        } else {
            let overflow = (self.bytes.len() + data.len()).saturating_sub(self.capacity);
            self.bytes.drain(..overflow);
            self.bytes.extend_from_slice(data);
        }
    }

    /// Forgets the data (the peer started a new stream) and its allocation.
    pub(super) fn clear(&mut self) {
        self.bytes = Vec::new();
    }

    /// The allocation held, for memory accounting.
    pub(super) fn allocated(&self) -> usize {
        self.bytes.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_tail_and_never_more() {
        let mut w = Window::new(4);
        w.push(b"abc");
        w.push(b"defgh");
        assert_eq!(w.as_slice(), b"abcdefgh");
        w.push(b"ijklmnopq");
        assert_eq!(w.as_slice(), b"bcdefghijklmnopq");
        w.push(&[b'x'; 40]);
        assert_eq!(w.as_slice(), [b'x'; 16]);
        assert_eq!(w.allocated(), 16, "{}", w.allocated());
        w.clear();
        assert_eq!((w.as_slice().len(), w.allocated()), (0, 0));
    }
}
