//! Where a connection stands in its closing handshake, and why it ends.
//!
//! One state answers the questions the I/O loop asks (may it read, may it write, must it drop
//! TCP once flushed); the first reason given is the one the target receives. Knows
//! nothing of sockets, frames or actors.

use crate::message::DisconnectReason;
use crate::protocol::{CloseCode, ProtocolError, Role};

/// How the peer's side of the stream ended, waiting for the target before it is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PeerEnd {
    /// Its close frame, to be echoed with this code.
    Close(CloseCode),
    /// A protocol error: fail the connection with its code.
    Violation(ProtocolError),
}

/// The closing handshake, RFC 6455 section 7.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Handshake {
    /// Reading and writing.
    Open,
    /// The peer's stream has ended; nothing more is read, and the answer waits until the
    /// target has handled the messages before it, so its replies go out first.
    Draining { end: PeerEnd, close_sent: bool },
    /// Our close frame is out and the peer's is not in: reading goes on, since the peer may
    /// still send what it had in flight.
    CloseSent,
    /// Both close frames are exchanged, or the connection is failing: TCP ends once the
    /// outgoing bytes are flushed.
    Closed { failing: bool },
    /// The transport is closed or failed; the actor is stopping.
    Done,
}

/// The state and the reason the target will be given.
#[derive(Debug)]
pub(super) struct Lifecycle {
    state: Handshake,
    reason: Option<DisconnectReason>,
}

/// What the caller must write when the state changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CloseFrame {
    /// Nothing: a close frame is out already.
    None,
    /// A close frame with this code and text (`NO_STATUS`: a bare close frame).
    Send(CloseCode, String),
}

impl Lifecycle {
    pub(super) fn new() -> Self {
        Lifecycle { state: Handshake::Open, reason: None }
    }

    /// Keeps the first reason: later ones are consequences of it.
    pub(super) fn set_reason(&mut self, reason: DisconnectReason) {
        if self.reason.is_none() {
            self.reason = Some(reason);
        }
    }

    pub(super) fn reason(&self) -> Option<&DisconnectReason> {
        self.reason.as_ref()
    }

    /// TCP failed under the connection: the reason says so in plain words.
    pub(super) fn lost(&mut self, e: &std::io::Error) {
        use std::io::ErrorKind as K;
        let what = match e.kind() {
            K::UnexpectedEof => "the peer closed the TCP connection without a close frame".to_owned(),
            K::ConnectionReset => "the peer reset the TCP connection".to_owned(),
            K::BrokenPipe | K::ConnectionAborted => "the peer closed the TCP connection".to_owned(),
            K::TimedOut => "the TCP connection timed out".to_owned(),
            _ => format!("I/O error: {e}"),
        };
        self.set_reason(DisconnectReason::ConnectionLost(what));
    }

    /// The reason for `MessageDisconnect`.
    pub(super) fn take_reason(&mut self) -> DisconnectReason {
        self.reason.take().unwrap_or_else(|| DisconnectReason::ConnectionLost("actor stopped".into()))
    }

    /// Data may be read and handed to the target.
    #[inline]
    pub(super) fn may_read(&self) -> bool {
        matches!(self.state, Handshake::Open | Handshake::CloseSent)
    }

    /// Our close frame is out: nothing more may be written.
    #[inline]
    pub(super) fn close_sent(&self) -> bool {
        match &self.state {
            Handshake::Open => false,
            Handshake::Draining { close_sent, .. } => *close_sent,
            Handshake::CloseSent | Handshake::Closed { .. } | Handshake::Done => true,
        }
    }

    /// The peer's end waits for the target.
    #[inline]
    pub(super) fn is_draining(&self) -> bool {
        matches!(self.state, Handshake::Draining { .. })
    }

    /// TCP ends as soon as the outgoing bytes are flushed: at once when failing, and on
    /// the server once the handshake is complete (RFC 6455 7.1.1: the server closes TCP
    /// first); a client waits for the server to do it.
    #[inline]
    pub(super) fn drop_tcp_when_flushed(&self, role: Role) -> bool {
        matches!(self.state, Handshake::Closed { failing } if failing || role == Role::Server)
    }

    /// A client past the handshake reads only to see the server's EOF.
    #[inline]
    pub(super) fn reads_for_eof(&self, role: Role) -> bool {
        matches!(self.state, Handshake::Closed { failing: false }) && role == Role::Client
    }

    /// Both close frames are exchanged (EOF then is the expected end, not a loss).
    #[inline]
    pub(super) fn handshake_done(&self) -> bool {
        matches!(self.state, Handshake::Closed { failing: false })
    }

    #[inline]
    pub(super) fn is_done(&self) -> bool {
        matches!(self.state, Handshake::Done)
    }

    /// We close with `code`: returns the frame to write, if one is not out already.
    pub(super) fn close(&mut self, code: CloseCode, text: &str, reason: DisconnectReason) -> CloseFrame {
        self.set_reason(reason);
        let frame =
            if self.close_sent() { CloseFrame::None } else { CloseFrame::Send(code, text.to_owned()) };
        self.state = match std::mem::replace(&mut self.state, Handshake::Done) {
            Handshake::Open => Handshake::CloseSent,
            // The peer closed first: with ours out, the handshake is complete.
            Handshake::Draining { end: PeerEnd::Close(_), .. } => Handshake::Closed { failing: false },
            Handshake::Draining { end, .. } => Handshake::Draining { end, close_sent: true },
            other => other,
        };
        frame
    }

    /// We fail the connection (a protocol error, a slow consumer): like `close`, then TCP
    /// ends once flushed, without waiting for the peer.
    pub(super) fn fail(&mut self, code: CloseCode, text: &str, reason: DisconnectReason) -> CloseFrame {
        let frame = self.close(code, text, reason);
        if !self.is_done() {
            self.state = Handshake::Closed { failing: true };
        }
        frame
    }

    /// The peer's stream ended with `end`. Its close frame after ours completes the
    /// handshake at once; anything else waits for the target (`end_to_answer`).
    pub(super) fn peer_ended(&mut self, end: PeerEnd) {
        self.state = match (std::mem::replace(&mut self.state, Handshake::Done), end) {
            (Handshake::CloseSent, PeerEnd::Close(_)) => Handshake::Closed { failing: false },
            (Handshake::Open, end) => Handshake::Draining { end, close_sent: false },
            (Handshake::CloseSent, end) => Handshake::Draining { end, close_sent: true },
            (other, _) => other,
        };
    }

    /// The target has handled what came before the peer's end: the end to answer now.
    pub(super) fn end_to_answer(&self) -> Option<PeerEnd> {
        match &self.state {
            Handshake::Draining { end, .. } => Some(end.clone()),
            _ => None,
        }
    }

    /// The transport is closed or failed.
    pub(super) fn finish(&mut self) {
        self.state = Handshake::Done;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed_by(initiator: crate::message::Initiator) -> DisconnectReason {
        DisconnectReason::Closed { initiator, code: CloseCode::NORMAL, reason: String::new() }
    }

    #[test]
    fn we_close_first_then_the_peer_answers() {
        let mut l = Lifecycle::new();
        assert!(l.may_read() && !l.close_sent());
        let f = l.close(CloseCode::NORMAL, "bye", closed_by(crate::message::Initiator::Local));
        assert_eq!(f, CloseFrame::Send(CloseCode::NORMAL, "bye".into()));
        assert!(l.close_sent() && l.may_read(), "the peer may still send what it had in flight");
        assert!(!l.drop_tcp_when_flushed(Role::Server));
        l.peer_ended(PeerEnd::Close(CloseCode::NORMAL));
        assert!(l.handshake_done() && !l.may_read());
        assert!(l.drop_tcp_when_flushed(Role::Server));
        assert!(!l.drop_tcp_when_flushed(Role::Client) && l.reads_for_eof(Role::Client));
        assert_eq!(l.close(CloseCode::GOING_AWAY, "", DisconnectReason::Shutdown), CloseFrame::None);
        assert_eq!(l.take_reason(), closed_by(crate::message::Initiator::Local), "the first reason stays");
    }

    #[test]
    fn the_peer_closes_first_and_waits_for_the_target() {
        let mut l = Lifecycle::new();
        l.set_reason(closed_by(crate::message::Initiator::Peer));
        l.peer_ended(PeerEnd::Close(CloseCode(4000)));
        assert!(l.is_draining() && !l.may_read() && !l.close_sent());
        assert_eq!(l.end_to_answer(), Some(PeerEnd::Close(CloseCode(4000))));
        // Answering completes the handshake.
        let f = l.close(CloseCode(4000), "", DisconnectReason::Shutdown);
        assert_eq!(f, CloseFrame::Send(CloseCode(4000), String::new()));
        assert!(l.handshake_done() && !l.is_draining());
        assert_eq!(l.take_reason(), closed_by(crate::message::Initiator::Peer));
    }

    #[test]
    fn a_violation_waits_for_the_target_then_fails() {
        let mut l = Lifecycle::new();
        l.peer_ended(PeerEnd::Violation(ProtocolError::ReservedOpcode(3)));
        assert!(l.is_draining() && !l.may_read());
        // A shutdown meanwhile sends its close; the violation still fails the connection.
        assert!(matches!(
            l.close(CloseCode::GOING_AWAY, "", DisconnectReason::Shutdown),
            CloseFrame::Send(..)
        ));
        assert!(l.is_draining() && l.close_sent());
        let Some(PeerEnd::Violation(e)) = l.end_to_answer() else { panic!() };
        let code = e.close_code();
        assert_eq!(l.fail(code, "", DisconnectReason::Protocol { code, error: e }), CloseFrame::None);
        assert!(l.drop_tcp_when_flushed(Role::Client), "failing: no wait for the server");
        assert_eq!(l.take_reason(), DisconnectReason::Shutdown);
    }

    #[test]
    fn a_slow_consumer_fails_from_any_open_state() {
        for draining in [false, true] {
            let mut l = Lifecycle::new();
            if draining {
                l.peer_ended(PeerEnd::Close(CloseCode::NORMAL));
            }
            let f = l.fail(CloseCode::POLICY_VIOLATION, "slow", DisconnectReason::SlowConsumer);
            assert!(matches!(f, CloseFrame::Send(CloseCode::POLICY_VIOLATION, _)));
            assert!(l.drop_tcp_when_flushed(Role::Client) && !l.may_read() && !l.is_draining());
        }
    }

    #[test]
    fn done_stays_done() {
        let mut l = Lifecycle::new();
        l.finish();
        assert!(l.is_done() && l.close_sent() && !l.may_read());
        assert_eq!(l.fail(CloseCode::POLICY_VIOLATION, "", DisconnectReason::SlowConsumer), CloseFrame::None);
        l.peer_ended(PeerEnd::Close(CloseCode::NORMAL));
        assert!(l.is_done());
        assert!(matches!(l.take_reason(), DisconnectReason::SlowConsumer));
    }
}
