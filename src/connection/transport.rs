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

use super::body_driven::BodyDriven;

/// A read's outcome: bytes appended, `Ok(0)` at the end of the stream.
pub(crate) type ReadPoll = Poll<io::Result<usize>>;

/// What the connection actor reads from and writes to.
pub(crate) trait Transport {
    /// Appends received bytes to `buf`; `Ok(0)` is the end of the stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut, hint: usize) -> ReadPoll;
    /// Takes bytes from the front of `chunk` (advancing it); returns how many.
    fn poll_write(&mut self, cx: &mut Context<'_>, chunk: &mut Bytes) -> Poll<io::Result<usize>>;
    /// Pushes out what `poll_write` took but the layer under it still holds (a TLS stream's
    /// records); `Pending` wakes `cx` when it can go on.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Ends the outgoing direction once everything written has gone out.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Something written still waits for `poll_flush`.
    fn needs_flush(&self) -> bool;
    /// Bytes taken by `poll_write` but not yet handed to the socket.
    fn buffered(&self) -> usize;
    /// The connection waits for `buffered` to shrink: wake `cx` when it does.
    fn want_room(&mut self, cx: &mut Context<'_>);
}

/// The transport a connection holds: one in actix-web's HTTP task in place, so its calls
/// (several per message) are direct and inlined; a socket of its own (dialled, or taken
/// over from the HTTP layer) is of a type that varies, so it is boxed.
pub(crate) enum RoleTransport {
    InHttpTask(ServerTransport),
    Socket(Box<dyn Transport>),
}

impl Transport for RoleTransport {
    #[inline]
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut, hint: usize) -> ReadPoll {
        match self {
            RoleTransport::InHttpTask(t) => t.poll_read(cx, buf, hint),
            RoleTransport::Socket(t) => t.poll_read(cx, buf, hint),
        }
    }

    #[inline]
    fn poll_write(&mut self, cx: &mut Context<'_>, chunk: &mut Bytes) -> Poll<io::Result<usize>> {
        match self {
            RoleTransport::InHttpTask(t) => t.poll_write(cx, chunk),
            RoleTransport::Socket(t) => t.poll_write(cx, chunk),
        }
    }

    #[inline]
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            RoleTransport::InHttpTask(t) => t.poll_flush(cx),
            RoleTransport::Socket(t) => t.poll_flush(cx),
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            RoleTransport::InHttpTask(t) => t.poll_close(cx),
            RoleTransport::Socket(t) => t.poll_close(cx),
        }
    }

    #[inline]
    fn needs_flush(&self) -> bool {
        match self {
            RoleTransport::InHttpTask(t) => t.needs_flush(),
            RoleTransport::Socket(t) => t.needs_flush(),
        }
    }

    #[inline]
    fn buffered(&self) -> usize {
        match self {
            RoleTransport::InHttpTask(t) => t.buffered(),
            RoleTransport::Socket(t) => t.buffered(),
        }
    }

    fn want_room(&mut self, cx: &mut Context<'_>) {
        match self {
            RoleTransport::InHttpTask(t) => t.want_room(cx),
            RoleTransport::Socket(t) => t.want_room(cx),
        }
    }
}

/// Beyond this many bytes waiting in the response body, the server transport refuses
/// more: the HTTP dispatcher is not draining it (the peer does not read).
const BODY_QUEUE_HIGH: usize = 64 * 1024;

/// The chunks the connection wrote and the response body has not yet yielded.
#[derive(Default)]
struct BodyQueue {
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
    queue: Rc<RefCell<BodyQueue>>,
}

/// The response body of an upgraded request: whatever the connection writes. It also
/// polls the connection's actor, which runs in the HTTP task.
pub(crate) struct BodyStream {
    queue: Rc<RefCell<BodyQueue>>,
    actor: Option<Rc<BodyDriven>>,
}

impl ServerTransport {
    pub(crate) fn new(payload: actix_web::dev::Payload) -> (Self, BodyStream) {
        let queue = Rc::new(RefCell::new(BodyQueue::default()));
        (ServerTransport { payload, queue: queue.clone() }, BodyStream { queue, actor: None })
    }
}

/// The I/O error behind a failed read of the request payload, with its kind kept so that
/// the disconnect reason can say what happened.
fn payload_error(e: actix_web::error::PayloadError) -> io::Error {
    use actix_web::error::PayloadError;
    match e {
        PayloadError::Incomplete(Some(e)) | PayloadError::Io(e) => e,
        PayloadError::Incomplete(None) => io::ErrorKind::UnexpectedEof.into(),
        other => io::Error::other(other.to_string()),
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
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut, _hint: usize) -> ReadPoll {
        match Pin::new(&mut self.payload).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                // The chunk shares the dispatcher's read buffer, so unmasking in place needs
                // a copy anyway; copying into our buffer reuses its allocation.
                buf.extend_from_slice(&chunk);
                Poll::Ready(Ok(chunk.len()))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Err(payload_error(e))),
            Poll::Ready(None) => Poll::Ready(Ok(0)),
            Poll::Pending => Poll::Pending,
        }
    }

    #[inline]
    fn poll_write(&mut self, cx: &mut Context<'_>, chunk: &mut Bytes) -> Poll<io::Result<usize>> {
        let mut queue = self.queue.borrow_mut();
        if queue.body_gone {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if queue.len >= BODY_QUEUE_HIGH {
            store_waker(&mut queue.writer_waker, cx);
            return Poll::Pending;
        }
        let chunk = std::mem::take(chunk);
        let n = chunk.len();
        queue.len += n;
        queue.chunks.push_back(chunk);
        if let Some(w) = queue.body_waker.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    /// actix-http's dispatcher flushes the socket after every write of its own.
    #[inline]
    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn needs_flush(&self) -> bool {
        false
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut queue = self.queue.borrow_mut();
        queue.closed = true;
        if let Some(w) = queue.body_waker.take() {
            w.wake();
        }
        if queue.chunks.is_empty() || queue.body_gone {
            Poll::Ready(Ok(()))
        } else {
            store_waker(&mut queue.writer_waker, cx);
            Poll::Pending
        }
    }

    #[inline]
    fn buffered(&self) -> usize {
        self.queue.borrow().len
    }

    fn want_room(&mut self, cx: &mut Context<'_>) {
        let mut queue = self.queue.borrow_mut();
        if queue.len > 0 {
            store_waker(&mut queue.writer_waker, cx);
        }
    }
}

impl Drop for ServerTransport {
    fn drop(&mut self) {
        let mut queue = self.queue.borrow_mut();
        queue.closed = true;
        if let Some(w) = queue.body_waker.take() {
            w.wake();
        }
    }
}

impl BodyStream {
    /// Makes this body poll the connection's actor.
    pub(crate) fn drive_actor(&mut self, actor: Rc<BodyDriven>) {
        self.actor = Some(actor);
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(actor) = &self.actor {
            actor.enter_body(cx);
            // Writes made while we poll need no wake-up: we look at the outbox next.
            self.queue.borrow_mut().body_waker = None;
            actor.drive();
        }
        let mut queue = self.queue.borrow_mut();
        if let Some(chunk) = queue.chunks.pop_front() {
            queue.len -= chunk.len();
            if let Some(w) = queue.writer_waker.take() {
                w.wake();
            }
            return Poll::Ready(Some(Ok(chunk)));
        }
        if queue.closed {
            if let Some(w) = queue.writer_waker.take() {
                w.wake();
            }
            return Poll::Ready(None);
        }
        store_waker(&mut queue.body_waker, cx);
        if let Some(actor) = &self.actor {
            actor.body_pending();
        }
        Poll::Pending
    }
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        let mut queue = self.queue.borrow_mut();
        queue.body_gone = true;
        if let Some(w) = queue.writer_waker.take() {
            w.wake();
        }
        if let Some(actor) = &self.actor {
            actor.body_gone();
        }
    }
}

/// A socket of the connection's own (dialled, or taken over from the HTTP layer): an
/// `AsyncRead + AsyncWrite`, plain or TLS.
pub(crate) struct IoTransport<T> {
    io: T,
    /// Written since the last completed flush. A TLS stream's `poll_write` may keep the
    /// records it could not send on a full socket; they leave only on a later write or a
    /// flush, so the end of a burst would wait for the next message.
    unflushed: bool,
}

impl<T> IoTransport<T> {
    pub(crate) fn new(io: T) -> Self {
        IoTransport { io, unflushed: false }
    }
}

const READ_MIN: usize = 8 * 1024;
const READ_MAX: usize = 256 * 1024;
/// A thread's scratch space for reads into an empty read buffer.
const SCRATCH: usize = 64 * 1024;

thread_local! {
    /// Where a read lands when the connection has no partial frame and no room: an idle
    /// connection then holds no read buffer of its own, and a small message gets an
    /// allocation of its own size (handed on to the target without a copy).
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

impl<T: AsyncRead + AsyncWrite + Unpin> IoTransport<T> {
    fn poll_read_via_scratch(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> ReadPoll {
        SCRATCH_BUF.with(|scratch| {
            // Reads are never nested on a thread; a nested one would only come from a bug
            // and reads straight into `buf` instead of panicking.
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                buf.reserve(READ_MIN);
                return tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, buf);
            };
            let mut read = tokio::io::ReadBuf::new(&mut scratch[..]);
            match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    buf.extend_from_slice(read.filled());
                    Poll::Ready(Ok(read.filled().len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Transport for IoTransport<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut, hint: usize) -> ReadPoll {
        let want = hint.clamp(READ_MIN, READ_MAX);
        let room = buf.capacity() - buf.len();
        if room < want / 2 {
            if buf.is_empty() && hint <= SCRATCH {
                return self.poll_read_via_scratch(cx, buf);
            }
            buf.reserve(want);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, chunk: &mut Bytes) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, chunk) {
            Poll::Ready(Ok(0)) if !chunk.is_empty() => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                bytes::Buf::advance(chunk, n);
                self.unflushed = true;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.unflushed {
            return Poll::Ready(Ok(()));
        }
        let flushed = Pin::new(&mut self.io).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            self.unflushed = false;
        }
        flushed
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn needs_flush(&self) -> bool {
        self.unflushed
    }

    fn buffered(&self) -> usize {
        0
    }

    fn want_room(&mut self, _cx: &mut Context<'_>) {}
}
