//! What a server said when it refused an upgrade: the head of its answer's body, read by an
//! awc middleware before awc's WebSocket request drops the answer, so that a client can
//! show "bad or missing token" and not only 401.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use actix_codec::{Framed, FramedParts};
use actix_http::h1::ClientCodec;
use actix_http::{header, ResponseHead, StatusCode};
use actix_service::Service;
use awc::error::SendRequestError;
use awc::{BoxedSocket, ConnectRequest, ConnectResponse};
use futures_util::future::LocalBoxFuture;

use super::dialer::DialState;

/// At most this much of a refusal's body is kept.
pub(crate) const LIMIT: usize = 1024;
/// How long the rest of a refusal's body is waited for, past what came with its head.
const WAIT: Duration = Duration::from_millis(250);

/// The middleware: keeps a refused upgrade's body in the dial's state.
pub(crate) struct KeepRefusal(pub(crate) Rc<RefCell<DialState>>);

impl<S> awc::middleware::Transform<S, ConnectRequest> for KeepRefusal
where
    S: Service<ConnectRequest, Response = ConnectResponse, Error = SendRequestError> + 'static,
{
    type Transform = KeepRefusalService<S>;

    fn new_transform(self, service: S) -> Self::Transform {
        KeepRefusalService { service: Rc::new(service), state: self.0 }
    }
}

pub(crate) struct KeepRefusalService<S> {
    service: Rc<S>,
    state: Rc<RefCell<DialState>>,
}

impl<S> Service<ConnectRequest> for KeepRefusalService<S>
where
    S: Service<ConnectRequest, Response = ConnectResponse, Error = SendRequestError> + 'static,
{
    type Response = ConnectResponse;
    type Error = SendRequestError;
    type Future = LocalBoxFuture<'static, Result<ConnectResponse, SendRequestError>>;

    actix_service::forward_ready!(service);

    fn call(&self, req: ConnectRequest) -> Self::Future {
        let answer = self.service.call(req);
        let state = self.state.clone();
        Box::pin(async move {
            match answer.await? {
                ConnectResponse::Tunnel(head, framed) if head.status != StatusCode::SWITCHING_PROTOCOLS => {
                    let (body, framed) = read_body(&head, framed).await;
                    state.borrow_mut().refusal = Some(body);
                    Ok(ConnectResponse::Tunnel(head, framed))
                }
                other => Ok(other),
            }
        })
    }
}

/// Up to `LIMIT` bytes of the body after `head`, as text.
async fn read_body(
    head: &ResponseHead,
    framed: Framed<BoxedSocket, ClientCodec>,
) -> (String, Framed<BoxedSocket, ClientCodec>) {
    use tokio::io::AsyncReadExt;
    let mut parts: FramedParts<BoxedSocket, ClientCodec> = framed.into_parts();
    let length =
        head.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok());
    let chunked = head
        .headers
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let want = length.unwrap_or(LIMIT).min(LIMIT);
    let mut body = parts.read_buf.to_vec();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut chunk = [0u8; 1024];
    let complete = |body: &[u8]| chunked && dechunk(body).is_some_and(|(_, last)| last);
    while body.len() < want && !complete(&body) {
        match tokio::time::timeout_at(deadline, parts.io.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    // A server that says chunked but writes the body as it is (actix-http does, answering
    // an upgrade request) is taken at its bytes.
    if let Some((data, _)) = dechunk(&body).filter(|_| chunked) {
        body = data;
    }
    body.truncate(want);
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    (text, Framed::from_parts(parts))
}

/// The data of a chunked body as far as it goes, and whether its last chunk was there;
/// `None` when it does not start as a chunked body.
fn dechunk(raw: &[u8]) -> Option<(Vec<u8>, bool)> {
    let first = raw.split(|&b| b == b'\r' || b == b';').next().unwrap_or_default();
    if !first.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = raw;
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else { return Some((out, false)) };
        let size = std::str::from_utf8(&rest[..eol]).ok().and_then(|l| {
            let hex = l.split(';').next()?.trim();
            usize::from_str_radix(hex, 16).ok()
        });
        let Some(size) = size else { return Some((out, false)) };
        if size == 0 {
            return Some((out, true));
        }
        let data = &rest[eol + 2..];
        let take = size.min(data.len());
        out.extend_from_slice(&data[..take]);
        if take < size || data.len() < size + 2 {
            return Some((out, false));
        }
        rest = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn a_chunked_body_is_read_as_far_as_it_came() {
        assert_eq!(dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), Some((b"hello world".to_vec(), true)));
        assert_eq!(dechunk(b"5\r\nhel"), Some((b"hel".to_vec(), false)));
        assert_eq!(dechunk(b"a;ext=1\r\n0123456789\r\n"), Some((b"0123456789".to_vec(), false)));
        assert_eq!(dechunk(b"5\r\nhello\r\nzz\r\n"), Some((b"hello".to_vec(), false)));
        assert_eq!(dechunk(b"go away\r\n"), None, "not chunked after all");
        assert_eq!(dechunk(b"go away, no line end yet"), None);
        assert_eq!(dechunk(b""), Some((Vec::new(), false)));
    }
}
