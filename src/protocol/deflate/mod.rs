//! permessage-deflate (RFC 7692): the negotiation, and the compressor and decompressor
//! with context takeover, bounded inflation and memory that a server with many
//! connections can afford.
//!
//! What lives how long, with the default [`DeflateMemory::Pooled`]:
//!
//! | state | lives | size |
//! |---|---|---|
//! | zlib deflate stream | per thread, lent for one message | about 240 KiB + 4 × 2^bits allocated (zlib-rs) |
//! | zlib inflate stream | per thread, lent from a message's first frame to its last | about 40 KiB (a 32 KiB window, so it inflates any peer) |
//! | outgoing window | per connection, when our side takes context over | 2^bits bytes, from the first compressed message |
//! | incoming window | per connection, when the peer takes context over | 2^bits bytes, from the first compressed message |
//! | compressed output | per thread, one message | the largest message compressed |
//!
//! A direction without context takeover keeps nothing between messages. With
//! [`DeflateMemory::Dedicated`] each connection keeps its zlib streams instead of the
//! windows.

mod compress;
mod inflate;
mod negotiate;
mod streams;
mod window;

pub use compress::{CompressError, Compressor};
pub use inflate::Decompressor;
pub use negotiate::{
    DeflateConfig, DeflateMemory, DeflateNegotiationError, DeflateParams, PERMESSAGE_DEFLATE,
};

/// The empty stored block a sync flush ends with, which RFC 7692 7.2.1 strips.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// zlib cannot make raw deflate with an 8-bit window; a 9-bit zlib stream never reaches
/// further back than 250 bytes (window minus lookahead), which an 8-bit inflater accepts,
/// and inflating with a larger window than the peer's is always safe.
fn zlib_bits(bits: u8) -> u8 {
    bits.clamp(9, 15)
}

#[cfg(test)]
mod tests;
