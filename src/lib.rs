//! WebSocket connections as actix actors.
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod protocol;
