//! A connection's traffic, added to the counters on its periodic check and at its end
//! rather than per message: the echo path pays nothing for the counters.

#[cfg(feature = "metrics")]
use std::sync::OnceLock;

#[cfg(feature = "metrics")]
use metrics::{counter, gauge, Counter, Gauge};

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

/// The counters of one role, registered once: a report then costs a few atomic adds, not
/// a registry lookup per counter.
#[cfg(feature = "metrics")]
pub(super) struct Handles {
    messages_in: Counter,
    messages_out: Counter,
    payload_in: Counter,
    payload_out: Counter,
    wire_in: Counter,
    wire_out: Counter,
    waiting: Gauge,
    pub(super) open: Gauge,
    pub(super) opened: Counter,
}

#[cfg(feature = "metrics")]
pub(super) fn handles(role: Role) -> &'static Handles {
    static BY_ROLE: OnceLock<[Handles; 2]> = OnceLock::new();
    let make = |role: Role| {
        let role = super::role_label(role);
        Handles {
            messages_in: counter!(super::MESSAGES_RECEIVED, "role" => role),
            messages_out: counter!(super::MESSAGES_SENT, "role" => role),
            payload_in: counter!(super::PAYLOAD_RECEIVED, "role" => role),
            payload_out: counter!(super::PAYLOAD_SENT, "role" => role),
            wire_in: counter!(super::WIRE_RECEIVED, "role" => role),
            wire_out: counter!(super::WIRE_SENT, "role" => role),
            waiting: gauge!(super::WRITE_QUEUE),
            open: gauge!(super::CONNECTIONS, "role" => role),
            opened: counter!(super::CONNECTIONS_OPENED, "role" => role),
        }
    };
    let all = BY_ROLE.get_or_init(|| [make(Role::Server), make(Role::Client)]);
    &all[usize::from(role == Role::Client)]
}

#[cfg(feature = "metrics")]
impl Reported {
    /// Adds what changed since the last report.
    pub(crate) fn report(&mut self, role: Role, now: Flow) {
        let last = std::mem::replace(&mut self.last, now);
        let h = handles(role);
        let add = |c: &Counter, now: u64, last: u64| {
            if now > last {
                c.increment(now - last);
            }
        };
        add(&h.messages_in, now.messages_in, last.messages_in);
        add(&h.messages_out, now.messages_out, last.messages_out);
        add(&h.payload_in, now.payload_in, last.payload_in);
        add(&h.payload_out, now.payload_out, last.payload_out);
        add(&h.wire_in, now.wire_in, last.wire_in);
        add(&h.wire_out, now.wire_out, last.wire_out);
        if now.waiting != last.waiting {
            h.waiting.increment(now.waiting as f64 - last.waiting as f64);
        }
    }
}
