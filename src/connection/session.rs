//! The connection's decisions, made without I/O: what an incoming frame, a close, the
//! periodic check or a timer calls for. Each event returns an [`Action`] for the actor to
//! carry out; the closing handshake (`lifecycle`) and the peer's liveness (`liveness`)
//! are its state. Knows nothing of actix, sockets or the target's mailbox: what it needs
//! of them (messages in flight to the target, when the connection started) comes as
//! arguments.

use std::time::Instant;

use bytes::Bytes;

use super::lifecycle::{CloseFrame, Lifecycle, PeerEnd};
use super::liveness::{Due, Liveness};
use crate::error::WriteError;
use crate::message::{DisconnectReason, Initiator, MessageKind};
use crate::protocol::{CloseCode, Incoming, ProtocolError};
use crate::settings::ConnectionSettings;

/// A timer the session asks for; each runs the connection's `close_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// Our close frame is out: the peer has this long to end TCP (RFC 6455 7.1.1 lets
    /// the client close when the server does not).
    Close,
    /// The peer's end waits this long at most for the target to handle what came before.
    Answer,
}

/// What the actor must do.
#[derive(Debug, PartialEq)]
pub(super) enum Action {
    Nothing,
    /// Hand a data message to the target.
    Deliver(MessageKind, Bytes),
    /// Write a pong with this payload.
    Pong(Bytes),
    /// Write a ping.
    Ping,
    /// Write this close frame (a bare one for `NO_STATUS`) and start [`Timer::Close`];
    /// from now on writes are refused with `refused`.
    SendClose {
        code: CloseCode,
        text: String,
        refused: WriteError,
    },
    /// Start this timer.
    Arm(Timer),
    /// The connection is over: stop.
    Stop,
}

/// What the periodic check found.
#[derive(Debug, PartialEq)]
pub(super) struct Checked {
    /// Nothing is under way: the connection gives back what a burst left it.
    pub(super) quiet: bool,
    pub(super) action: Action,
}

/// The closing handshake and the peer's liveness, and the rules that move them.
#[derive(Debug)]
pub(super) struct Session {
    handshake: Lifecycle,
    liveness: Liveness,
}

impl Session {
    pub(super) fn new(now: Instant) -> Self {
        Session { handshake: Lifecycle::new(), liveness: Liveness::new(now) }
    }

    /// Where the closing handshake stands: the questions the I/O loop asks.
    #[inline]
    pub(super) fn handshake(&self) -> &Lifecycle {
        &self.handshake
    }

    /// The peer, or the target on its behalf, showed signs of life.
    #[inline]
    pub(super) fn heard(&mut self, now: Instant) {
        self.liveness.heard(now);
    }

    /// A frame decoded from the peer; `in_flight`: messages handed to the target and not
    /// yet handled. Every decoded data message goes to the target, whatever ends the
    /// connection afterwards.
    #[inline]
    pub(super) fn on_frame(&mut self, frame: Incoming, in_flight: u64) -> Action {
        match frame {
            Incoming::Text(body) => Action::Deliver(MessageKind::Text, body),
            Incoming::Binary(body) => Action::Deliver(MessageKind::Binary, body),
            // RFC 6455 5.5.2: a ping is answered, unless our close frame is out.
            Incoming::Ping(body) if !self.handshake.close_sent() => Action::Pong(body),
            Incoming::Ping(_) | Incoming::Pong(_) => Action::Nothing,
            Incoming::Close(frame) => {
                let (code, text) =
                    frame.map_or((CloseCode::NO_STATUS, String::new()), |f| (f.code, f.reason));
                self.handshake.set_reason(DisconnectReason::Closed {
                    initiator: Initiator::Peer,
                    code,
                    reason: text,
                });
                self.peer_ended(PeerEnd::Close(code), in_flight)
            }
        }
    }

    /// The peer broke the protocol: the connection fails with the error's code, once the
    /// target has handled what came before.
    pub(super) fn violation(&mut self, error: ProtocolError, in_flight: u64) -> Action {
        self.peer_ended(PeerEnd::Violation(error), in_flight)
    }

    /// The peer's stream ended. Unless that completes our closing handshake, the answer
    /// waits until the target has handled every message handed to it, so that what it
    /// writes in answer goes out first; a target slower than `close_timeout` is not
    /// waited for. Meanwhile nothing more is read.
    fn peer_ended(&mut self, end: PeerEnd, in_flight: u64) -> Action {
        self.handshake.peer_ended(end);
        if self.handshake.is_draining() && in_flight > 0 {
            Action::Arm(Timer::Answer)
        } else {
            // Answered on the I/O loop's next step: nothing to wait for, no timer to pay for.
            Action::Nothing
        }
    }

    /// The target has handled everything before the peer's end, and its replies are taken
    /// in: the answer to that end, or `None` when there is none to give.
    pub(super) fn answer_peer_end(&mut self) -> Option<Action> {
        let end = self.handshake.end_to_answer()?;
        Some(self.answer(end))
    }

    fn answer(&mut self, end: PeerEnd) -> Action {
        match end {
            // Echo the peer's code (RFC 6455 5.5.1); a bare close is echoed bare. The
            // reason given when its close arrived, with its text, stays.
            PeerEnd::Close(code) => {
                let reason =
                    DisconnectReason::Closed { initiator: Initiator::Peer, code, reason: String::new() };
                self.close(code, "", reason)
            }
            PeerEnd::Violation(error) => {
                let code = error.close_code();
                let text = error.to_string();
                self.fail(code, &text, DisconnectReason::Protocol { code, error })
            }
        }
    }

    /// Starts the closing handshake from this side (or answers the peer's).
    pub(super) fn close(&mut self, code: CloseCode, text: &str, reason: DisconnectReason) -> Action {
        let frame = self.handshake.close(code, text, reason);
        self.sending(frame)
    }

    /// Fails the connection: a close frame, then TCP ends once it is flushed.
    pub(super) fn fail(&mut self, code: CloseCode, text: &str, reason: DisconnectReason) -> Action {
        let frame = self.handshake.fail(code, text, reason);
        self.sending(frame)
    }

    /// The peer takes nothing while bytes wait past the write timeout, or the queue is
    /// over its bound: waiting for its close would only hold memory.
    pub(super) fn slow_consumer(&mut self) -> Action {
        self.fail(CloseCode::POLICY_VIOLATION, "slow consumer", DisconnectReason::SlowConsumer)
    }

    /// The target is gone: nobody would handle what the peer sends.
    pub(super) fn target_gone(&mut self) -> Action {
        self.close(CloseCode::INTERNAL_ERROR, "target gone", DisconnectReason::TargetGone)
    }

    /// The server shuts down.
    pub(super) fn shutdown(&mut self) -> Action {
        self.close(CloseCode::GOING_AWAY, "server shutting down", DisconnectReason::Shutdown)
    }

    fn sending(&self, frame: CloseFrame) -> Action {
        let CloseFrame::Send(code, text) = frame else { return Action::Nothing };
        let refused = match self.handshake.reason() {
            Some(DisconnectReason::SlowConsumer) => WriteError::SlowConsumer,
            _ => WriteError::Closed,
        };
        Action::SendClose { code, text, refused }
    }

    /// A timer the session asked for ran out: what to do, or `None` when it found
    /// nothing left to do. `Some(Action::Nothing)` still moved the handshake on (the
    /// answer to a violation after our own close is out), which the I/O loop must see.
    pub(super) fn on_timer(&mut self, timer: Timer) -> Option<Action> {
        match timer {
            Timer::Close if !self.handshake.is_done() => {
                self.handshake.set_reason(DisconnectReason::CloseTimeout);
                self.handshake.finish();
                Some(Action::Stop)
            }
            Timer::Close => None,
            // The target is still busy: the peer is answered without waiting longer.
            Timer::Answer => self.answer_peer_end(),
        }
    }

    /// The periodic check at `now`. `connected`: the target has handled `MessageConnect`;
    /// `in_flight`: messages it has not handled yet; `started`: when the connection did.
    pub(super) fn check(
        &mut self,
        now: Instant,
        connected: bool,
        in_flight: u64,
        started: Instant,
        config: &ConnectionSettings,
    ) -> Checked {
        let busy = Checked { quiet: false, action: Action::Nothing };
        if self.handshake.close_sent() {
            return busy;
        }
        if !connected {
            // A target that has not handled `MessageConnect` within the idle timeout will
            // not: the connection, which cannot read meanwhile, closes with 1011.
            let late =
                config.idle_timeout.is_some_and(|limit| now.saturating_duration_since(started) >= limit);
            let action = if late {
                let text = "target did not answer";
                self.close(CloseCode::INTERNAL_ERROR, text, DisconnectReason::TargetTimeout)
            } else {
                Action::Nothing
            };
            return Checked { quiet: false, action };
        }
        if in_flight > 0 {
            return busy; // The target is busy: the peer waits on it, not idle.
        }
        let action = match self.liveness.check(now, config) {
            Due::Nothing => Action::Nothing,
            Due::Ping => Action::Ping,
            Due::IdleTimeout => {
                self.close(CloseCode::GOING_AWAY, "idle timeout", DisconnectReason::IdleTimeout)
            }
        };
        Checked { quiet: true, action }
    }

    /// TCP failed under the connection.
    pub(super) fn lost(&mut self, e: &std::io::Error) {
        self.handshake.lost(e);
    }

    /// The peer ended TCP: the expected end once both close frames are out, a loss before.
    pub(super) fn eof(&mut self) {
        if !self.handshake.handshake_done() {
            self.handshake.lost(&std::io::ErrorKind::UnexpectedEof.into());
        }
    }

    /// The transport is closed or failed.
    pub(super) fn finish(&mut self) {
        self.handshake.finish();
    }

    /// The reason for `MessageDisconnect`.
    pub(super) fn take_reason(&mut self) -> DisconnectReason {
        self.handshake.take_reason()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::{CloseFrame as WireClose, Role};

    fn close_from_peer(code: u16, reason: &str) -> Incoming {
        Incoming::Close(Some(WireClose { code: CloseCode(code), reason: reason.into() }))
    }

    fn send_close(code: u16, text: &str) -> Action {
        Action::SendClose { code: CloseCode(code), text: text.into(), refused: WriteError::Closed }
    }

    #[test]
    fn data_goes_to_the_target_and_a_ping_is_answered_until_our_close_is_out() {
        let mut s = Session::new(Instant::now());
        let body = Bytes::from_static(b"hi");
        assert_eq!(
            s.on_frame(Incoming::Text(body.clone()), 0),
            Action::Deliver(MessageKind::Text, body.clone())
        );
        assert_eq!(
            s.on_frame(Incoming::Binary(body.clone()), 0),
            Action::Deliver(MessageKind::Binary, body.clone())
        );
        assert_eq!(s.on_frame(Incoming::Ping(body.clone()), 0), Action::Pong(body.clone()));
        assert_eq!(s.on_frame(Incoming::Pong(body.clone()), 0), Action::Nothing);
        assert_eq!(s.close(CloseCode::NORMAL, "bye", DisconnectReason::Shutdown), send_close(1000, "bye"));
        assert_eq!(s.on_frame(Incoming::Ping(body.clone()), 0), Action::Nothing, "no pong after our close");
        // Data the peer had in flight still reaches the target.
        assert_eq!(s.on_frame(Incoming::Text(body.clone()), 0), Action::Deliver(MessageKind::Text, body));
    }

    #[test]
    fn a_peer_close_is_echoed_at_once_when_the_target_has_nothing_in_flight() {
        let mut s = Session::new(Instant::now());
        assert_eq!(s.on_frame(close_from_peer(4001, "done"), 0), Action::Nothing);
        assert!(s.handshake().is_draining() && !s.handshake().may_read());
        assert_eq!(s.answer_peer_end(), Some(send_close(4001, "")), "the code echoed, without text");
        assert!(s.handshake().handshake_done());
        assert!(s.handshake().drop_tcp_when_flushed(Role::Server));
        assert_eq!(s.answer_peer_end(), None, "answered once");
        let reason = DisconnectReason::Closed {
            initiator: Initiator::Peer,
            code: CloseCode(4001),
            reason: "done".into(),
        };
        assert_eq!(s.take_reason(), reason, "the peer's text stays in the reason");
    }

    #[test]
    fn a_peer_close_waits_for_a_busy_target_but_not_past_the_close_timeout() {
        let mut s = Session::new(Instant::now());
        assert_eq!(s.on_frame(Incoming::Close(None), 3), Action::Arm(Timer::Answer));
        // The target is still busy when the timer runs out: the peer is answered anyway,
        // with a bare close for a bare close.
        assert_eq!(
            s.on_timer(Timer::Answer),
            Some(Action::SendClose {
                code: CloseCode::NO_STATUS,
                text: String::new(),
                refused: WriteError::Closed
            })
        );
        assert!(s.handshake().handshake_done());
        // Answered meanwhile: the timer finds nothing left to do.
        let mut s = Session::new(Instant::now());
        assert_eq!(s.on_frame(close_from_peer(1000, ""), 1), Action::Arm(Timer::Answer));
        assert_eq!(s.answer_peer_end(), Some(send_close(1000, "")));
        assert_eq!(s.on_timer(Timer::Answer), None);
    }

    #[test]
    fn our_close_completes_on_the_peers_answer_or_stops_at_the_close_timeout() {
        let mut s = Session::new(Instant::now());
        let ours = DisconnectReason::Closed {
            initiator: Initiator::Local,
            code: CloseCode::NORMAL,
            reason: "bye".into(),
        };
        assert_eq!(s.close(CloseCode::NORMAL, "bye", ours.clone()), send_close(1000, "bye"));
        assert!(s.handshake().may_read(), "the peer may still send what it had in flight");
        assert_eq!(s.close(CloseCode::GOING_AWAY, "again", DisconnectReason::Shutdown), Action::Nothing);
        // Its close after ours completes the handshake with no answer owed.
        assert_eq!(s.on_frame(close_from_peer(1000, ""), 5), Action::Nothing);
        assert!(s.handshake().handshake_done() && s.answer_peer_end().is_none());
        assert_eq!(s.take_reason(), ours, "the first reason stays");

        let mut s = Session::new(Instant::now());
        assert_eq!(s.target_gone(), send_close(1011, "target gone"));
        assert_eq!(s.on_timer(Timer::Close), Some(Action::Stop), "the peer never answered");
        assert!(s.handshake().is_done());
        assert_eq!(s.take_reason(), DisconnectReason::TargetGone);
        let mut s = Session::new(Instant::now());
        s.finish();
        assert_eq!(s.on_timer(Timer::Close), None, "already over");
    }

    #[test]
    fn a_violation_fails_the_connection_with_its_code_once_the_target_is_done() {
        let mut s = Session::new(Instant::now());
        assert_eq!(s.violation(ProtocolError::InvalidUtf8, 2), Action::Arm(Timer::Answer));
        assert!(!s.handshake().may_read(), "nothing more is read");
        let Some(Action::SendClose { code, refused, .. }) = s.answer_peer_end() else { panic!("a close") };
        assert_eq!((code, refused), (CloseCode(1007), WriteError::Closed));
        assert!(s.handshake().drop_tcp_when_flushed(Role::Client), "failing: no wait for the peer");
        assert!(matches!(s.take_reason(), DisconnectReason::Protocol { code: CloseCode(1007), .. }));
    }

    #[test]
    fn a_violation_after_our_close_is_answered_by_the_timer_without_a_second_close_frame() {
        let mut s = Session::new(Instant::now());
        assert_eq!(s.violation(ProtocolError::InvalidUtf8, 1), Action::Arm(Timer::Answer));
        assert!(matches!(s.shutdown(), Action::SendClose { .. }));
        assert!(!s.handshake().drop_tcp_when_flushed(Role::Server), "still waiting for the target");
        // Nothing more to write, but the handshake moves on: TCP ends once flushed.
        assert_eq!(s.on_timer(Timer::Answer), Some(Action::Nothing));
        assert!(s.handshake().drop_tcp_when_flushed(Role::Server));
        assert_eq!(s.take_reason(), DisconnectReason::Shutdown);
    }

    #[test]
    fn a_slow_consumer_is_failed_and_its_writers_are_told_so() {
        let mut s = Session::new(Instant::now());
        let Action::SendClose { code, refused, .. } = s.slow_consumer() else { panic!("a close") };
        assert_eq!((code, refused), (CloseCode::POLICY_VIOLATION, WriteError::SlowConsumer));
        assert!(s.handshake().drop_tcp_when_flushed(Role::Server) && !s.handshake().may_read());
    }

    #[test]
    fn the_check_pings_a_quiet_peer_then_times_it_out_and_leaves_a_busy_one_alone() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let config = crate::connection::liveness::config(30, 90);
        let mut s = Session::new(start);
        let quiet = |action| Checked { quiet: true, action };
        assert_eq!(s.check(at(10), true, 0, start, &config), quiet(Action::Nothing));
        assert_eq!(s.check(at(30), true, 0, start, &config), quiet(Action::Ping));
        // A target with work in hand keeps the connection from counting as idle.
        assert_eq!(
            s.check(at(95), true, 1, start, &config),
            Checked { quiet: false, action: Action::Nothing }
        );
        s.heard(at(95));
        assert_eq!(s.check(at(100), true, 0, start, &config), quiet(Action::Nothing));
        assert_eq!(s.check(at(185), true, 0, start, &config), quiet(send_close(1001, "idle timeout")));
        assert_eq!(
            s.check(at(300), true, 0, start, &config),
            Checked { quiet: false, action: Action::Nothing }
        );
        assert_eq!(s.take_reason(), DisconnectReason::IdleTimeout);
    }

    #[test]
    fn a_target_that_never_takes_message_connect_closes_the_connection_at_the_idle_timeout() {
        let start = Instant::now();
        let config = ConnectionSettings { idle_timeout: Some(Duration::from_secs(60)), ..Default::default() };
        let mut s = Session::new(start);
        let check =
            |s: &mut Session, secs| s.check(start + Duration::from_secs(secs), false, 0, start, &config);
        assert_eq!(check(&mut s, 59), Checked { quiet: false, action: Action::Nothing });
        let closed = Checked { quiet: false, action: send_close(1011, "target did not answer") };
        assert_eq!(check(&mut s, 60), closed);
        assert_eq!(s.take_reason(), DisconnectReason::TargetTimeout);
    }

    #[test]
    fn an_eof_is_a_loss_unless_both_close_frames_are_out() {
        let mut s = Session::new(Instant::now());
        s.eof();
        assert!(matches!(s.take_reason(), DisconnectReason::ConnectionLost(_)));
        let mut s = Session::new(Instant::now());
        s.close(CloseCode::NORMAL, "", DisconnectReason::Shutdown);
        s.on_frame(close_from_peer(1000, ""), 0);
        s.eof();
        assert_eq!(s.take_reason(), DisconnectReason::Shutdown);
    }
}
