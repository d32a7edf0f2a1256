//! The byte pipes under a connection: an actix-web upgrade (request payload in, streaming
//! response body out) or an upgraded awc socket. Both look the same to the actor.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWrite};

use super::host::Host;

/// What the connection actor reads from and writes to.
pub(crate) trait Transport {
    /// Appends received bytes to `buf`; `Ok(0)` is the end of the stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut, hint: usize)
        -> Poll<io::Result<usize>>;
    /// Takes bytes from the front of `chunk` (advancing it); returns how many.
    fn poll_write(&mut self, cx: &mut Context<'_>, chunk: &mut Bytes) -> Poll<io::Result<usize>>;
    /// Ends the outgoing direction once everything written has gone out.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Bytes taken by `poll_write` but not yet handed to the socket.
    fn buffered(&self) -> usize;
    /// The connection waits for `buffered` to shrink: wake `cx` when it does.
    fn want_room(&mut self, cx: &mut Context<'_>);
}

/// The transport a connection holds: the server's in place, so its calls (several per
/// message) are direct and inlined; a client's socket type varies, so it is boxed.
pub(crate) enum Pipe {
    Server(ServerTransport),
    Io(Box<dyn Transport>),
}

impl Transport for Pipe {
    #[inline]
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        hint: usize,
    ) -> Poll<io::Result<usize>> {
        match self {
            Pipe::Server(t) => t.poll_read(cx, buf, hint),
            Pipe::Io(t) => t.poll_read(cx, buf, hint),
        }
    }

    #[inline]
    fn poll_write(&mut self, cx: &mut Context<'_>, chunk: &mut Bytes) -> Poll<io::Result<usize>> {
        match self {
            Pipe::Server(t) => t.poll_write(cx, chunk),
            Pipe::Io(t) => t.poll_write(cx, chunk),
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Pipe::Server(t) => t.poll_close(cx),
            Pipe::Io(t) => t.poll_close(cx),
        }
    }

    #[inline]
    fn buffered(&self) -> usize {
        match self {
            Pipe::Server(t) => t.buffered(),
            Pipe::Io(t) => t.buffered(),
        }
    }

    fn want_room(&mut self, cx: &mut Context<'_>) {
        match self {
            Pipe::Server(t) => t.want_room(cx),
            Pipe::Io(t) => t.want_room(cx),
        }
    }
}

/// Beyond this many bytes waiting in the response body, the server transport refuses
/// more: the HTTP dispatcher is not draining it (the peer does not read).
const OUTBOX_HIGH: usize = 64 * 1024;

#[derive(Default)]
struct Outbox {
    chunks: VecDeque<Bytes>,
    len: usize,
    closed: bool,
    body_gone: bool,
    body_waker: Option<Waker>,
    writer_waker: Option<Waker>,
}

/// The server side: actix-web's request payload in, a streaming 101 response body out.
pub(crate) struct ServerTransport {
    payload: actix_web::dev::Payload,
    out: Rc<RefCell<Outbox>>,
}

/// The response body of an upgraded request: whatever the connection writes. It also
/// polls the connection's actor when that is hosted in the HTTP task.
pub(crate) struct BodyStream {
    out: Rc<RefCell<Outbox>>,
    host: Option<Rc<Host>>,
}

impl ServerTransport {
    pub(crate) fn new(payload: actix_web::dev::Payload) -> (Self, BodyStream) {
        let out = Rc::new(RefCell::new(Outbox::default()));
        (ServerTransport { payload, out: out.clone() }, BodyStream { out, host: None })
    }
}

fn store_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl Transport for ServerTransport {
    #[inline]
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        _hint: usize,
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.payload).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                // The chunk shares the dispatcher's read buffer, so unmasking in place needs
                // a copy anyway; copying into our buffer reuses its allocation.
                buf.extend_from_slice(&chunk);
                Poll::Ready(Ok(chunk.len()))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Err(io::Error::other(e.to_string()))),
            Poll::Ready(None) => Poll::Ready(Ok(0)),
            Poll::Pending => Poll::Pending,
        }
    }

    #[inline]
    fn poll_write(&mut self, cx: &mut Context<'_>, chunk: &mut Bytes) -> Poll<io::Result<usize>> {
        let mut out = self.out.borrow_mut();
        if out.body_gone {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if out.len >= OUTBOX_HIGH {
            store_waker(&mut out.writer_waker, cx);
            return Poll::Pending;
        }
        let chunk = std::mem::take(chunk);
        let n = chunk.len();
        out.len += n;
        out.chunks.push_back(chunk);
        if let Some(w) = out.body_waker.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut out = self.out.borrow_mut();
        out.closed = true;
        if let Some(w) = out.body_waker.take() {
            w.wake();
        }
        if out.chunks.is_empty() || out.body_gone {
            Poll::Ready(Ok(()))
        } else {
            store_waker(&mut out.writer_waker, cx);
            Poll::Pending
        }
    }

    #[inline]
    fn buffered(&self) -> usize {
        self.out.borrow().len
    }

    fn want_room(&mut self, cx: &mut Context<'_>) {
        let mut out = self.out.borrow_mut();
        if out.len > 0 {
            store_waker(&mut out.writer_waker, cx);
        }
    }
}

impl Drop for ServerTransport {
    fn drop(&mut self) {
        let mut out = self.out.borrow_mut();
        out.closed = true;
        if let Some(w) = out.body_waker.take() {
            w.wake();
        }
    }
}

impl BodyStream {
    /// Makes this body poll the connection's actor.
    pub(crate) fn host(&mut self, host: Rc<Host>) {
        self.host = Some(host);
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(host) = &self.host {
            host.enter_body(cx);
            // Writes made while we poll need no wake-up: we look at the outbox next.
            self.out.borrow_mut().body_waker = None;
            host.drive();
        }
        let mut out = self.out.borrow_mut();
        if let Some(chunk) = out.chunks.pop_front() {
            out.len -= chunk.len();
            if let Some(w) = out.writer_waker.take() {
                w.wake();
            }
            return Poll::Ready(Some(Ok(chunk)));
        }
        if out.closed {
            if let Some(w) = out.writer_waker.take() {
                w.wake();
            }
            return Poll::Ready(None);
        }
        store_waker(&mut out.body_waker, cx);
        if let Some(host) = &self.host {
            host.body_pending();
        }
        Poll::Pending
    }
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        let mut out = self.out.borrow_mut();
        out.body_gone = true;
        if let Some(w) = out.writer_waker.take() {
            w.wake();
        }
        if let Some(host) = &self.host {
            host.body_gone();
        }
    }
}

/// The client side (and any plain socket): an `AsyncRead + AsyncWrite`.
pub(crate) struct IoTransport<T> {
    io: T,
}

impl<T> IoTransport<T> {
    pub(crate) fn new(io: T) -> Self {
        IoTransport { io }
    }
}

const READ_MIN: usize = 8 * 1024;
const READ_MAX: usize = 256 * 1024;

impl<T: AsyncRead + AsyncWrite + Unpin> Transport for IoTransport<T> {
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        hint: usize,
    ) -> Poll<io::Result<usize>> {
        let want = hint.clamp(READ_MIN, READ_MAX);
        if buf.capacity() - buf.len() < want / 2 {
            buf.reserve(want);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, chunk: &mut Bytes) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, chunk) {
            Poll::Ready(Ok(0)) if !chunk.is_empty() => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                bytes::Buf::advance(chunk, n);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn buffered(&self) -> usize {
        0
    }

    fn want_room(&mut self, _cx: &mut Context<'_>) {}
}
