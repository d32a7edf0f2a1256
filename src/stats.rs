//! A running connection's addresses and counters (Ergo's `HandleInspect`).

use std::net::SocketAddr;
use std::time::Duration;

use crate::protocol::Role;

/// A snapshot of one connection, from [`ConnectionId::stats`](crate::ConnectionId::stats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Our end's address.
    pub local_addr: Option<SocketAddr>,
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
    /// Accepted (`Server`) or dialled (`Client`).
    pub role: Role,
    /// The negotiated subprotocol.
    pub protocol: Option<String>,
    /// Whether permessage-deflate is in use.
    pub compressed: bool,
    /// Bytes received on the wire.
    pub bytes_in: u64,
    /// Bytes written to the wire.
    pub bytes_out: u64,
    /// Data messages received (and handed to the target).
    pub messages_in: u64,
    /// Messages accepted for writing.
    pub messages_out: u64,
    /// Outgoing bytes not yet on the socket.
    pub buffered_out: usize,
    /// Received bytes not yet decoded.
    pub buffered_in: usize,
    /// Time since the connection started.
    pub age: Duration,
}
