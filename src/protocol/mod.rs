//! The wire protocol, sans-IO: frames, messages, permessage-deflate and handshake
//! negotiation. Nothing here knows about actix or sockets, so each piece can be tested,
//! fuzzed and benchmarked alone.
//!
//! ```
//! use actix_meta_websocket::protocol::{DataKind, Decoder, Encoder, Incoming, Limits, Role};
//! use bytes::{Bytes, BytesMut};
//!
//! // A client encodes (masked), a server decodes.
//! let mut client = Encoder::new(Role::Client, None, 0, 0);
//! let mut server = Decoder::new(Role::Server, Limits::default(), None);
//! let mut wire = BytesMut::new();
//! client.encode_message(DataKind::Text, "héllo".as_bytes(), &mut wire).unwrap();
//! let got = server.decode(&mut wire).unwrap();
//! assert_eq!(got, Some(Incoming::Text(Bytes::from("héllo"))));
//! ```

mod close;
mod codec;
mod deflate;
mod encoder;
mod error;
mod extensions;
mod frame;
mod handshake;
mod mask;
mod utf8;

pub use close::{parse_close_payload, truncate_reason, CloseCode, CloseFrame};
pub use codec::{DataKind, Decoder, Incoming, Limits, Role};
pub use deflate::{
    CompressError, Compressor, Decompressor, DeflateConfig, DeflateMemory, DeflateNegotiationError,
    DeflateParams, PERMESSAGE_DEFLATE,
};
pub(crate) use encoder::FrameKey;
pub use encoder::{EncodeError, Encoder};
pub use error::ProtocolError;
pub use extensions::{parse_extension_headers, parse_extensions, Extension, ExtensionParseError};
pub use frame::{FrameHeader, OpCode, RSV1};
pub(crate) use handshake::accept_key_bytes;
pub use handshake::{
    accept_key, base64_encode, generate_key, has_header_token, header_tokens, is_valid_key,
    select_subprotocol, VERSION,
};
pub use mask::apply_mask;
pub use utf8::{InvalidUtf8, Utf8Validator};
