//! Opening-handshake helpers (RFC 6455 4): key checks, the accept value, versions and
//! subprotocol selection. Header extraction stays with the HTTP layer.

/// The only protocol version this crate speaks (`Sec-WebSocket-Version`).
///
/// ```
/// use actix_meta_websocket::protocol::{header_tokens, VERSION};
/// // A client that speaks several versions lists them; 13 must be among them.
/// assert!(header_tokens("8, 13").any(|v| v == VERSION));
/// ```
pub const VERSION: &str = "13";

/// Whether `key` is a valid `Sec-WebSocket-Key`: base64 of exactly 16 bytes.
///
/// ```
/// use actix_meta_websocket::protocol::is_valid_key;
/// assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
/// assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ")); // 15 chars short of padding
/// assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZR==")); // non-zero padding bits
/// ```
pub fn is_valid_key(key: &[u8]) -> bool {
    let is_b64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    key.len() == 24
        && key[..21].iter().all(is_b64)
        // 16 bytes leave 4 bits in the 22nd character, which must be zero.
        && matches!(key[21], b'A' | b'Q' | b'g' | b'w')
        && &key[22..] == b"=="
}

/// The `Sec-WebSocket-Accept` value for a key.
///
/// ```
/// use actix_meta_websocket::protocol::accept_key;
/// assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="); // RFC 6455 1.3
/// ```
pub fn accept_key(key: &[u8]) -> String {
    accept_key_bytes(key).iter().map(|&b| char::from(b)).collect()
}

/// [`accept_key`] as the bytes of a header value: base64 text, ASCII by construction.
pub(crate) fn accept_key_bytes(key: &[u8]) -> [u8; 28] {
    actix_http::ws::hash_key(key)
}

/// A fresh random `Sec-WebSocket-Key` for a client request.
///
/// ```
/// use actix_meta_websocket::protocol::{accept_key, generate_key, is_valid_key};
/// let key = generate_key();
/// assert!(is_valid_key(key.as_bytes()));
/// assert_eq!(accept_key(key.as_bytes()).len(), 28); // what the server must answer
/// ```
pub fn generate_key() -> String {
    base64_encode(&rand::random::<[u8; 16]>())
}

/// Standard base64 with padding (RFC 4648 4), for keys and Basic credentials.
///
/// ```
/// use actix_meta_websocket::protocol::base64_encode;
/// assert_eq!(base64_encode(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
/// assert_eq!(base64_encode(b"ab"), "YWI=");
/// ```
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Splits a comma-separated header value into trimmed, non-empty tokens (see
/// [`VERSION`]'s example).
pub fn header_tokens(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// Whether the comma-separated header `value` lists `token` (ASCII case ignored), as
/// `Connection: keep-alive, Upgrade` lists `upgrade`. Works on the raw bytes: a value
/// that is not UTF-8 can still list an ASCII token.
///
/// ```
/// use actix_meta_websocket::protocol::has_header_token;
/// assert!(has_header_token(b"keep-alive, Upgrade", "upgrade"));
/// assert!(!has_header_token(b"keep-alive, upgraded", "upgrade"));
/// ```
pub fn has_header_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Picks the subprotocol: the first of `supported` (in the server's order of preference)
/// that the client listed in any `Sec-WebSocket-Protocol` line.
///
/// ```
/// use actix_meta_websocket::protocol::select_subprotocol;
/// let supported = ["v2.chat", "v1.chat"];
/// assert_eq!(select_subprotocol(["v1.chat, v2.chat"], &supported), Some("v2.chat"));
/// assert_eq!(select_subprotocol(["other"], &supported), None);
/// ```
pub fn select_subprotocol<'a, 'h, I, S>(requested: I, supported: &'a [S]) -> Option<&'a str>
where
    I: IntoIterator<Item = &'h str>,
    S: AsRef<str>,
{
    let requested: Vec<&str> = requested.into_iter().flat_map(header_tokens).collect();
    supported.iter().map(AsRef::as_ref).find(|s| requested.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_valid_and_differ() {
        let a = generate_key();
        let b = generate_key();
        assert!(is_valid_key(a.as_bytes()), "{a}");
        assert_ne!(a, b);
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn bad_keys() {
        for k in [
            &b""[..],
            b"dGhlIHNhbXBsZSBub25jZQ=",
            b"dGhlIHNhbXBsZSBub25jZQ===",
            b"dGhlIHNhbXBsZSBub25j*Q==",
            b"dGhlIHNhbXBsZSBub25jZQ=A",
        ] {
            assert!(!is_valid_key(k), "{k:?}");
        }
    }

    #[test]
    fn tokens() {
        assert_eq!(header_tokens(" a , ,b,").collect::<Vec<_>>(), vec!["a", "b"]);
        assert!(has_header_token(b"\tWebSocket ", "websocket"));
        assert!(has_header_token(b"a,,Upgrade,", "upgrade"));
        assert!(!has_header_token(b"", "upgrade"));
        assert!(!has_header_token(b"up grade", "upgrade"));
    }
}
