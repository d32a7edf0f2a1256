//! One instance of the user's `App` per worker thread, for both ways a request can come:
//! through actix-http's dispatcher (every plain request) and through the upgrade service
//! (every request that asks for an upgrade). Made once, as `HttpServer` makes it, so the
//! state an `App` builds for its worker is the same for both.

use std::cell::RefCell;
use std::rc::Rc;

use actix_http::Request;
use actix_service::{Service, ServiceFactory};
use actix_web::dev::AppConfig;
use actix_web::Error;
use futures_util::future::{LocalBoxFuture, MapErr};
use futures_util::TryFutureExt;

/// Where the upgrade service finds its worker's `App`, once the worker made it.
pub(super) type AppCell<S> = Rc<RefCell<Option<Rc<S>>>>;

/// The `App` factory with the configuration `HttpServer` would give it.
pub(super) struct AppFactory<F: ServiceFactory<Request>> {
    factory: Rc<F>,
    config: AppConfig,
    made: AppCell<F::Service>,
}

impl<F: ServiceFactory<Request>> AppFactory<F> {
    pub(super) fn new(factory: F, config: AppConfig) -> Self {
        AppFactory { factory: Rc::new(factory), config, made: Rc::default() }
    }

    /// What the upgrade service reads the `App` from.
    pub(super) fn cell(&self) -> AppCell<F::Service> {
        self.made.clone()
    }
}

impl<F> ServiceFactory<Request> for AppFactory<F>
where
    F: ServiceFactory<Request, Config = AppConfig> + 'static,
    F::Error: Into<Error>,
    F::Service: 'static,
{
    type Response = F::Response;
    type Error = Error;
    type Config = ();
    type Service = SharedApp<F::Service>;
    type InitError = F::InitError;
    type Future = LocalBoxFuture<'static, Result<Self::Service, F::InitError>>;

    fn new_service(&self, _: ()) -> Self::Future {
        let (made, making) = (self.made.clone(), self.factory.new_service(self.config.clone()));
        Box::pin(async move {
            let app = Rc::new(making.await?);
            *made.borrow_mut() = Some(app.clone());
            Ok(SharedApp(app))
        })
    }
}

/// The worker's `App`, shared with its upgrade service.
pub(super) struct SharedApp<S>(Rc<S>);

impl<S> Service<Request> for SharedApp<S>
where
    S: Service<Request>,
    S::Error: Into<Error>,
{
    type Response = S::Response;
    type Error = Error;
    type Future = MapErr<S::Future, fn(S::Error) -> Error>;

    fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Error>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&self, req: Request) -> Self::Future {
        self.0.call(req).map_err(Into::into as fn(S::Error) -> Error)
    }
}
