//! WebSocket connections as first-class actix actors, after the Ergo Framework's
//! WebSocket meta-process.
//!
//! - A [`WsHandler`] mounted as an actix-web route upgrades each request and starts one
//!   [`WsConnection`] actor for it; [`connect`] dials out with awc and starts the same
//!   kind of actor.
//! - Each connection sends [`MessageConnect`], every [`WsMessage`] and one final
//!   [`MessageDisconnect`] to a target picked round-robin from a [`Pool`].
//! - Whoever holds a connection's [`ConnectionId`] writes to it by sending an [`Outgoing`]
//!   message (or a `&str`, `String` or bytes).
//! - [`Groups`] gather connections under a name: broadcast to them, encoded once and
//!   handed to each worker thread once, and know who is present.
//! - With the `cluster` feature, nodes that share one Redis form a `Cluster`: a
//!   `GlobalId` reaches a connection from any node, and groups and presence span nodes.
//!
//! Underneath is [`protocol`], a strict sans-IO RFC 6455 codec with permessage-deflate.
//!
//! **The [`guide`]** walks through it all, chapter by chapter: [getting
//! started](guide::ch01_getting_started), [serving](guide::ch02_serving),
//! [connections](guide::ch03_connections), [groups](guide::ch04_groups),
//! [history](guide::ch05_history), [the cluster](guide::ch06_cluster),
//! [operating](guide::ch07_operating), [the protocol layer](guide::ch08_protocol) and
//! [performance](guide::ch09_performance).
//! The names do not clash with actix's: `use actix::prelude::*;` and
//! `use actix_meta_websocket::*;` work together.
//!
//! | Ergo (`meta/websocket`) | here |
//! |---|---|
//! | `CreateHandler`, WebSocket Handler | [`WsHandler`], mounted with [`WsHandler::route`] |
//! | `HandlerOptions` | [`HandlerOptions`] (per-connection knobs: [`ConnectionSettings`]) |
//! | `CreateConnection` + `SpawnMeta`, `ConnectionOptions` | [`connect`] with [`DialOptions`] ([`reconnect`] to keep it up) |
//! | WebSocket Connection meta-process | [`WsConnection`], one actor per connection |
//! | `MessageConnect` | [`MessageConnect`] |
//! | `Message` (incoming) | [`WsMessage`], with the connection's id |
//! | `Message` (outgoing) | [`Outgoing`] |
//! | `MessageDisconnect` | [`MessageDisconnect`], with a [`DisconnectReason`] |
//! | `gen.Alias` of the meta-process | [`ConnectionId`] |
//! | the alias across the cluster's nodes | `GlobalId` with `Cluster::send` (feature `cluster`) |
//! | `Send` / `SendAlias` to the alias | [`ConnectionId::send`], [`ConnectionId::send_wait`], [`ConnectionId::try_send`] |
//! | `ProcessPool` | [`Pool`] of [`Target`]s |
//! | `HandleInspect` | [`ConnectionId::stats`] |
//!
//! ```no_run
//! use actix::prelude::*;
//! use actix_meta_websocket::*;
//! use actix_web::App;
//!
//! struct Echo;
//! impl Actor for Echo { type Context = Context<Self>; }
//! impl Handler<MessageConnect> for Echo {
//!     type Result = ();
//!     fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) { m.id.send("hi"); }
//! }
//! impl Handler<WsMessage> for Echo {
//!     type Result = ();
//!     fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
//!         let (id, same) = m.into_parts();
//!         id.send(same);
//!     }
//! }
//! impl Handler<MessageDisconnect> for Echo {
//!     type Result = ();
//!     fn handle(&mut self, m: MessageDisconnect, _: &mut Context<Self>) { println!("{} gone: {}", m.id, m.reason); }
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let handler = WsHandler::new(HandlerOptions::new(Pool::from([Echo.start(), Echo.start()])))?;
//!     let h = handler.clone();
//!     // Your actix-web `App`, unchanged; each accepted WebSocket's socket is then the
//!     // connection's own (`HttpServer` with `handler.configure_server` works too).
//!     WsServer::new(move || App::new().route("/ws", h.route()))
//!         .shutdown_signal(handler.shutdown_on(async { let _ = tokio::signal::ctrl_c().await; }))
//!         .bind("127.0.0.1:8080")?
//!         .run()
//!         .await
//! }
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_op_in_unsafe_fn)]

#[macro_use]
mod setters;

pub mod client;
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub mod cluster;
mod connection;
mod delivery;
mod error;
pub mod groups;
pub mod guide;
mod handler;
mod message;
mod pool;
mod prepared;
pub mod protocol;
mod redact;
mod registry;
mod server;
mod settings;
mod stats;
pub mod telemetry;
mod watchers;

pub use client::{connect, reconnect, DialOptions};
#[cfg(feature = "cluster")]
pub use cluster::{Cluster, ClusterOptions};
pub use connection::{ConnectionId, MessageConnect, MessageDisconnect, Target, WsConnection, WsMessage};
pub use error::{ConfigError, ConnectError, ParseError, TrySendError, WriteError};
pub use groups::Groups;
pub use handler::{record_local_addr, HandlerOptions, HandshakeError, OriginCheck, Upgrade, WsHandler};
pub use message::{DataTypeError, DisconnectReason, Initiator, MessageKind, Outgoing};
pub use pool::Pool;
pub use prepared::PreparedMessage;
pub use server::WsServer;
pub use settings::ConnectionSettings;
pub use stats::{Buffers, Stats, Traffic};
/// URLs for [`DialOptions`] and [`client::Proxy`], re-exported so dialling needs no `url` dependency.
pub use url::Url;

/// The README's Rust examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
