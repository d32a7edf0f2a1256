//! Handing a connection's incoming messages to its target: `MessageConnect` first, then
//! every decoded message in order with at most a window of them unhandled, and, when the
//! connection ends, `MessageDisconnect` only once everything handed over has reached the
//! target.
//!
//! Knows the target's recipients and actix requests; nothing of sockets, frames or timers.
//!
//! Handing each message over with `Recipient::send` costs a oneshot channel and a boxed
//! future per message. Instead, every message of a batch but the last goes with `do_send`,
//! and the last with `send`, as an *awaited send*: the target's mailbox is FIFO, so when
//! that one is handled, every earlier one is too (a handler that returns a future is
//! answered when the future completes, so the window waits for it). The *window* is how
//! many messages (and bytes) are with the target unhandled; each answer moves it on.
//!
//! The `send` must be queued at once, before any later `do_send`. It goes through the
//! recipient all connections share; when actix's mailbox bound has parked that sender,
//! `send` refuses and hands back a request holding a fresh, unparked clone, which queues
//! the message on its first poll, made in `hand_over_last`.
//!
//! actix skips a message whose requester has gone, so an awaited send must live until it
//! is answered, also after the connection's actor has stopped: `finish` hands the open
//! ones to a task of their own.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use actix::prelude::*;

use crate::connection::{MessageConnect, MessageDisconnect, Target, WsMessage};
use crate::settings::ConnectionSettings;

/// A request in place; its box is kept for the next hand-over (see `TargetWindow::spare`).
type RequestBox = Pin<Box<Option<RecipientRequest<WsMessage>>>>;

/// What the window saw while polling its answers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Answers {
    /// At least one awaited send (or `MessageConnect`) was answered.
    pub(super) any: bool,
    /// The target is gone: a request was refused for good.
    pub(super) target_gone: bool,
}

/// Where `MessageConnect` stands.
enum Connect {
    /// Not sent yet.
    Unsent,
    /// Sent to a target of several actors; reading waits for its answer.
    Awaited(Pin<Box<RecipientRequest<MessageConnect>>>),
    /// With the target: first in its one mailbox, or handled.
    Delivered,
}

/// Counts of messages (and their bytes) handed to the target and handled by it. The
/// message counts wrap; only their difference matters.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    sent: u32,
    sent_bytes: u64,
    handled: u32,
    handled_bytes: u64,
}

/// A message handed over with `send`: when it is answered, the target has handled every
/// message up to `sent` (and `sent_bytes`).
struct AwaitedSend {
    reply: Reply,
    sent: u32,
    sent_bytes: u64,
}

enum Reply {
    Awaited(RequestBox),
    /// Answered on the poll that queued it (a request must not be polled again after).
    Ready(Result<(), MailboxError>),
}

/// The hand-over of one connection's messages to its target.
pub(super) struct TargetWindow {
    target: Target,
    connect: Connect,
    window: Window,
    /// The latest message, not yet handed over: it goes last in its batch, awaited.
    last: Option<WsMessage>,
    /// Hand-overs whose answer is awaited, oldest first.
    awaited: VecDeque<AwaitedSend>,
    /// The box of the last answered send, for the next one: at one send in flight (the
    /// usual case), no allocation per hand-over.
    spare: Option<RequestBox>,
    /// The target refused a message for good; nothing more is handed over.
    gone: bool,
}

/// Polls a request in its box; an answered request is dropped at once, so the box is free
/// for the next hand-over.
fn poll_request(request: &mut RequestBox, task: &mut Context<'_>) -> Poll<Result<(), MailboxError>> {
    let Some(pending) = request.as_mut().as_pin_mut() else {
        return Poll::Ready(Err(MailboxError::Closed)); // Not reached: polled once.
    };
    let answer = pending.poll(task);
    if answer.is_ready() {
        request.set(None);
    }
    answer
}

impl TargetWindow {
    pub(super) fn new(target: Target) -> Self {
        TargetWindow {
            target,
            connect: Connect::Unsent,
            window: Window::default(),
            last: None,
            awaited: VecDeque::new(),
            spare: None,
            gone: false,
        }
    }

    /// Sends `MessageConnect`. Through one mailbox, queueing it first is enough; across
    /// actors, messages wait until the target has handled it. Returns false if the target
    /// is gone.
    pub(super) fn connect(&mut self, msg: MessageConnect, waker: Option<&Waker>) -> bool {
        if self.target.is_one_mailbox() {
            if !self.target.connect_alive() {
                self.gone = true;
                return false;
            }
            self.target.queue_connect(msg);
            self.connect = Connect::Delivered;
            return true;
        }
        let mut request = Box::pin(self.target.request_connect(msg));
        // The first poll queues it; an answer already here means it was refused.
        let noop = Waker::noop();
        let mut task = Context::from_waker(waker.unwrap_or(noop));
        match request.as_mut().poll(&mut task) {
            Poll::Pending => {
                self.connect = Connect::Awaited(request);
                true
            }
            Poll::Ready(Ok(())) => {
                self.connect = Connect::Delivered;
                true
            }
            Poll::Ready(Err(_)) => {
                self.gone = true;
                false
            }
        }
    }

    /// `MessageConnect` is with the target: messages may be handed over.
    pub(super) fn is_connected(&self) -> bool {
        matches!(self.connect, Connect::Delivered)
    }

    /// Messages handed over and not yet handled.
    pub(super) fn in_flight(&self) -> u64 {
        u64::from(self.window.sent.wrapping_sub(self.window.handled))
    }

    /// The window has room for another message.
    pub(super) fn has_room(&self, config: &ConnectionSettings) -> bool {
        self.in_flight() < config.max_in_flight as u64
            && self.window.sent_bytes - self.window.handled_bytes < config.max_in_flight_bytes as u64
    }

    /// Everything handed over has been handled, and nothing is kept back.
    pub(super) fn is_drained(&self) -> bool {
        self.last.is_none() && self.in_flight() == 0
    }

    /// Queues `msg` for the target. It is kept back to go last in its batch, awaited; the one kept before
    /// goes now with `do_send`. Returns whether the window is now full (the caller stops
    /// reading and calls `hand_over_last`).
    pub(super) fn push(&mut self, msg: WsMessage, config: &ConnectionSettings) -> bool {
        if self.gone {
            return false; // Nobody to deliver to: the one documented loss.
        }
        self.window.sent = self.window.sent.wrapping_add(1);
        self.window.sent_bytes += msg.body.len() as u64;
        if let Some(previous) = self.last.replace(msg) {
            self.target.queue_message(previous);
        }
        !self.has_room(config)
    }

    /// Hands the last message over, awaited; called whenever reading pauses, so no message
    /// stays back across polls. The first poll registers `waker` for the oldest awaited
    /// send only: `poll_answers` registers it for the next one when that one is answered.
    /// Returns true when the send was refused at once (the caller must poll again).
    pub(super) fn hand_over_last(&mut self, waker: Option<&Waker>) -> bool {
        let Some(msg) = self.last.take() else { return false };
        let mut request = self.spare.take().unwrap_or_else(|| Box::pin(None));
        request.set(Some(self.target.request_message(msg)));
        let waker = match waker {
            Some(w) if self.awaited.is_empty() => w,
            _ => Waker::noop(),
        };
        let (reply, refused) = match poll_request(&mut request, &mut Context::from_waker(waker)) {
            Poll::Pending => (Reply::Awaited(request), false),
            Poll::Ready(res) => {
                self.spare = Some(request);
                (Reply::Ready(res), true)
            }
        };
        self.awaited.push_back(AwaitedSend {
            reply,
            sent: self.window.sent,
            sent_bytes: self.window.sent_bytes,
        });
        refused
    }

    /// Moves the window on for every answered send, oldest first, and notes an answered
    /// `MessageConnect`.
    pub(super) fn poll_answers(&mut self, task: &mut Context<'_>) -> Answers {
        let mut seen = Answers::default();
        if let Connect::Awaited(request) = &mut self.connect {
            match request.as_mut().poll(task) {
                Poll::Pending => return seen,
                Poll::Ready(res) => {
                    self.connect = Connect::Delivered;
                    seen.any = true;
                    if res.is_err() {
                        self.gone = true;
                        seen.target_gone = true;
                        return seen;
                    }
                }
            }
        }
        while let Some(oldest) = self.awaited.front_mut() {
            let answer = match &mut oldest.reply {
                Reply::Awaited(request) => poll_request(request, task),
                Reply::Ready(res) => Poll::Ready(*res),
            };
            let Poll::Ready(res) = answer else { break };
            let (sent, sent_bytes) = (oldest.sent, oldest.sent_bytes);
            if let Some(AwaitedSend { reply: Reply::Awaited(request), .. }) = self.awaited.pop_front() {
                self.spare = Some(request);
            }
            seen.any = true;
            if res.is_err() {
                // Nobody will answer the rest; the window reopens so that the peer's close
                // is still read.
                self.awaited.clear();
                self.window.handled = self.window.sent;
                self.window.handled_bytes = self.window.sent_bytes;
                self.gone = true;
                seen.target_gone = true;
                break;
            }
            self.window.handled = sent;
            self.window.handled_bytes = sent_bytes;
        }
        seen
    }

    /// Gives back the spare request box (the connection has gone quiet).
    pub(super) fn release_spare(&mut self) {
        self.spare = None;
    }

    /// Ends the hand-over: the last message goes, then `disconnect` goes last, once every
    /// message handed over has reached the target.
    ///
    /// Through one mailbox, `disconnect` is queued behind the messages at once, and the
    /// open awaited live on in a task until answered so actix does not skip them. Across
    /// actors, a task awaits `MessageConnect` and the awaited, then sends `disconnect`.
    pub(super) fn finish(&mut self, disconnect: MessageDisconnect) {
        if let Some(msg) = self.last.take() {
            if !self.gone {
                // `do_send` needs no awaited send: nothing waits on it.
                self.target.queue_message(msg);
            }
        }
        let awaited_connect = match std::mem::replace(&mut self.connect, Connect::Delivered) {
            Connect::Awaited(request) => Some(request),
            Connect::Unsent | Connect::Delivered => None,
        };
        let awaited: Vec<RequestBox> = self
            .awaited
            .drain(..)
            .filter_map(|f| match f.reply {
                Reply::Awaited(request) => Some(request),
                Reply::Ready(_) => None,
            })
            .collect();
        let target = self.target.clone();
        if target.is_one_mailbox() {
            target.queue_disconnect(disconnect);
            if !awaited.is_empty() {
                actix::spawn(await_answers(awaited));
            }
            return;
        }
        if awaited_connect.is_none() && awaited.is_empty() {
            target.queue_disconnect(disconnect);
            return;
        }
        actix::spawn(async move {
            if let Some(request) = awaited_connect {
                let _ = request.await;
            }
            await_answers(awaited).await;
            target.queue_disconnect(disconnect);
        });
    }
}

async fn await_answers(mut awaited: Vec<RequestBox>) {
    for request in &mut awaited {
        let _ = std::future::poll_fn(|task| poll_request(request, task)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::connection::{ConnectionId, WsConnection};
    use crate::message::MessageKind;

    /// A target that counts messages and, on `MessageDisconnect`, reports the count.
    struct Counter {
        messages: Arc<AtomicUsize>,
        done: Option<tokio::sync::oneshot::Sender<usize>>,
        delay: Duration,
    }
    impl Actor for Counter {
        type Context = actix::Context<Self>;
    }
    impl actix::Handler<MessageConnect> for Counter {
        type Result = ();
        fn handle(&mut self, _: MessageConnect, _: &mut Self::Context) {}
    }
    impl actix::Handler<WsMessage> for Counter {
        type Result = ();
        fn handle(&mut self, _: WsMessage, _: &mut Self::Context) {
            std::thread::sleep(self.delay);
            self.messages.fetch_add(1, SeqCst);
        }
    }
    impl actix::Handler<MessageDisconnect> for Counter {
        type Result = ();
        fn handle(&mut self, _: MessageDisconnect, _: &mut Self::Context) {
            if let Some(done) = self.done.take() {
                let _ = done.send(self.messages.load(SeqCst));
            }
        }
    }

    /// An id whose actor never runs: enough to label messages.
    fn some_id() -> ConnectionId {
        use actix::AsyncContext;
        let ctx = actix::Context::<WsConnection>::new();
        ConnectionId::new(1, ctx.address(), 0, None)
    }

    fn counter(delay: Duration) -> (Target, tokio::sync::oneshot::Receiver<usize>) {
        let (done, rx) = tokio::sync::oneshot::channel();
        let arbiter = actix::Arbiter::new();
        let addr = Counter::start_in_arbiter(&arbiter.handle(), move |_| Counter {
            messages: Arc::default(),
            done: Some(done),
            delay,
        });
        (Target::from_addr(addr), rx)
    }

    fn message(id: &ConnectionId) -> WsMessage {
        WsMessage::new(id.clone(), MessageKind::Text, bytes::Bytes::from_static(b"m"))
    }

    #[actix::test]
    async fn finishing_with_awaited_sends_in_flight_loses_no_message() {
        // A slow target on its own thread: every batch's awaited send is unanswered at the end.
        let (target, done) = counter(Duration::from_millis(2));
        let config = ConnectionSettings { max_in_flight: 4, ..Default::default() };
        let mut window = TargetWindow::new(target);
        let id = some_id();
        assert!(window.connect(
            MessageConnect {
                id: id.clone(),
                remote_addr: None,
                local_addr: None,
                uri: String::new(),
                headers: Default::default(),
                protocol: None,
                compressed: false,
            },
            None
        ));
        for n in 1..=10 {
            if window.push(message(&id), &config) || n == 10 {
                window.hand_over_last(None);
            }
        }
        assert!(window.in_flight() > 0);
        window.finish(MessageDisconnect { id, reason: crate::message::DisconnectReason::Shutdown });
        let count = tokio::time::timeout(Duration::from_secs(10), done).await.unwrap().unwrap();
        assert_eq!(count, 10);
    }

    #[actix::test]
    async fn a_full_window_asks_for_an_awaited_send_and_answers_reopen_it() {
        let (target, _done) = counter(Duration::ZERO);
        let config = ConnectionSettings { max_in_flight: 2, ..Default::default() };
        let mut window = TargetWindow::new(target);
        let id = some_id();
        assert!(!window.push(message(&id), &config));
        assert!(window.push(message(&id), &config), "two in flight fill a window of two");
        assert!(!window.is_drained());
        window.hand_over_last(None);
        let answered = std::future::poll_fn(|task| {
            let a = window.poll_answers(task);
            if a.any {
                Poll::Ready(a)
            } else {
                Poll::Pending
            }
        });
        let answers = tokio::time::timeout(Duration::from_secs(10), answered).await.unwrap();
        assert!(!answers.target_gone);
        assert!(window.is_drained());
        assert!(window.has_room(&config));
    }
}
