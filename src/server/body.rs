//! The body of an upgrade request, for another crate's route: actix-http gives an upgrade
//! request none, since the socket is the upgrade service's to hand over. Every upgrade
//! request gets one (the route that reads it is known only once it has run), so it costs
//! one shared cell and no more until a chunk is fed; both ends live on the worker's thread.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use actix_http::error::PayloadError;
use actix_http::{Payload, Request};
use bytes::Bytes;
use futures_core::Stream;

/// Chunks fed and not yet read; the feeder waits past this many.
const BOUND: usize = 16;

type Chunk = Result<Bytes, PayloadError>;

#[derive(Default)]
struct Shared {
    chunks: VecDeque<Chunk>,
    /// The feeder is gone: after the last chunk, the body ends.
    fed: bool,
    /// The route dropped the body: nothing more is wanted.
    dropped: bool,
    reader: Option<Waker>,
    feeder: Option<Waker>,
}

/// Where the socket's bytes go once another crate's route has upgraded the request.
pub(super) struct BodyIn(Rc<RefCell<Shared>>);

/// Gives `req` a body that the returned `BodyIn` feeds.
pub(super) fn request_body(req: &mut Request) -> BodyIn {
    let shared = Rc::new(RefCell::new(Shared::default()));
    *req.payload() = Payload::Stream { payload: Box::pin(BodyOut(shared.clone())) };
    BodyIn(shared)
}

/// The route dropped the body.
#[derive(Debug)]
pub(super) struct Dropped;

impl BodyIn {
    /// A body that ends at once (for answers made without the `App`).
    pub(super) fn none() -> Self {
        BodyIn(Rc::new(RefCell::new(Shared { dropped: true, ..Shared::default() })))
    }

    /// Feeds `chunk`, waiting while `BOUND` chunks are unread.
    pub(super) async fn send(&self, chunk: Chunk) -> Result<(), Dropped> {
        let mut chunk = Some(chunk);
        std::future::poll_fn(|cx| {
            let mut shared = self.0.borrow_mut();
            if shared.dropped {
                return Poll::Ready(Err(Dropped));
            }
            if shared.chunks.len() >= BOUND {
                shared.feeder = Some(cx.waker().clone());
                return Poll::Pending;
            }
            shared.chunks.extend(chunk.take());
            if let Some(reader) = shared.reader.take() {
                reader.wake();
            }
            Poll::Ready(Ok(()))
        })
        .await
    }
}

impl Drop for BodyIn {
    fn drop(&mut self) {
        let mut shared = self.0.borrow_mut();
        shared.fed = true;
        if let Some(reader) = shared.reader.take() {
            reader.wake();
        }
    }
}

struct BodyOut(Rc<RefCell<Shared>>);

impl Stream for BodyOut {
    type Item = Chunk;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        let mut shared = self.0.borrow_mut();
        if let Some(chunk) = shared.chunks.pop_front() {
            if let Some(feeder) = shared.feeder.take() {
                feeder.wake();
            }
            return Poll::Ready(Some(chunk));
        }
        if shared.fed {
            return Poll::Ready(None);
        }
        shared.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for BodyOut {
    fn drop(&mut self) {
        let mut shared = self.0.borrow_mut();
        shared.dropped = true;
        shared.chunks.clear();
        if let Some(feeder) = shared.feeder.take() {
            feeder.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn pair() -> (BodyIn, BodyOut) {
        let shared = Rc::new(RefCell::new(Shared::default()));
        (BodyIn(shared.clone()), BodyOut(shared))
    }

    #[actix_rt::test]
    async fn chunks_arrive_in_order_and_the_body_ends_when_the_feeder_goes() {
        let (tx, mut rx) = pair();
        tx.send(Ok(Bytes::from_static(b"one"))).await.unwrap();
        tx.send(Ok(Bytes::from_static(b"two"))).await.unwrap();
        drop(tx);
        assert_eq!(rx.next().await.unwrap().unwrap(), "one");
        assert_eq!(rx.next().await.unwrap().unwrap(), "two");
        assert!(rx.next().await.is_none());
    }

    #[actix_rt::test]
    async fn the_feeder_waits_at_the_bound_and_goes_on_when_the_reader_takes() {
        let (tx, mut rx) = pair();
        for i in 0..BOUND {
            tx.send(Ok(Bytes::from(i.to_string()))).await.unwrap();
        }
        let mut blocked = Box::pin(tx.send(Ok(Bytes::from_static(b"last"))));
        assert!(futures_util::poll!(blocked.as_mut()).is_pending());
        assert_eq!(rx.next().await.unwrap().unwrap(), "0");
        assert!(blocked.await.is_ok());
        assert_eq!(rx.0.borrow().chunks.len(), BOUND);
    }

    #[actix_rt::test]
    async fn a_dropped_reader_releases_a_waiting_feeder() {
        let (tx, rx) = pair();
        for _ in 0..BOUND {
            tx.send(Ok(Bytes::from_static(b"x"))).await.unwrap();
        }
        let mut blocked = Box::pin(tx.send(Ok(Bytes::from_static(b"y"))));
        assert!(futures_util::poll!(blocked.as_mut()).is_pending());
        drop(rx);
        assert!(blocked.await.is_err());
        assert!(BodyIn::none().send(Ok(Bytes::new())).await.is_err());
    }
}
