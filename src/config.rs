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
/// | `write_timeout` | 10 s | how long a queued write may wait for room before the peer counts as stuck |
/// | `max_in_flight` | 32 | messages handed to the target and not yet handled, at most |
/// | `max_in_flight_bytes` | 1 MiB | their payload bytes, at most (one larger message may go alone) |
/// | `fragment_size` | `None` | split outgoing messages into frames of at most this many bytes |
/// | `deflate` | defaults of [`DeflateConfig`] | used when compression is enabled |
///
/// Outgoing-buffer policy: a message is written into the buffer while it holds less than
/// `max_write_buffer` bytes. Past that, writes queue in order and wait for the peer to
/// read: [`ConnectionId::send_wait`](crate::ConnectionId::send_wait) returns once its
/// message is in the buffer, a fire-and-forget [`ConnectionId::send`](crate::ConnectionId::send)
/// just waits in the queue. A peer that leaves the oldest queued write waiting longer than
/// `write_timeout`, or fire-and-forget writes that would queue more than another
/// `max_write_buffer` bytes, make the connection close with 1008 and
/// [`DisconnectReason::SlowConsumer`](crate::DisconnectReason::SlowConsumer). So a burst
/// larger than the buffer (say, echoing a big message) goes out as the peer reads it, and
/// a stuck peer costs at most about twice `max_write_buffer` for `write_timeout`. Pings and
/// pongs never queue; a close queues behind the writes before it.
///
/// Incoming backpressure: a connection hands its target at most `max_in_flight` messages
/// (and `max_in_flight_bytes` of payload) that the target has not handled yet, in order, and
/// stops reading its socket while that window is full, so a slow target slows its peers
/// through TCP instead of growing memory. Meanwhile the idle timeout is paused. A window of
/// several messages lets a pipelining peer be served in batches (one read, one write for
/// many messages); `max_in_flight: 1` hands over one message at a time.
///
/// When the peer sends a close frame or breaks the protocol, the connection answers (close
/// frame) only after the target has handled the messages before it, so replies to them go
/// out first; a target slower than `close_timeout` is not waited for.
///
/// "Handled" means the target's handler has returned; for a handler that returns a future,
/// the window reopens when the future of the latest message handed over completes.
///
/// Memory between messages: a connection's buffers grow to the largest message it
/// carries. Once nothing it handed over awaits handling, it gives them back at its periodic
/// check, which runs every `heartbeat` or every quarter of `idle_timeout`, whichever is
/// shorter (22.5 s by default). With both `None` there is no check, and buffers keep their
/// size until the connection ends.
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
    /// How long the oldest queued write may wait for room in the outgoing buffer.
    pub write_timeout: Duration,
    /// Messages handed to the target and not yet handled, at most (0 counts as 1).
    pub max_in_flight: usize,
    /// Payload bytes of those messages, at most; a message larger than this is handed over
    /// alone.
    pub max_in_flight_bytes: usize,
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
            max_in_flight: 32,
            max_in_flight_bytes: 1 << 20,
            fragment_size: None,
            deflate: DeflateConfig::default(),
        }
    }
}
