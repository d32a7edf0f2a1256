//! Answers to upgrade requests that no `WsHandler` route took: written through the HTTP
//! codec as the `App` made them (a 404, a refusal), after which the connection closes; and
//! another crate's upgrade (actix-ws, say), whose 101 is followed by its body one way and
//! the request's body, fed from the socket, the other, until either ends.

use actix_codec::{AsyncRead, AsyncWrite, Framed};
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::error::PayloadError;
use actix_http::h1::{Codec, Message};
use actix_http::{ConnectionType, Response, StatusCode};
use actix_web::Error;
use bytes::BytesMut;
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::body::BodyIn;

/// Writes `res` as the `App` made it. After another crate's 101, its body and the
/// socket are joined until either ends; after anything else, the connection closes.
pub(super) async fn answer<T>(
    res: Response<BoxBody>,
    mut framed: Framed<T, Codec>,
    body_in: BodyIn,
) -> Result<(), Error>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (mut head, body) = res.into_parts();
    if head.status() == StatusCode::SWITCHING_PROTOCOLS {
        framed.send(Message::Item((head, BodySize::None))).await?;
        return pass_through(framed, body, body_in).await;
    }
    // An upgrade request is not followed by another: the connection ends with the answer.
    head.head_mut().set_connection_type(ConnectionType::Close);
    framed.send(Message::Item((head, body.size()))).await?;
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = std::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await {
        let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()))?;
        framed.send(Message::Chunk(Some(chunk))).await?;
    }
    framed.send(Message::Chunk(None)).await?;
    framed.close().await?;
    Ok(())
}

/// A bare answer with `status`, and the connection closes.
pub(super) async fn refuse<T>(framed: Framed<T, Codec>, status: StatusCode) -> Result<(), Error>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    answer(Response::with_body(status, BoxBody::new(())), framed, BodyIn::none()).await
}

/// Another crate's upgraded connection: the socket's bytes into the request's body, the
/// response's body onto the socket.
async fn pass_through<T>(framed: Framed<T, Codec>, body: BoxBody, body_in: BodyIn) -> Result<(), Error>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let parts = framed.into_parts();
    let (mut rd, mut wr) = tokio::io::split(parts.io);
    if !parts.read_buf.is_empty() && body_in.send(Ok(parts.read_buf.freeze())).await.is_err() {
        return Ok(());
    }
    let incoming = async move {
        let mut buf = BytesMut::new();
        loop {
            buf.reserve(8 * 1024);
            match rd.read_buf(&mut buf).await {
                Ok(0) => return,
                Ok(_) => {
                    // Waits while the route has not taken the chunks before: bounded.
                    if body_in.send(Ok(buf.split().freeze())).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = body_in.send(Err(PayloadError::Io(e))).await;
                    return;
                }
            }
        }
    };
    let outgoing = async move {
        let mut body = std::pin::pin!(body);
        while let Some(Ok(chunk)) = std::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    };
    // The route's body ends the connection; the peer's end is passed on to the route,
    // which then ends its body.
    let incoming = std::pin::pin!(incoming);
    let outgoing = std::pin::pin!(outgoing);
    match futures_util::future::select(outgoing, incoming).await {
        futures_util::future::Either::Left(_) => {}
        futures_util::future::Either::Right((_, outgoing)) => outgoing.await,
    }
    Ok(())
}
