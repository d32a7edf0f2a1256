//! What can go wrong on the wire, and the close code each violation maps to.

use super::CloseCode;

/// A violation of RFC 6455 / RFC 7692 or of a configured limit, found while decoding.
///
/// Each maps to the close code the connection is failed with ([`ProtocolError::close_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Opcodes 3–7 and 0xB–0xF are reserved.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// RSV bits set that no negotiated extension defines (value: the three bits).
    #[error("reserved bits {0:#05b} set without an extension that defines them")]
    ReservedBits(u8),
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload.
    #[error("control frame of {0} bytes (at most 125)")]
    ControlTooLong(u64),
    /// A continuation frame with no fragmented message in progress.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished.
    #[error("new data frame while a fragmented message is unfinished")]
    ExpectedContinuation,
    /// A 64-bit length with its most significant bit set.
    #[error("frame length with the most significant bit set")]
    InvalidLength,
    /// A length not encoded in the fewest bytes possible.
    #[error("frame length not minimally encoded")]
    NonMinimalLength,
    /// A client sent an unmasked frame.
    #[error("unmasked frame from a client")]
    UnmaskedFrame,
    /// A server sent a masked frame.
    #[error("masked frame from a server")]
    MaskedFrame,
    /// A frame announced more payload than the frame size limit.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    FrameTooLarge {
        /// Announced payload length.
        size: u64,
        /// Configured limit.
        limit: usize,
    },
    /// A message grew past the message size limit (inflated size for compressed ones).
    #[error("message of at least {size} bytes exceeds the limit of {limit}")]
    MessageTooLarge {
        /// Size reached when the limit was hit.
        size: u64,
        /// Configured limit.
        limit: usize,
    },
    /// A text message or close reason that is not UTF-8.
    #[error("invalid UTF-8 in text")]
    InvalidUtf8,
    /// A close frame with a one-byte payload.
    #[error("close frame with a one-byte payload")]
    InvalidClosePayload,
    /// A close code that may not appear on the wire.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A compressed message that does not inflate.
    #[error("invalid compressed data: {0}")]
    Inflate(String),
}

impl ProtocolError {
    /// The close code a connection failing with this error sends.
    ///
    /// ```
    /// use actix_meta_websocket::protocol::{CloseCode, ProtocolError};
    /// assert_eq!(ProtocolError::InvalidUtf8.close_code(), CloseCode::INVALID_PAYLOAD);
    /// assert_eq!(ProtocolError::ReservedOpcode(3).close_code(), CloseCode::PROTOCOL_ERROR);
    /// ```
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => {
                CloseCode::MESSAGE_TOO_BIG
            }
            ProtocolError::InvalidUtf8 | ProtocolError::Inflate(_) => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}
