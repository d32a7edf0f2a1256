//! Per-connection settings shared by accepted and dialled connections.

use std::time::Duration;

use crate::protocol::{DeflateConfig, Limits};

/// Limits, timers and the outgoing-buffer policy of a connection.
///
/// | setting | default | effect |
/// |---|---|---|
/// | `limits.max_frame_size` | 16 MiB | larger frames close with 1009, refused from the header |
/// | `limits.max_message_size` | 64 MiB | larger messages (inflated size) close with 1009 |
/// | `heartbeat` | 30 s | a ping after this long without receiving anything |
/// | `idle_timeout` | 90 s | close with 1001 after this long without receiving anything |
/// | `close_timeout` | 5 s | how long to wait for the peer's side of the closing handshake |
/// | `max_write_buffer` | 1 MiB | bound on buffered outgoing bytes (see below) |
/// | `write_timeout` | 10 s | how long `send_wait` may wait for room before the peer counts as stuck |
/// | `fragment_size` | `None` | split outgoing messages into frames of at most this many bytes |
/// | `deflate` | defaults of [`DeflateConfig`] | used when compression is enabled |
///
/// Outgoing-buffer policy: a message is accepted while the buffer holds less than
/// `max_write_buffer` bytes. Past that, [`ConnectionId::send_wait`](crate::ConnectionId::send_wait)
/// waits for the peer to read, up to `write_timeout`; a fire-and-forget
/// [`ConnectionId::send`](crate::ConnectionId::send), or a wait that times out, closes the
/// connection with 1008 and [`DisconnectReason::SlowConsumer`](crate::DisconnectReason::SlowConsumer).
///
/// Incoming backpressure: a connection hands the target one message at a time and reads
/// its socket only when the target has handled the previous one, so a slow target slows
/// its peers through TCP instead of growing memory. Meanwhile the idle timeout is paused.
///
/// ```
/// use std::time::Duration;
/// use actix_meta_websocket::ConnectionConfig;
/// let cfg = ConnectionConfig { heartbeat: Some(Duration::from_secs(5)), ..Default::default() };
/// assert_eq!(cfg.idle_timeout, Some(Duration::from_secs(90)));
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Frame and message size limits.
    pub limits: Limits,
    /// Send a ping after this long without receiving; `None` disables pings.
    pub heartbeat: Option<Duration>,
    /// Close after this long without receiving; `None` never times out.
    pub idle_timeout: Option<Duration>,
    /// Wait this long for the peer to complete a closing handshake we started.
    pub close_timeout: Duration,
    /// Bound on buffered outgoing bytes.
    pub max_write_buffer: usize,
    /// How long an awaiting sender may wait for room in the outgoing buffer.
    pub write_timeout: Duration,
    /// Split outgoing data messages into frames of at most this many payload bytes (after
    /// compression), for peers with small frame limits; `None` sends one frame each.
    pub fragment_size: Option<usize>,
    /// permessage-deflate parameters, used when compression is enabled.
    pub deflate: DeflateConfig,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            limits: Limits::default(),
            heartbeat: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(90)),
            close_timeout: Duration::from_secs(5),
            max_write_buffer: 1 << 20,
            write_timeout: Duration::from_secs(10),
            fragment_size: None,
            deflate: DeflateConfig::default(),
        }
    }
}
