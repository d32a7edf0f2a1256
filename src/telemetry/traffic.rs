//! A connection's traffic, added to the counters on its periodic check and at its end
//! rather than per message: the echo path pays nothing for the counters.

#[cfg(feature = "metrics")]
use metrics::{counter, gauge};

#[cfg(feature = "metrics")]
use crate::protocol::Role;

/// Where a connection stands: its totals since it started, and the bytes waiting now.
#[cfg(feature = "metrics")]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Flow {
    pub(crate) messages_in: u64,
    pub(crate) messages_out: u64,
    pub(crate) payload_in: u64,
    pub(crate) payload_out: u64,
    pub(crate) wire_in: u64,
    pub(crate) wire_out: u64,
    pub(crate) waiting: u64,
}

/// What a connection has added to the counters so far; nothing without the feature.
#[derive(Debug, Default)]
pub(crate) struct Reported {
    #[cfg(feature = "metrics")]
    last: Flow,
}

#[cfg(feature = "metrics")]
impl Reported {
    /// Adds what changed since the last report.
    pub(crate) fn report(&mut self, role: Role, now: Flow) {
        let last = std::mem::replace(&mut self.last, now);
        let role = super::role_label(role);
        let add = |name: &'static str, now: u64, last: u64| {
            if now > last {
                counter!(name, "role" => role).increment(now - last);
            }
        };
        add(super::MESSAGES_RECEIVED, now.messages_in, last.messages_in);
        add(super::MESSAGES_SENT, now.messages_out, last.messages_out);
        add(super::PAYLOAD_RECEIVED, now.payload_in, last.payload_in);
        add(super::PAYLOAD_SENT, now.payload_out, last.payload_out);
        add(super::WIRE_RECEIVED, now.wire_in, last.wire_in);
        add(super::WIRE_SENT, now.wire_out, last.wire_out);
        if now.waiting != last.waiting {
            gauge!(super::WRITE_QUEUE).increment(now.waiting as f64 - last.waiting as f64);
        }
    }
}
