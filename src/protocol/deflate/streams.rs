//! zlib streams lent to connections for one message at a time, kept per thread.
//!
//! A stream remembers who used it last. A connection that takes context over and gets
//! back the stream it used last goes on where it stopped; any other stream is reset and
//! primed with the connection's [`Window`](super::window::Window). So one busy connection
//! per thread pays nothing, and ten thousand idle ones hold no zlib state at all.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::{Compress, Compression, Decompress};

/// How many idle streams of each kind a thread keeps; more are freed when given back.
const KEEP: usize = 4;

/// What a stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holder {
    /// Nothing: new or reset.
    Fresh,
    /// Data nobody will continue from: reset before use.
    Dirty,
    /// The context of the compressor or decompressor with this token.
    Owner(u64),
}

/// A token no other compressor or decompressor of this process has.
pub(super) fn token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub(super) struct DeflateStream {
    pub(super) z: Compress,
    pub(super) holder: Holder,
    bits: u8,
    level: u32,
}

impl DeflateStream {
    pub(super) fn new(bits: u8, level: u32) -> Box<Self> {
        let z = Compress::new_with_window_bits(Compression::new(level), false, bits);
        Box::new(DeflateStream { z, holder: Holder::Fresh, bits, level })
    }
}

pub(super) struct InflateStream {
    pub(super) z: Decompress,
    pub(super) holder: Holder,
}

impl InflateStream {
    /// Always a full window: it inflates any smaller one, and zlib-rs resets a 15-bit
    /// stream in place where it would allocate a smaller one anew.
    pub(super) fn new() -> Box<Self> {
        Box::new(InflateStream { z: Decompress::new_with_window_bits(false, 15), holder: Holder::Fresh })
    }
}

// Boxed: a stream moves between the pool and a connection's message as a pointer, and
// a `Decompressor` holds one in eight bytes.
#[allow(clippy::vec_box)]
type Idle<T> = RefCell<Vec<Box<T>>>;

thread_local! {
    static DEFLATE: Idle<DeflateStream> = const { RefCell::new(Vec::new()) };
    static INFLATE: Idle<InflateStream> = const { RefCell::new(Vec::new()) };
}

/// A deflate stream with this window and level: the one `token` used last if the thread
/// still has it, else any idle one, else a new one.
pub(super) fn take_deflate(bits: u8, level: u32, token: u64) -> Box<DeflateStream> {
    let found = DEFLATE.with_borrow_mut(|idle| {
        let fits = |s: &DeflateStream| s.bits == bits && s.level == level;
        let at = idle
            .iter()
            .rposition(|s| fits(s) && s.holder == Holder::Owner(token))
            .or_else(|| idle.iter().rposition(|s| fits(s)))?;
        Some(idle.swap_remove(at))
    });
    found.unwrap_or_else(|| DeflateStream::new(bits, level))
}

pub(super) fn give_deflate(stream: Box<DeflateStream>) {
    DEFLATE.with_borrow_mut(|idle| keep(idle, stream));
}

/// An inflate stream: the one `token` used last if the thread still has it, else any.
pub(super) fn take_inflate(token: u64) -> Box<InflateStream> {
    let found = INFLATE.with_borrow_mut(|idle| {
        let at = idle.iter().rposition(|s| s.holder == Holder::Owner(token)).or(idle.len().checked_sub(1))?;
        Some(idle.swap_remove(at))
    });
    found.unwrap_or_else(InflateStream::new)
}

pub(super) fn give_inflate(stream: Box<InflateStream>) {
    INFLATE.with_borrow_mut(|idle| keep(idle, stream));
}

/// Keeps the newest `KEEP` streams, so a burst of concurrent messages does not leave
/// its peak number of streams behind.
fn keep<T>(idle: &mut Vec<T>, stream: T) {
    if idle.len() == KEEP {
        idle.remove(0);
    }
    idle.push(stream);
}

/// Idle streams this thread keeps, for tests: (deflate, inflate).
#[cfg(test)]
pub(super) fn idle() -> (usize, usize) {
    (DEFLATE.with_borrow(|d| d.len()), INFLATE.with_borrow(|i| i.len()))
}
