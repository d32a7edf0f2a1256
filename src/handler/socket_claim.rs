//! An upgrade whose socket the server takes over (`WsServer`): the route answers 101
//! without a body and leaves the connection it would start; the server writes the 101,
//! takes the socket and what was read past the request from the HTTP layer, and starts
//! the connection on it.

use std::cell::RefCell;
use std::rc::Rc;

use crate::connection::{ConnectionId, Setup};
use crate::registry::Registration;

/// Called with the new connection's id before anything else happens.
pub(crate) type Join = Box<dyn FnOnce(&ConnectionId) -> Option<Registration<ConnectionId>>>;

/// A connection to start once its 101 is written.
pub(crate) struct Pending {
    pub(crate) setup: Setup,
    pub(crate) join: Join,
}

/// Put in an upgrade request's extensions by the server; the handler leaves its
/// connection in it instead of starting it in the HTTP task.
#[derive(Clone, Default)]
pub(crate) struct SocketClaim(Rc<RefCell<Option<Pending>>>);

impl SocketClaim {
    pub(super) fn leave(&self, pending: Pending) {
        *self.0.borrow_mut() = Some(pending);
    }

    /// The connection the route left, if it upgraded.
    pub(crate) fn take(&self) -> Option<Pending> {
        self.0.borrow_mut().take()
    }
}
