//! The actor (or three recipients) that receives one connection's messages.

use std::sync::Arc;

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, Recipient};

use super::events::{MessageConnect, MessageDisconnect, WsMessage};

/// One actor that handles a connection's three messages.
///
/// ```
/// # use actix::{Actor, Addr, Context};
/// # use actix_meta_websocket::*;
/// # struct Worker;
/// # impl Actor for Worker { type Context = Context<Self>; }
/// # impl actix::Handler<MessageConnect> for Worker { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
/// # impl actix::Handler<WsMessage> for Worker { type Result = (); fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {} }
/// # impl actix::Handler<MessageDisconnect> for Worker { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
/// # #[actix::main] async fn main() {
/// let target = Target::from_addr(Worker.start());
/// assert!(target.is_alive()); // until the actor stops
/// # }
/// ```
///
/// Cheap to clone: connections share one set of recipients (cloning a `Recipient` would
/// register a new actix sender, three allocations each, for every connection).
#[derive(Clone)]
pub struct Target(pub(crate) Arc<Recipients>);

pub(crate) struct Recipients {
    pub(crate) connect: Recipient<MessageConnect>,
    pub(crate) message: Recipient<WsMessage>,
    pub(crate) disconnect: Recipient<MessageDisconnect>,
    /// All three reach one actor's mailbox, which is FIFO: `MessageConnect` queued
    /// before the first `Message` is handled before it, with no need to await it.
    pub(crate) one_mailbox: bool,
}

impl Target {
    /// A target from an actor's address.
    pub fn from_addr<A>(addr: Addr<A>) -> Self
    where
        A: Actor + Handler<MessageConnect> + Handler<WsMessage> + Handler<MessageDisconnect>,
        A::Context:
            ToEnvelope<A, MessageConnect> + ToEnvelope<A, WsMessage> + ToEnvelope<A, MessageDisconnect>,
    {
        Target(Arc::new(Recipients {
            connect: addr.clone().recipient(),
            message: addr.clone().recipient(),
            disconnect: addr.recipient(),
            one_mailbox: true,
        }))
    }

    /// A target from three recipients (they may be different actors).
    ///
    /// ```
    /// # use actix::{Actor, Context};
    /// # use actix_meta_websocket::*;
    /// # struct Worker;
    /// # impl Actor for Worker { type Context = Context<Self>; }
    /// # impl actix::Handler<MessageConnect> for Worker { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
    /// # impl actix::Handler<WsMessage> for Worker { type Result = (); fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {} }
    /// # impl actix::Handler<MessageDisconnect> for Worker { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
    /// # struct Audit;
    /// # impl Actor for Audit { type Context = Context<Self>; }
    /// # impl actix::Handler<MessageDisconnect> for Audit { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
    /// # #[actix::main] async fn main() {
    /// // Messages go to the worker; disconnects are also recorded by an audit actor.
    /// let worker = Worker.start();
    /// let audit = Audit.start();
    /// let target = Target::from_recipients(worker.clone().recipient(), worker.recipient(), audit.recipient());
    /// assert!(target.is_alive());
    /// # }
    /// ```
    pub fn from_recipients(
        connect: Recipient<MessageConnect>,
        message: Recipient<WsMessage>,
        disconnect: Recipient<MessageDisconnect>,
    ) -> Self {
        Target(Arc::new(Recipients { connect, message, disconnect, one_mailbox: false }))
    }

    /// Whether all three recipients' actors are still running.
    pub fn is_alive(&self) -> bool {
        self.0.connect.connected() && self.0.message.connected() && self.0.disconnect.connected()
    }
}

/// What a connection does with its target: it does not reach into the recipients.
impl Target {
    /// All three recipients reach one actor's FIFO mailbox.
    pub(crate) fn is_one_mailbox(&self) -> bool {
        self.0.one_mailbox
    }

    pub(crate) fn connect_alive(&self) -> bool {
        self.0.connect.connected()
    }

    pub(crate) fn queue_connect(&self, msg: MessageConnect) {
        self.0.connect.do_send(msg);
    }

    pub(crate) fn request_connect(
        &self,
        msg: MessageConnect,
    ) -> actix::dev::RecipientRequest<MessageConnect> {
        self.0.connect.send(msg)
    }

    pub(crate) fn queue_message(&self, msg: WsMessage) {
        self.0.message.do_send(msg);
    }

    pub(crate) fn request_message(&self, msg: WsMessage) -> actix::dev::RecipientRequest<WsMessage> {
        self.0.message.send(msg)
    }

    pub(crate) fn queue_disconnect(&self, msg: MessageDisconnect) {
        self.0.disconnect.do_send(msg);
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("alive", &self.is_alive()).finish()
    }
}

impl<A> From<Addr<A>> for Target
where
    A: Actor + Handler<MessageConnect> + Handler<WsMessage> + Handler<MessageDisconnect>,
    A::Context: ToEnvelope<A, MessageConnect> + ToEnvelope<A, WsMessage> + ToEnvelope<A, MessageDisconnect>,
{
    fn from(addr: Addr<A>) -> Self {
        Target::from_addr(addr)
    }
}
