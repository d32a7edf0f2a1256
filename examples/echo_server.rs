//! The main demo: a WebSocket server whose connections are served by three supervised
//! worker actors, as in the Ergo example.
//!
//! Each worker greets a new connection with `hello from <worker>` and answers every text
//! message `m` with `OK m`. Run it and talk to it with the client example:
//!
//! ```sh
//! cargo run --example echo_server                 # ws://127.0.0.1:8080/ws
//! cargo run --example echo_server -- --addr 127.0.0.1:9000
//! cargo run --example client                       # type lines, see the answers
//! ```
//!
//! Over TLS (`wss://`), with a self-signed certificate for `localhost` and `127.0.0.1`:
//!
//! ```sh
//! cargo run --example self_signed_cert -- target/tls          # target/tls/{cert,key}.pem
//! cargo run --example echo_server -- --tls target/tls/cert.pem target/tls/key.pem
//! cargo run --example client -- --url wss://localhost:8080/ws --ca target/tls/cert.pem
//! ```
//!
//! With `--features metrics`, `--metrics 127.0.0.1:9464` serves Prometheus text at
//! `/metrics`; `--log-json` logs JSON lines, each with its connection's id, role, peer
//! and path.
//!
//! It serves on [`WsServer`]: each accepted WebSocket's socket is taken over from the HTTP
//! layer once the 101 is written.

use actix::prelude::*;
use actix_meta_websocket::{
    HandlerOptions, MessageConnect, MessageDisconnect, Outgoing, Pool, WsHandler, WsMessage, WsServer,
};
use actix_web::App;

#[path = "shared/observe.rs"]
mod observe;
#[path = "shared/tls.rs"]
mod tls;

struct Worker {
    name: String,
}

impl Actor for Worker {
    type Context = Context<Self>;
}

/// Restarted by its supervisor if it ever panics; its connections keep their target.
impl Supervised for Worker {
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::warn!(worker = %self.name, "restarting");
    }
}

impl actix::Handler<MessageConnect> for Worker {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        tracing::info!(worker = %self.name, id = %m.id, peer = ?m.remote_addr, "connected");
        m.id.send(Outgoing::text(format!("hello from {}", self.name)));
    }
}

impl actix::Handler<WsMessage> for Worker {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        let Some(text) = m.as_text() else { return };
        m.id.send(format!("OK {}", text.trim_end_matches(['\r', '\n'])));
    }
}

impl actix::Handler<MessageDisconnect> for Worker {
    type Result = ();
    fn handle(&mut self, m: MessageDisconnect, _: &mut Context<Self>) {
        tracing::info!(worker = %self.name, id = %m.id, reason = %m.reason, "disconnected");
    }
}

/// The echo server: three supervised workers greet each connection and answer every
/// text line with `OK <line>`.
#[derive(clap::Parser)]
#[command(version)]
struct Cli {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// Serve `wss://` with this certificate chain and private key (PEM files).
    #[arg(long, num_args = 2, value_names = ["CERT", "KEY"])]
    tls: Option<Vec<std::path::PathBuf>>,
    #[command(flatten)]
    observe: observe::Flags,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    observe::start(&cli.observe, "info", false)?;
    let workers = (1..=3).map(|i| {
        let name = format!("worker{i}");
        Supervisor::start(move |_| Worker { name })
    });
    let pool = Pool::new(workers).map_err(std::io::Error::other)?;
    // Browsers offer permessage-deflate; accept it.
    let handler = WsHandler::new(HandlerOptions::new(pool).compression(true))?;
    let h = handler.clone();
    // Handshake timeout and each socket's local address come with WsServer by themselves.
    let server = WsServer::new(move || App::new().route("/ws", h.route())).shutdown_signal(
        handler.shutdown_on(async {
            let _ = tokio::signal::ctrl_c().await;
        }),
    );
    let (server, scheme) = match &cli.tls {
        Some(files) => (server.bind_rustls_0_23(cli.addr, tls::server_config(&files[0], &files[1])?)?, "wss"),
        None => (server.bind(cli.addr)?, "ws"),
    };
    // Printed for scripts that start the example on port 0.
    println!("listening on {scheme}://{}/ws", server.addrs()[0]);
    server.run().await
}
