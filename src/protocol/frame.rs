//! Frame headers (RFC 6455 5.2): parsing with every header rule, and encoding.

use bytes::{BufMut, BytesMut};

use super::ProtocolError;

/// A frame opcode.
///
/// See the second example of [`Encoder`](crate::protocol::Encoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: a text message (UTF-8).
    Text,
    /// 0x2: a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// The opcode for a wire value, or `None` for the reserved values.
    ///
    /// See the second example of [`Encoder`](crate::protocol::Encoder).
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The wire value.
    ///
    /// See the second example of [`Encoder`](crate::protocol::Encoder).
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong.
    ///
    /// See the second example of [`Encoder`](crate::protocol::Encoder).
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A parsed frame header.
///
/// See the second example of [`Encoder`](crate::protocol::Encoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of its message.
    pub fin: bool,
    /// The three RSV bits, RSV1 as 0b100.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

/// RSV1: "per-message compressed" under permessage-deflate.
///
/// ```
/// use actix_meta_websocket::protocol::{FrameHeader, RSV1};
/// // A compressed text frame's first byte: FIN, RSV1, opcode 1.
/// let (h, _) = FrameHeader::parse(&[0xc1, 0x00]).unwrap().unwrap();
/// assert_eq!(h.rsv, RSV1);
/// ```
pub const RSV1: u8 = 0b100;

impl FrameHeader {
    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed, else the header and its length.
    /// Checks the rules that need no connection state: reserved opcodes, control frames
    /// unfragmented and at most 125 bytes, 64-bit lengths with the top bit clear, lengths
    /// minimally encoded.
    ///
    /// ```
    /// use actix_meta_websocket::protocol::{FrameHeader, OpCode};
    /// // RFC 6455 5.7: a single-frame masked text message "Hello".
    /// let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    /// let (h, len) = FrameHeader::parse(&wire).unwrap().unwrap();
    /// assert_eq!((h.fin, h.opcode, h.payload_len, len), (true, OpCode::Text, 5, 6));
    /// assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
    /// ```
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let (b0, b1) = match buf {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Ok(None),
        };
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0b111;
        let raw_op = b0 & 0x0f;
        let opcode = OpCode::from_u8(raw_op).ok_or(ProtocolError::ReservedOpcode(raw_op))?;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControl);
            }
            if len7 > 125 {
                return Err(ProtocolError::ControlTooLong(u64::from(len7)));
            }
        }
        let (payload_len, mut at) = match len7 {
            126 => {
                let Some(b) = buf.get(2..4) else { return Ok(None) };
                let len = u64::from(u16::from_be_bytes([b[0], b[1]]));
                if len < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 4)
            }
            127 => {
                let Some(b) = buf.get(2..10) else { return Ok(None) };
                let mut be = [0u8; 8];
                be.copy_from_slice(b);
                let len = u64::from_be_bytes(be);
                if len >> 63 != 0 {
                    return Err(ProtocolError::InvalidLength);
                }
                if len <= 0xffff {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            let Some(k) = buf.get(at..at + 4) else { return Ok(None) };
            at += 4;
            Some([k[0], k[1], k[2], k[3]])
        } else {
            None
        };
        Ok(Some((FrameHeader { fin, rsv, opcode, mask, payload_len }, at)))
    }

    /// Appends the encoded header to `dst`.
    ///
    /// See the second example of [`Encoder`](crate::protocol::Encoder).
    pub fn encode(&self, dst: &mut BytesMut) {
        let b0 = (u8::from(self.fin) << 7) | ((self.rsv & 0b111) << 4) | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        dst.reserve(14);
        dst.put_u8(b0);
        match self.payload_len {
            n if n < 126 => dst.put_u8(mask_bit | n as u8),
            n if n <= 0xffff => {
                dst.put_u8(mask_bit | 126);
                dst.put_u16(n as u16);
            }
            n => {
                dst.put_u8(mask_bit | 127);
                dst.put_u64(n);
            }
        }
        if let Some(key) = self.mask {
            dst.put_slice(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        FrameHeader::parse(b)
    }

    #[test]
    fn rfc_examples() {
        // Unmasked "Hello".
        let (h, n) = parse(&[0x81, 0x05, 0x48]).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.mask, h.payload_len, n), (true, OpCode::Text, None, 5, 2));
        // Fragmented unmasked text: "Hel" then "lo".
        let (h, _) = parse(&[0x01, 0x03]).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode), (false, OpCode::Text));
        let (h, _) = parse(&[0x80, 0x02]).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode), (true, OpCode::Continuation));
        // 256 bytes binary, 64 KiB binary.
        let (h, n) = parse(&[0x82, 0x7e, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (256, 4));
        let (h, n) = parse(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (65536, 10));
        // Ping "Hello", unmasked.
        let (h, _) = parse(&[0x89, 0x05]).unwrap().unwrap();
        assert_eq!(h.opcode, OpCode::Ping);
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        let full = [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for n in 0..full.len() {
            assert_eq!(parse(&full[..n]), Ok(None), "prefix {n}");
        }
        assert!(parse(&full).unwrap().is_some());
    }

    #[test]
    fn header_rules() {
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(parse(&[0x80 | op, 0]), Err(ProtocolError::ReservedOpcode(op)));
        }
        assert_eq!(parse(&[0x09, 0]), Err(ProtocolError::FragmentedControl));
        assert_eq!(parse(&[0x89, 126, 0, 126]), Err(ProtocolError::ControlTooLong(126)));
        assert_eq!(parse(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]), Err(ProtocolError::InvalidLength));
        assert_eq!(parse(&[0x82, 126, 0, 125]), Err(ProtocolError::NonMinimalLength));
        assert_eq!(parse(&[0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff]), Err(ProtocolError::NonMinimalLength));
    }

    #[test]
    fn encode_parse_round_trip() {
        for len in [0u64, 1, 125, 126, 65535, 65536, 1 << 40] {
            for mask in [None, Some([9, 8, 7, 6])] {
                for (fin, rsv) in [(true, 0), (false, RSV1), (true, 0b111)] {
                    let h = FrameHeader { fin, rsv, opcode: OpCode::Binary, mask, payload_len: len };
                    let mut b = BytesMut::new();
                    h.encode(&mut b);
                    let (p, n) = parse(&b).unwrap().unwrap();
                    assert_eq!(p, h);
                    assert_eq!(n, b.len());
                }
            }
        }
    }
}
