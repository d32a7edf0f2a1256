//! A pool of targets, and the round-robin choice of each new connection's target among
//! them (Ergo's `ProcessPool`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler};

use crate::connection::{MessageConnect, MessageDisconnect, Target, WsMessage};
use crate::error::ConfigError;

/// One or more targets; each new connection gets the next live one, round-robin, and
/// keeps it for its whole life (Ergo's `ProcessPool`).
///
/// Cheap to clone: clones share the round-robin position.
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
/// let pool = Pool::new((0..3).map(|_| Worker.start())).unwrap();
/// assert_eq!(pool.len(), 3);
/// assert!(!pool.is_empty()); // never, once made
/// // Actors of different types, each as a Target.
/// let mixed = Pool::from_targets([Target::from_addr(Worker.start()), Target::from_addr(Worker.start())]).unwrap();
/// assert!(Pool::new(Vec::<Addr<Worker>>::new()).is_err()); // empty: an error, not a fallback
/// # }
/// ```
#[derive(Clone)]
pub struct Pool {
    targets: Arc<[Target]>,
    next: Arc<AtomicUsize>,
}

impl Pool {
    /// A pool of actors.
    pub fn new<A, I>(addrs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = Addr<A>>,
        A: Actor + Handler<MessageConnect> + Handler<WsMessage> + Handler<MessageDisconnect>,
        A::Context:
            ToEnvelope<A, MessageConnect> + ToEnvelope<A, WsMessage> + ToEnvelope<A, MessageDisconnect>,
    {
        Self::from_targets(addrs.into_iter().map(Target::from_addr))
    }

    /// A pool of targets (possibly of different actor types).
    pub fn from_targets<I: IntoIterator<Item = Target>>(targets: I) -> Result<Self, ConfigError> {
        let targets: Arc<[Target]> = targets.into_iter().collect();
        if targets.is_empty() {
            // Ergo falls back to the parent process; an actix actor has none.
            return Err(ConfigError { field: "targets", reason: "a pool needs at least one target" });
        }
        Ok(Pool { targets, next: Arc::new(AtomicUsize::new(0)) })
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Always false: a pool has at least one target.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The next live target in round-robin order, or `None` if every target is gone.
    ///
    /// ```
    /// # use actix::{Actor, Context};
    /// # use actix_meta_websocket::*;
    /// # struct Worker;
    /// # impl Actor for Worker { type Context = Context<Self>; }
    /// # impl actix::Handler<MessageConnect> for Worker { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
    /// # impl actix::Handler<WsMessage> for Worker { type Result = (); fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {} }
    /// # impl actix::Handler<MessageDisconnect> for Worker { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
    /// # #[actix::main] async fn main() {
    /// let pool = Pool::new([Worker.start(), Worker.start()]).unwrap();
    /// let (a, b) = (pool.pick().unwrap(), pool.pick().unwrap());
    /// assert!(a.is_alive() && b.is_alive()); // one of each, then the first again
    /// # }
    /// ```
    pub fn pick(&self) -> Option<Target> {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let t = &self.targets[(start + i) % n];
            if t.is_alive() {
                if i > 0 {
                    // Skipped dead members: the next pick starts after this one.
                    self.next.fetch_add(i, Ordering::Relaxed);
                }
                return Some(t.clone());
            }
        }
        None
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("targets", &self.targets.len()).finish()
    }
}

/// One actor: `HandlerOptions::new(addr)` and `DialOptions::new(url, addr)`.
impl<A> From<Addr<A>> for Pool
where
    A: Actor + Handler<MessageConnect> + Handler<WsMessage> + Handler<MessageDisconnect>,
    A::Context: ToEnvelope<A, MessageConnect> + ToEnvelope<A, WsMessage> + ToEnvelope<A, MessageDisconnect>,
{
    fn from(addr: Addr<A>) -> Self {
        Pool::from(Target::from_addr(addr))
    }
}

/// A fixed set of actors, never empty: `[]` does not compile.
///
/// ```
/// # use actix::{Actor, Context};
/// # use actix_meta_websocket::*;
/// # struct Worker;
/// # impl Actor for Worker { type Context = Context<Self>; }
/// # impl actix::Handler<MessageConnect> for Worker { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
/// # impl actix::Handler<WsMessage> for Worker { type Result = (); fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {} }
/// # impl actix::Handler<MessageDisconnect> for Worker { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
/// # #[actix::main] async fn main() {
/// let pool = Pool::from([Worker.start(), Worker.start()]);
/// assert_eq!(pool.len(), 2);
/// # }
/// ```
///
/// ```compile_fail
/// # use actix::{Actor, Addr, Context};
/// # use actix_meta_websocket::*;
/// # struct Worker;
/// # impl Actor for Worker { type Context = Context<Self>; }
/// # impl actix::Handler<MessageConnect> for Worker { type Result = (); fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {} }
/// # impl actix::Handler<WsMessage> for Worker { type Result = (); fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {} }
/// # impl actix::Handler<MessageDisconnect> for Worker { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
/// let empty: [Addr<Worker>; 0] = [];
/// let pool = Pool::from(empty);
/// ```
impl<A, const N: usize> From<[Addr<A>; N]> for Pool
where
    A: Actor + Handler<MessageConnect> + Handler<WsMessage> + Handler<MessageDisconnect>,
    A::Context: ToEnvelope<A, MessageConnect> + ToEnvelope<A, WsMessage> + ToEnvelope<A, MessageDisconnect>,
{
    fn from(addrs: [Addr<A>; N]) -> Self {
        const { assert!(N > 0, "a pool needs at least one actor") };
        let targets: Arc<[Target]> = addrs.into_iter().map(Target::from_addr).collect();
        Pool { targets, next: Arc::new(AtomicUsize::new(0)) }
    }
}

impl From<Target> for Pool {
    fn from(t: Target) -> Self {
        Pool { targets: Arc::new([t]), next: Arc::new(AtomicUsize::new(0)) }
    }
}
