//! A chat room: an HTML page at `/`, the WebSocket at `/ws`, and one room actor that
//! broadcasts every message to every connection. The broadcast is a
//! [`PreparedMessage`](actix_meta_websocket::PreparedMessage): its frame is encoded once
//! for all uncompressed connections. Compression is on, since browsers offer it.
//!
//! ```sh
//! cargo run --example chat            # open http://127.0.0.1:8081/ in two tabs
//! cargo run --example chat -- --addr 127.0.0.1:9000
//! ```

use std::collections::BTreeMap;

use actix::prelude::*;
use actix_meta_websocket::{
    ConnectionId, HandlerOptions, MessageConnect, MessageDisconnect, Outgoing, PreparedMessage, Target,
    WsHandler, WsMessage,
};
use actix_web::{web, App, HttpResponse, HttpServer};

const PAGE: &str = include_str!("chat.html");

/// Every connection's target: knows who is in the room and relays what they say.
#[derive(Default)]
struct Room {
    members: BTreeMap<ConnectionId, String>,
}

impl Room {
    fn broadcast(&self, text: String) {
        let prepared = PreparedMessage::text(text);
        for id in self.members.keys() {
            id.send_prepared(&prepared);
        }
    }
}

impl Actor for Room {
    type Context = Context<Self>;
}

impl actix::Handler<MessageConnect> for Room {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        let name = format!("guest{}", m.id.seq());
        println!("{name} connected (compression {})", m.compressed);
        m.id.send(Outgoing::text(format!("you are {name}")));
        self.members.insert(m.id, name.clone());
        self.broadcast(format!("{name} joined"));
    }
}

impl actix::Handler<WsMessage> for Room {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        let Some(text) = m.as_text() else { return };
        if let Some(name) = self.members.get(&m.id) {
            self.broadcast(format!("{name}: {text}"));
        }
    }
}

impl actix::Handler<MessageDisconnect> for Room {
    type Result = ();
    fn handle(&mut self, m: MessageDisconnect, _: &mut Context<Self>) {
        if let Some(name) = self.members.remove(&m.id) {
            self.broadcast(format!("{name} left"));
        }
    }
}

/// A chat in the browser: open the printed address in two tabs.
#[derive(clap::Parser)]
#[command(version)]
struct Cli {
    /// Where to listen (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8081")]
    addr: std::net::SocketAddr,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = <Cli as clap::Parser>::parse().addr;
    let room = Room::default().start();
    let handler = WsHandler::new(HandlerOptions::new(Target::from_addr(room)).compression(true))?;
    let h = handler.clone();
    let server = handler
        .configure_server(HttpServer::new(move || {
            App::new()
                .route(
                    "/",
                    web::get().to(|| async {
                        HttpResponse::Ok().content_type("text/html; charset=utf-8").body(PAGE)
                    }),
                )
                .route("/ws", h.route())
        }))
        .shutdown_signal(handler.shutdown_on(async {
            let _ = tokio::signal::ctrl_c().await;
        }))
        .bind(&addr)?;
    // Printed for scripts that start the example on port 0.
    println!("chat on http://{}/", server.addrs()[0]);
    server.run().await
}
