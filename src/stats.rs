//! A running connection's addresses and counters (Ergo's `HandleInspect`).

use std::net::SocketAddr;
use std::time::Duration;

use crate::protocol::Role;

/// A snapshot of one connection, from [`ConnectionId::stats`](crate::ConnectionId::stats).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// What crossed the connection so far.
    pub traffic: Traffic,
    /// What the connection holds now.
    pub buffers: Buffers,
    /// Time since the connection started.
    pub age: Duration,
}

/// Bytes and messages both ways, since the connection started (part of [`Stats`]; see
/// [`ConnectionId::stats`](crate::ConnectionId::stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Traffic {
    /// Bytes received on the wire: frame headers, masks and compressed payloads included.
    pub bytes_in: u64,
    /// Bytes written to the wire, counted the same way.
    pub bytes_out: u64,
    /// Data messages received (and handed to the target).
    pub messages_in: u64,
    /// Messages accepted for writing (data, ping and pong).
    pub messages_out: u64,
    /// Payload bytes of the data messages received, after inflating (what Ergo's inspect
    /// reports as bytes in).
    pub message_bytes_in: u64,
    /// Payload bytes of the messages accepted for writing, before compressing.
    pub message_bytes_out: u64,
}

/// Bytes a connection holds at the moment (part of [`Stats`]; see
/// [`ConnectionId::stats`](crate::ConnectionId::stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Buffers {
    /// Encoded outgoing bytes not yet on the socket.
    pub outgoing: usize,
    /// Payload bytes of writes queued behind a full outgoing buffer.
    pub queued: usize,
    /// Received bytes not yet decoded.
    pub incoming: usize,
}
