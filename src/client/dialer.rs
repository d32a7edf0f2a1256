//! The TCP step of a dial, plugged into awc: direct or through a proxy tunnel, recording
//! the socket's addresses and our own typed error for the caller.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use actix_http::Uri;
use actix_service::Service;
use actix_tls::connect::{ConnectError as TcpConnectError, ConnectInfo, Connection};
use futures_util::future::LocalBoxFuture;
use tokio::net::TcpStream;

use super::proxy;
use crate::error::ConnectError;

/// What the dial learned, read back after awc finishes.
#[derive(Default)]
pub(crate) struct DialState {
    pub(crate) local: Option<SocketAddr>,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) error: Option<ConnectError>,
    /// The head of the body of an answer that was not 101.
    pub(crate) refusal: Option<String>,
}

#[derive(Clone)]
pub(crate) struct Dialer {
    pub(crate) proxy: Option<url::Url>,
    pub(crate) state: Rc<RefCell<DialState>>,
}

impl Service<ConnectInfo<Uri>> for Dialer {
    type Response = Connection<Uri, TcpStream>;
    type Error = TcpConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let host = super::bare_host(req.hostname()).to_owned();
        let port = req.port();
        let uri = req.request().clone();
        let proxy = self.proxy.clone();
        let state = self.state.clone();
        Box::pin(async move {
            let stream = match &proxy {
                Some(p) => proxy::tunnel(p, &host, port).await,
                None => TcpStream::connect((host.as_str(), port))
                    .await
                    .map_err(|source| ConnectError::Connect { addr: format!("{host}:{port}"), source }),
            };
            match stream {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let mut st = state.borrow_mut();
                    st.local = s.local_addr().ok();
                    st.remote = s.peer_addr().ok();
                    Ok(Connection::new(uri, s))
                }
                Err(e) => {
                    let io = std::io::Error::other(e.to_string());
                    state.borrow_mut().error = Some(e);
                    Err(TcpConnectError::Io(io))
                }
            }
        })
    }
}
