//! Actors told of events (presence changes, cluster events): those that have stopped are
//! dropped before each event, so a watcher that went away costs nothing for long.

use actix::{Message, Recipient};

/// The recipients of one kind of event.
pub(crate) struct Watchers<E: Message + Send>
where
    E::Result: Send,
{
    list: Vec<Recipient<E>>,
}

impl<E: Message + Send> Default for Watchers<E>
where
    E::Result: Send,
{
    fn default() -> Self {
        Watchers { list: Vec::new() }
    }
}

impl<E: Message + Send + Clone> Watchers<E>
where
    E::Result: Send,
{
    pub(crate) fn add(&mut self, watcher: Recipient<E>) {
        self.list.push(watcher);
    }

    /// Sends `event` to every watcher still running.
    pub(crate) fn tell(&mut self, event: E) {
        if self.list.is_empty() {
            return;
        }
        self.drop_stopped();
        for w in &self.list {
            w.do_send(event.clone());
        }
    }

    /// Forgets the watchers that have stopped; whether any is left.
    pub(crate) fn drop_stopped(&mut self) -> bool {
        self.list.retain(|w| w.connected());
        !self.list.is_empty()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use actix::prelude::*;
    use tokio::sync::mpsc;

    use super::*;

    #[derive(Clone, Message)]
    #[rtype(result = "()")]
    struct Ping(u32);

    /// Reports what it is told; stops after `stop_on`.
    struct Listener(mpsc::UnboundedSender<u32>, u32);
    impl Actor for Listener {
        type Context = Context<Self>;
    }
    impl Handler<Ping> for Listener {
        type Result = ();
        fn handle(&mut self, p: Ping, ctx: &mut Context<Self>) {
            let _ = self.0.send(p.0);
            if p.0 == self.1 {
                ctx.stop();
            }
        }
    }

    #[actix_rt::test]
    async fn stopped_watchers_are_dropped_and_the_others_told_in_order() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let mut w = Watchers::default();
        assert!(w.is_empty());
        w.add(Listener(tx, 1).start().recipient());
        let stays = Listener(tx2, 0).start();
        w.add(stays.clone().recipient());
        w.tell(Ping(1)); // the first listener stops on it
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx2.recv().await, Some(1));
        // Its mailbox closes once its context is done.
        while w.list.iter().all(|r| r.connected()) {
            tokio::task::yield_now().await;
        }
        w.tell(Ping(2));
        assert_eq!(w.list.len(), 1);
        assert_eq!(rx2.recv().await, Some(2));
        drop(stays);
        assert!(w.drop_stopped(), "still running: its address is not the only handle");
    }
}
