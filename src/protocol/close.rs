//! Close codes and close-frame payloads (RFC 6455 5.5.1 and 7.4).

use std::fmt;

use super::ProtocolError;

/// A WebSocket close status code.
///
/// ```
/// use actix_meta_websocket::protocol::CloseCode;
/// assert!(CloseCode::NORMAL.is_valid_on_wire());
/// assert!(!CloseCode(1005).is_valid_on_wire()); // reserved for "no status"
/// assert!(CloseCode(4000).is_valid_on_wire()); // private use
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection dropped without a close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: data inconsistent with the message type (e.g. invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message that violates the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a frame or message too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (e.g. overloaded).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

    /// Whether this code may appear in a close frame: 1000–1003, 1007–1014 (registered
    /// with IANA) and 3000–4999 (libraries and private use).
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

/// The code and reason of a close frame.
///
/// See the second example of [`Encoder`](crate::protocol::Encoder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, at most 123 bytes of UTF-8 on the wire.
    pub reason: String,
}

/// Parses a close frame payload: empty (no status), or a valid code followed by UTF-8.
///
/// ```
/// use actix_meta_websocket::protocol::{parse_close_payload, CloseCode};
/// let frame = parse_close_payload(b"\x03\xe8bye").unwrap().unwrap();
/// assert_eq!(frame.code, CloseCode::NORMAL);
/// assert_eq!(frame.reason, "bye");
/// assert!(parse_close_payload(b"\x03").is_err());
/// ```
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason =
                simdutf8::basic::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?.to_owned();
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

/// Truncates `reason` to at most 123 bytes on a character boundary, the most a close
/// frame can carry next to its code.
///
/// ```
/// use actix_meta_websocket::protocol::truncate_reason;
/// let long = "é".repeat(100); // 200 bytes
/// assert_eq!(truncate_reason(&long).len(), 122); // 61 whole characters
/// assert_eq!(truncate_reason("bye"), "bye");
/// ```
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= 123 {
        return reason;
    }
    let mut end = 123;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_valid_and_invalid() {
        for ok in
            [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
        {
            assert!(CloseCode(ok).is_valid_on_wire(), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!CloseCode(bad).is_valid_on_wire(), "{bad}");
        }
    }

    #[test]
    fn close_payload_rules() {
        assert_eq!(parse_close_payload(b""), Ok(None));
        assert_eq!(parse_close_payload(b"\x03"), Err(ProtocolError::InvalidClosePayload));
        assert_eq!(parse_close_payload(b"\x03\xed"), Err(ProtocolError::InvalidCloseCode(1005)));
        assert_eq!(parse_close_payload(b"\x03\xe8\xff"), Err(ProtocolError::InvalidUtf8));
        let mut payload = vec![0x0f, 0xa0];
        payload.extend_from_slice("héllo".as_bytes());
        let f = parse_close_payload(&payload).unwrap().unwrap();
        assert_eq!(f.code, CloseCode(4000));
        assert_eq!(f.reason, "héllo");
    }

    #[test]
    fn reason_truncated_on_char_boundary() {
        let long = "é".repeat(100);
        let t = truncate_reason(&long);
        assert!(t.len() <= 123);
        assert_eq!(t.len(), 122);
        assert_eq!(truncate_reason("short"), "short");
    }
}
