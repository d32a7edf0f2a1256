//! Incremental, fail-fast UTF-8 validation for text messages that arrive in pieces.

/// Validates a byte stream as UTF-8 piece by piece.
///
/// A sequence split between two pieces is carried over (at most 3 bytes), so the first
/// invalid byte is reported by the `feed` that delivers it, not at the end of the message.
///
/// ```
/// use actix_meta_websocket::protocol::{InvalidUtf8, Utf8Validator};
/// let mut v = Utf8Validator::default();
/// assert!(v.feed(&[0xce]).is_ok()); // first half of 'κ'
/// assert!(v.feed(&[0xba, b'a']).is_ok());
/// assert!(v.is_complete());
/// assert_eq!(v.feed(&[0xed, 0xa0]), Err(InvalidUtf8)); // a surrogate: invalid at its second byte
/// v.reset(); // for the next message
/// assert!(v.feed("κα".as_bytes()).is_ok() && v.is_complete());
/// ```
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

/// The bytes fed so far are not a prefix of any valid UTF-8 text (see
/// [`Utf8Validator`]'s example).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    /// Checks the next piece.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            // Complete the carried-over sequence one byte at a time: the first byte that
            // makes it invalid fails, a completed char lets the rest go through the fast path.
            while let Some((&b, rest)) = bytes.split_first() {
                self.partial[self.partial_len as usize] = b;
                self.partial_len += 1;
                bytes = rest;
                match simdutf8::compat::from_utf8(&self.partial[..self.partial_len as usize]) {
                    Ok(_) => {
                        self.partial_len = 0;
                        break;
                    }
                    Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                    Err(_) => {}
                }
            }
            if self.partial_len > 0 {
                return Ok(());
            }
        }
        // The common case: the whole piece is valid.
        if simdutf8::basic::from_utf8(bytes).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let tail = &bytes[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// Whether the bytes fed so far end on a character boundary.
    pub fn is_complete(&self) -> bool {
        self.partial_len == 0
    }

    /// Forgets any carried-over bytes, ready for the next message.
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(bytes: &[u8], at: usize) -> Result<bool, InvalidUtf8> {
        let mut v = Utf8Validator::default();
        v.feed(&bytes[..at])?;
        v.feed(&bytes[at..])?;
        Ok(v.is_complete())
    }

    #[test]
    fn every_split_of_valid_text_is_valid() {
        let s = "κόσμε 𝄞 a€b\u{10FFFF}";
        for at in 0..=s.len() {
            assert_eq!(feed_split(s.as_bytes(), at), Ok(true), "split at {at}");
        }
    }

    #[test]
    fn truncated_text_is_incomplete() {
        let s = "a€".as_bytes();
        let mut v = Utf8Validator::default();
        v.feed(&s[..2]).unwrap();
        assert!(!v.is_complete());
    }

    #[test]
    fn fails_on_the_piece_with_the_first_bad_byte() {
        // 0xf4 0x90 is beyond U+10FFFF: invalid at the second byte.
        let mut v = Utf8Validator::default();
        v.feed(b"ok \xf4").unwrap();
        assert_eq!(v.feed(b"\x90\x80\x80"), Err(InvalidUtf8));
        // Overlong, surrogates, stray continuation, 0xff.
        for bad in [&b"\xc0\xaf"[..], b"\xed\xa0\x80", b"\x80", b"\xff", b"\xe0\x80\xaf"] {
            for at in 0..bad.len() {
                assert_eq!(feed_split(bad, at), Err(InvalidUtf8), "{bad:?} at {at}");
            }
        }
    }
}
