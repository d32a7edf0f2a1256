//! Per-connection settings shared by accepted and dialled connections.

use std::time::Duration;

use crate::error::ConfigError;
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
/// | `max_write_buffer` | 1 MiB | encoded outgoing bytes, at most; past it writes queue (see below) |
/// | `max_write_queue` | 64 MiB | payload bytes of queued writes, at most; past it the peer is a slow consumer |
/// | `write_timeout` | 10 s | how long the peer may take no byte while bytes wait for it |
/// | `max_in_flight` | 32 | messages handed to the target and not yet handled, at most |
/// | `max_in_flight_bytes` | 1 MiB | their payload bytes, at most (one larger message may go alone) |
/// | `fragment_size` | `None` | split outgoing messages into frames of at most this many bytes |
/// | `deflate` | defaults of [`DeflateConfig`] | used when compression is enabled |
///
/// Outgoing policy: a slow consumer is a peer that does not read over time, not one that
/// meets a burst. A message is encoded into the outgoing buffer while it holds less than
/// `max_write_buffer` bytes. Past that, writes queue in order and go out as the peer
/// reads: [`ConnectionId::send_wait`](crate::ConnectionId::send_wait) returns once its
/// message is in the buffer, a fire-and-forget [`ConnectionId::send`](crate::ConnectionId::send)
/// waits in the queue, and [`ConnectionId::try_send`](crate::ConnectionId::try_send)
/// answers `Full` instead, without closing anything. The connection closes with 1008 and
/// [`DisconnectReason::SlowConsumer`](crate::DisconnectReason::SlowConsumer) when the peer
/// takes no byte for `write_timeout` while bytes wait for it (found within 1.25 times
/// `write_timeout`), or when queued writes would pass `max_write_queue` bytes (a producer
/// outpacing its peer for good). So a burst of any size up to `max_write_queue` reaches a
/// reading peer whole, and a connection holds at most about `max_write_buffer` +
/// `max_write_queue` + 64 KiB (the HTTP layer's share) of outgoing data, for at most 1.25
/// `write_timeout` once its peer stops reading. Pings and pongs never queue; a close
/// queues behind the writes before it.
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
/// use actix_meta_websocket::ConnectionSettings;
/// let cfg = ConnectionSettings { heartbeat: Some(Duration::from_secs(5)), ..Default::default() };
/// assert_eq!(cfg.idle_timeout, Some(Duration::from_secs(90)));
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Frame and message size limits.
    pub limits: Limits,
    /// Send a ping after this long without receiving; `None` disables pings.
    pub heartbeat: Option<Duration>,
    /// Close after this long without receiving; `None` never times out.
    pub idle_timeout: Option<Duration>,
    /// Wait this long for the peer to complete a closing handshake we started.
    pub close_timeout: Duration,
    /// Encoded outgoing bytes, at most; past it writes queue.
    pub max_write_buffer: usize,
    /// Payload bytes of queued writes, at most; past it the peer is a slow consumer. One
    /// write larger than this still queues alone.
    pub max_write_queue: usize,
    /// How long the peer may take no byte while bytes wait for it.
    pub write_timeout: Duration,
    /// Messages handed to the target and not yet handled, at most.
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

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            limits: Limits::default(),
            heartbeat: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(90)),
            close_timeout: Duration::from_secs(5),
            max_write_buffer: 1 << 20,
            max_write_queue: 64 << 20,
            write_timeout: Duration::from_secs(10),
            max_in_flight: 32,
            max_in_flight_bytes: 1 << 20,
            fragment_size: None,
            deflate: DeflateConfig::default(),
        }
    }
}

impl ConnectionSettings {
    /// Checks every setting; [`WsHandler::new`](crate::WsHandler::new) and
    /// [`connect`](crate::connect) call it, so a connection never starts with a setting
    /// that cannot work (a zero-sized buffer or window would never read).
    ///
    /// ```
    /// use actix_meta_websocket::ConnectionSettings;
    /// assert!(ConnectionSettings::default().validate().is_ok());
    /// let cfg = ConnectionSettings { max_in_flight_bytes: 0, ..Default::default() };
    /// assert_eq!(cfg.validate().unwrap_err().to_string(),
    ///     "invalid setting `max_in_flight_bytes`: must be at least 1");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason| Err(ConfigError { field, reason });
        let positive = "must be at least 1";
        let nonzero_time = "must be longer than zero";
        if self.limits.max_frame_size == 0 {
            return err("limits.max_frame_size", positive);
        }
        if self.limits.max_message_size == 0 {
            return err("limits.max_message_size", positive);
        }
        if self.heartbeat.is_some_and(|d| d.is_zero()) {
            return err("heartbeat", "must be longer than zero (None turns pings off)");
        }
        if self.idle_timeout.is_some_and(|d| d.is_zero()) {
            return err("idle_timeout", "must be longer than zero (None turns it off)");
        }
        if self.close_timeout.is_zero() {
            return err("close_timeout", nonzero_time);
        }
        if self.write_timeout.is_zero() {
            return err("write_timeout", nonzero_time);
        }
        if self.max_write_buffer == 0 {
            return err("max_write_buffer", positive);
        }
        if self.max_in_flight == 0 {
            return err("max_in_flight", positive);
        }
        if self.max_in_flight_bytes == 0 {
            return err("max_in_flight_bytes", positive);
        }
        if self.fragment_size == Some(0) {
            return err("fragment_size", "must be at least 1 (None sends one frame per message)");
        }
        self.validate_deflate()
    }

    fn validate_deflate(&self) -> Result<(), ConfigError> {
        let d = &self.deflate;
        let bits = "must be 8..=15";
        if !(8..=15).contains(&d.server_max_window_bits) {
            return Err(ConfigError { field: "deflate.server_max_window_bits", reason: bits });
        }
        if !(8..=15).contains(&d.client_max_window_bits) {
            return Err(ConfigError { field: "deflate.client_max_window_bits", reason: bits });
        }
        if d.level > 9 {
            return Err(ConfigError { field: "deflate.level", reason: "must be 0..=9" });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_unworkable_setting_is_named() {
        let cases: Vec<(&str, ConnectionSettings)> = vec![
            ("max_write_buffer", ConnectionSettings { max_write_buffer: 0, ..Default::default() }),
            ("max_in_flight_bytes", ConnectionSettings { max_in_flight_bytes: 0, ..Default::default() }),
            ("max_in_flight", ConnectionSettings { max_in_flight: 0, ..Default::default() }),
            ("write_timeout", ConnectionSettings { write_timeout: Duration::ZERO, ..Default::default() }),
            ("close_timeout", ConnectionSettings { close_timeout: Duration::ZERO, ..Default::default() }),
            ("heartbeat", ConnectionSettings { heartbeat: Some(Duration::ZERO), ..Default::default() }),
            ("idle_timeout", ConnectionSettings { idle_timeout: Some(Duration::ZERO), ..Default::default() }),
            ("fragment_size", ConnectionSettings { fragment_size: Some(0), ..Default::default() }),
            (
                "limits.max_frame_size",
                ConnectionSettings {
                    limits: Limits { max_frame_size: 0, ..Limits::default() },
                    ..Default::default()
                },
            ),
            (
                "deflate.server_max_window_bits",
                ConnectionSettings {
                    deflate: DeflateConfig { server_max_window_bits: 16, ..DeflateConfig::default() },
                    ..Default::default()
                },
            ),
            (
                "deflate.level",
                ConnectionSettings {
                    deflate: DeflateConfig { level: 10, ..DeflateConfig::default() },
                    ..Default::default()
                },
            ),
        ];
        for (field, cfg) in cases {
            assert_eq!(cfg.validate().map_err(|e| e.field), Err(field));
        }
        // Zero queue is a policy (no queue at all), not a mistake; None turns timers off.
        let ok = ConnectionSettings {
            max_write_queue: 0,
            heartbeat: None,
            idle_timeout: None,
            ..Default::default()
        };
        assert_eq!(ok.validate(), Ok(()));
    }
}
