//! Sends to another node's connection whose sender waits for the answer: numbered,
//! answered once, failed together when Redis goes, timed out when no answer comes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::cluster::error::ClusterSendError;
use crate::cluster::link::SendReply;

/// The request number of a send nobody waits for.
pub(super) const NO_ANSWER: u64 = 0;

#[derive(Default)]
pub(super) struct PendingSends {
    last: u64,
    waiting: HashMap<u64, (Instant, SendReply)>,
}

impl PendingSends {
    /// The number to send with a message: a fresh one when `reply` waits for the
    /// answer, [`NO_ANSWER`] otherwise.
    pub(super) fn start(&mut self, reply: Option<SendReply>, now: Instant) -> u64 {
        let Some(reply) = reply else { return NO_ANSWER };
        self.last += 1;
        self.waiting.insert(self.last, (now, reply));
        self.last
    }

    /// Answers `req`, once; an unknown or already answered number is ignored (a late
    /// answer after a timeout, or one that is not ours).
    pub(super) fn answer(&mut self, req: u64, result: Result<(), ClusterSendError>) {
        if let Some((_, reply)) = self.waiting.remove(&req) {
            let _ = reply.send(result);
        }
    }

    /// Fails every waiting send with `error`.
    pub(super) fn fail_all(&mut self, error: &ClusterSendError) {
        for (_, (_, reply)) in self.waiting.drain() {
            let _ = reply.send(Err(error.clone()));
        }
    }

    /// Answers `Timeout` to the sends waiting longer than `timeout`.
    pub(super) fn expire(&mut self, now: Instant, timeout: Duration) {
        let late: Vec<u64> =
            self.waiting.iter().filter(|(_, (at, _))| now - *at > timeout).map(|(req, _)| *req).collect();
        for req in late {
            self.answer(req, Err(ClusterSendError::Timeout));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    fn waiter() -> (Option<SendReply>, oneshot::Receiver<Result<(), ClusterSendError>>) {
        let (tx, rx) = oneshot::channel();
        (Some(tx), rx)
    }

    #[test]
    fn numbers_are_fresh_and_each_send_is_answered_once() {
        let now = Instant::now();
        let mut p = PendingSends::default();
        assert_eq!(p.start(None, now), NO_ANSWER);
        let (a, mut a_rx) = waiter();
        let (b, mut b_rx) = waiter();
        let (ra, rb) = (p.start(a, now), p.start(b, now));
        assert!(ra != NO_ANSWER && rb != NO_ANSWER && ra != rb);
        p.answer(rb, Err(ClusterSendError::Full));
        p.answer(rb, Ok(())); // twice: ignored
        p.answer(999, Ok(())); // not ours: ignored
        assert_eq!(b_rx.try_recv(), Ok(Err(ClusterSendError::Full)));
        assert!(a_rx.try_recv().is_err(), "still waiting");
        assert_eq!(p.len(), 1);
        p.answer(ra, Ok(()));
        assert_eq!(a_rx.try_recv(), Ok(Ok(())));
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn a_lost_link_fails_every_waiting_send_and_old_ones_time_out() {
        let t0 = Instant::now();
        let mut p = PendingSends::default();
        let (old, mut old_rx) = waiter();
        let (new, mut new_rx) = waiter();
        p.start(old, t0);
        let fresh = p.start(new, t0 + Duration::from_secs(2));
        p.expire(t0 + Duration::from_millis(2500), Duration::from_secs(2));
        assert_eq!(old_rx.try_recv(), Ok(Err(ClusterSendError::Timeout)));
        assert!(new_rx.try_recv().is_err(), "within its time");
        p.fail_all(&ClusterSendError::BrokerDown);
        assert_eq!(new_rx.try_recv(), Ok(Err(ClusterSendError::BrokerDown)));
        p.answer(fresh, Ok(())); // after the failure: nothing left to answer
        assert_eq!(p.len(), 0);
    }
}
