//! A client that dials again when its connection ends or a dial fails: exponential
//! backoff with jitter, a limit, a fresh `MessageConnect` for every connection, and each
//! failure reported.

use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use tokio::sync::{watch, Notify};

use super::{connect, DialOptions};
use crate::connection::ConnectionId;
use crate::error::ConnectError;

/// How long a reconnecting client waits before each dial: `initial`, then `multiplier`
/// times more after every failure up to `max`, less a random share of up to `jitter` (so
/// that many clients cut off at once do not all come back at once).
///
/// ```
/// use std::time::Duration;
/// use actix_meta_websocket::client::Backoff;
/// let b = Backoff { max_attempts: Some(10), ..Backoff::default() };
/// assert_eq!(b.initial, Duration::from_millis(100));
/// assert!(b.delay(3) <= Duration::from_millis(400) && b.delay(3) >= Duration::from_millis(200));
/// assert!(b.delay(30) <= b.max);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// The wait before the first retry, and before redialling after a connection ended
    /// (default 100 ms).
    pub initial: Duration,
    /// The longest wait (default 30 s).
    pub max: Duration,
    /// Growth per failed attempt (default 2).
    pub multiplier: f64,
    /// Share of each wait taken off at random, 0..=1 (default 0.5).
    pub jitter: f64,
    /// Failed dials in a row before giving up; `None` never gives up (default).
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The wait before the dial that follows `failures` failed ones in a row.
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = self.multiplier.max(1.0).powi(failures.saturating_sub(1).min(64) as i32);
        let full = self.initial.mul_f64(exp.min(1e9)).min(self.max);
        let cut = self.jitter.clamp(0.0, 1.0) * rand::random::<f64>();
        full.mul_f64(1.0 - cut)
    }
}

/// A failed dial of a reconnecting client (see [`reconnect`]).
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct DialFailed {
    /// Why.
    pub error: Arc<ConnectError>,
    /// The server dialled, without credentials (see [`DialOptions::failover`]).
    pub url: String,
    /// Failed dials in a row, this one included.
    pub attempt: u32,
    /// When the next dial comes; `None` when the client gives up (the error is not worth
    /// retrying, or `max_attempts` is reached).
    pub retry_in: Option<Duration>,
}

/// A client that keeps a connection up (see [`reconnect`]). Dropping it does not stop
/// it; [`stop`](Self::stop) does.
///
/// ```no_run
/// # use actix_meta_websocket::client::Reconnecting;
/// # async fn demo(client: Reconnecting) {
/// if let Some(id) = client.connected().await { // the first connection, or None if it gave up
///     id.send("hello");
/// }
/// if let Some(now) = client.current() {
///     now.send("the connection up now");
/// }
/// client.stop(); // no more dials; the connection up closes with 1000
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Reconnecting {
    current: watch::Receiver<Option<ConnectionId>>,
    stop: Arc<Notify>,
}

impl Reconnecting {
    /// The connection up now, if any.
    pub fn current(&self) -> Option<ConnectionId> {
        self.current.borrow().clone()
    }

    /// Waits for a connection to be up and returns it; `None` once the client has given
    /// up or been stopped.
    pub async fn connected(&self) -> Option<ConnectionId> {
        let mut rx = self.current.clone();
        loop {
            if let Some(id) = rx.borrow_and_update().clone() {
                return Some(id);
            }
            rx.changed().await.ok()?;
        }
    }

    /// Stops dialling, and closes the current connection with 1000.
    pub fn stop(&self) {
        self.stop.notify_one();
    }
}

/// Dials `options.url` and dials again whenever the connection ends or a dial fails, after
/// the waits of `backoff`; a failed dial moves on to the next of
/// [`options.failover`](DialOptions::failover)'s servers at once, and the wait comes once
/// every server has failed in a row. Every connection is a new one: its target gets a fresh
/// `MessageConnect` and, at its end, its `MessageDisconnect`. Failed dials go to
/// `on_failure`, if given, and to the log; a failure not worth retrying
/// ([`ConnectError::is_retryable`]) or `backoff.max_attempts` failures in a row end the
/// client.
///
/// Must run inside an actix system.
///
/// ```no_run
/// # use actix::{Actor, Context};
/// # use actix_meta_websocket::*;
/// # use actix_meta_websocket::client::{Backoff, DialFailed};
/// # struct Feed;
/// # impl Actor for Feed { type Context = Context<Self>; }
/// # impl actix::Handler<MessageConnect> for Feed { type Result = (); fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) { m.id.send("subscribe prices"); } }
/// # impl actix::Handler<WsMessage> for Feed { type Result = (); fn handle(&mut self, _: WsMessage, _: &mut Context<Self>) {} }
/// # impl actix::Handler<MessageDisconnect> for Feed { type Result = (); fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {} }
/// # impl actix::Handler<DialFailed> for Feed { type Result = (); fn handle(&mut self, f: DialFailed, _: &mut Context<Self>) { eprintln!("{}", f.error); } }
/// # #[actix::main] async fn main() {
/// let feed = Feed.start();
/// // MessageConnect re-subscribes on every new connection.
/// let client = reconnect(
///     DialOptions::new("wss://feed.example.com/ws", feed.clone()),
///     Backoff::default(),
///     Some(feed.recipient()),
/// );
/// let id = client.connected().await; // see Reconnecting
/// # }
/// ```
pub fn reconnect(
    options: DialOptions,
    backoff: Backoff,
    on_failure: Option<Recipient<DialFailed>>,
) -> Reconnecting {
    let (tx, current) = watch::channel(None);
    let stop = Arc::new(Notify::new());
    actix::spawn(run(options, backoff, on_failure, tx, stop.clone()));
    Reconnecting { current, stop }
}

async fn run(
    options: DialOptions,
    backoff: Backoff,
    on_failure: Option<Recipient<DialFailed>>,
    current: watch::Sender<Option<ConnectionId>>,
    stop: Arc<Notify>,
) {
    let servers: Vec<String> = options.servers().map(str::to_owned).collect();
    let mut at = 0usize;
    let mut failures = 0u32;
    loop {
        let dial = DialOptions { url: servers[at].clone(), ..options.clone() };
        match connect(dial).await {
            Ok(id) => {
                failures = 0;
                current.send_replace(Some(id.clone()));
                let stopped = tokio::select! {
                    _ = id.closed() => false,
                    _ = stop.notified() => true,
                };
                current.send_replace(None);
                if stopped {
                    let _ = id.close(1000, "client stopped");
                    return;
                }
                if wait_or_stop(backoff.initial, &stop).await {
                    return;
                }
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let gives_up = !error.is_retryable() || backoff.max_attempts.is_some_and(|m| failures >= m);
                let url = super::redact_str(&servers[at]);
                at = (at + 1) % servers.len();
                // Another server is tried at once; the wait comes once every one has failed.
                let rounds = failures.div_ceil(servers.len() as u32);
                let retry_in = (!gives_up).then(|| match at {
                    0 => backoff.delay(rounds),
                    _ => Duration::ZERO,
                });
                tracing::warn!(%url, %error, attempt = failures, ?retry_in, "dial failed");
                if let Some(r) = &on_failure {
                    r.do_send(DialFailed { error: Arc::new(error), url, attempt: failures, retry_in });
                }
                match retry_in {
                    Some(wait) if !wait_or_stop(wait, &stop).await => {}
                    _ => return,
                }
            }
        }
    }
}

/// Sleeps `wait`; true when stopped meanwhile.
async fn wait_or_stop(wait: Duration, stop: &Notify) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stop.notified() => true,
    }
}
