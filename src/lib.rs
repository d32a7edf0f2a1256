//! WebSocket connections as first-class actix actors, after the Ergo Framework's
//! WebSocket meta-process.
//!
//! - A [`Handler`] mounted as an actix-web route upgrades each request and starts one
//!   [`WsConnection`] actor for it; [`connect`] dials out with awc and starts the same
//!   kind of actor.
//! - Each connection sends [`MessageConnect`], every [`Message`] and one final
//!   [`MessageDisconnect`] to a target picked round-robin from a [`Pool`].
//! - Whoever holds a connection's [`ConnectionId`] writes to it by sending a [`Message`].
//!
//! Underneath is [`protocol`], a strict sans-IO RFC 6455 codec with permessage-deflate.
//!
//! ```no_run
//! use actix::{Actor, Context};
//! use actix_meta_websocket::{Handler, HandlerOptions, Message, MessageConnect, MessageDisconnect, Pool};
//! use actix_web::{App, HttpServer};
//!
//! struct Echo;
//! impl Actor for Echo { type Context = Context<Self>; }
//! impl actix::Handler<MessageConnect> for Echo {
//!     type Result = ();
//!     fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) { m.id.send(Message::text("hi")); }
//! }
//! impl actix::Handler<Message> for Echo {
//!     type Result = ();
//!     fn handle(&mut self, m: Message, _: &mut Context<Self>) {
//!         if let Some(id) = &m.id { id.send(Message { id: None, ..m }); }
//!     }
//! }
//! impl actix::Handler<MessageDisconnect> for Echo {
//!     type Result = ();
//!     fn handle(&mut self, m: MessageDisconnect, _: &mut Context<Self>) { println!("{} gone: {}", m.id, m.reason); }
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let handler = Handler::new(HandlerOptions::new(Pool::new([Echo.start(), Echo.start()]).unwrap()))?;
//!     HttpServer::new(move || App::new().route("/ws", handler.route()))
//!         .bind("127.0.0.1:8080")?
//!         .run()
//!         .await
//! }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[macro_use]
mod setters;

mod client;
mod config;
mod connection;
mod error;
mod handler;
mod message;
mod pool;
mod prepared;
pub mod protocol;
mod registry;
mod stats;

pub use client::{connect, ConnectionOptions, Proxy};
pub use config::ConnectionConfig;
pub use connection::{GetStats, SendMessage, SendPrepared, WsConnection};
pub use error::{ConfigError, ConnectError, PoolError, SendError, TrySendError};
pub use handler::{record_local_addr, Handler, HandlerOptions, HandshakeError, OriginCheck};
pub use message::{
    ConnectData, ConnectionId, DisconnectReason, Initiator, Message, MessageConnect, MessageDisconnect,
    MessageKind,
};
pub use pool::{Pool, Target};
pub use prepared::PreparedMessage;
pub use stats::Stats;

/// The README's Rust examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
