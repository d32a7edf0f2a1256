//! The upgrade service: actix-http hands it every request that asks for an upgrade, with
//! the socket (`Framed`: the connection and what was read past the request's head), and
//! its dispatcher ends. The request goes through the worker's `App` like any other; when
//! a `WsHandler` route accepted it, the 101 is written and the socket becomes the
//! connection's. Any other answer is written as it is (see `respond`).

use std::marker::PhantomData;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_codec::{AsyncRead, AsyncWrite, Framed};
use actix_http::body::{BodySize, MessageBody};
use actix_http::h1::{Codec, Message};
use actix_http::{Request, Response, StatusCode};
use actix_service::{Service, ServiceFactory};
use actix_web::{Error, HttpMessage};
use futures_util::future::{ready, LocalBoxFuture, Ready};
use futures_util::SinkExt;

use super::app::AppCell;
use super::{body, respond};
use crate::connection::WsConnection;
use crate::handler::{Pending, SocketClaim};

/// Makes an upgrade service for each worker, over the worker's `App` (whose answers have
/// bodies of type `B`).
pub(super) struct UpgradeFactory<A, B> {
    app: AppCell<A>,
    _body: PhantomData<B>,
}

impl<A, B> UpgradeFactory<A, B> {
    pub(super) fn new(app: AppCell<A>) -> Self {
        UpgradeFactory { app, _body: PhantomData }
    }
}

impl<T, A, R, B> ServiceFactory<(Request, Framed<T, Codec>)> for UpgradeFactory<A, B>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    A: Service<Request, Response = R> + 'static,
    A::Error: Into<Error>,
    R: Into<Response<B>>,
    B: MessageBody + 'static,
{
    type Response = ();
    type Error = Error;
    type Config = ();
    type Service = Upgrader<A, B>;
    type InitError = ();
    type Future = Ready<Result<Upgrader<A, B>, ()>>;

    fn new_service(&self, _: ()) -> Self::Future {
        ready(Ok(Upgrader { app: self.app.clone(), _body: PhantomData }))
    }
}

pub(super) struct Upgrader<A, B> {
    app: AppCell<A>,
    _body: PhantomData<B>,
}

impl<T, A, R, B> Service<(Request, Framed<T, Codec>)> for Upgrader<A, B>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    A: Service<Request, Response = R> + 'static,
    A::Error: Into<Error>,
    R: Into<Response<B>>,
    B: MessageBody + 'static,
{
    type Response = ();
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<(), Error>>;

    fn poll_ready(&self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&self, (req, framed): (Request, Framed<T, Codec>)) -> Self::Future {
        let app = self.app.borrow().clone();
        Box::pin(async move {
            // Made before any request can reach a worker; missing only after a bug.
            let Some(app) = app else {
                return respond::refuse(framed, StatusCode::SERVICE_UNAVAILABLE).await;
            };
            upgrade(app, req, framed).await
        })
    }
}

/// Runs the request through the `App`; takes the socket over if a `WsHandler` route
/// accepted it, answers as the `App` says otherwise.
async fn upgrade<T, A, R, B>(app: Rc<A>, mut req: Request, framed: Framed<T, Codec>) -> Result<(), Error>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    A: Service<Request, Response = R>,
    A::Error: Into<Error>,
    R: Into<Response<B>>,
    B: MessageBody + 'static,
{
    let claim = SocketClaim::default();
    req.extensions_mut().insert(claim.clone());
    // Read only by another crate's upgrade: this crate's routes hand the socket over.
    let body_in = body::request_body(&mut req);
    let res = match app.call(req).await {
        Ok(res) => res.into().map_into_boxed_body(),
        Err(e) => Response::from(e.into()),
    };
    match claim.take() {
        Some(pending) if res.status() == StatusCode::SWITCHING_PROTOCOLS => {
            take_over(pending, res, framed).await
        }
        _ => respond::answer(res, framed, body_in).await,
    }
}

/// Writes the 101 and starts the connection on the socket, with what was read past the
/// request; nothing of the HTTP layer stays.
async fn take_over<T, B>(
    pending: Pending,
    res: Response<B>,
    mut framed: Framed<T, Codec>,
) -> Result<(), Error>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    framed.send(Message::Item((res.drop_body(), BodySize::None))).await?;
    let parts = framed.into_parts();
    WsConnection::take_over(pending.setup, parts.io, parts.read_buf, pending.join);
    Ok(())
}
