//! A chat with rooms on [`Groups`]: an HTML page at `/`, the WebSocket at `/ws`. Everyone
//! starts in `lobby`; `/join <room>` moves to another room. Each room hears who joins and
//! leaves, with its member list, from the room's presence events, and keeps its recent
//! history: a page shows a room's latest messages when it enters, and one that lost its
//! connection reconnects and shows what it missed, nothing twice. Compression is on, since
//! browsers offer it.
//!
//! ```sh
//! cargo run --example chat            # open http://127.0.0.1:8081/ in two tabs
//! cargo run --example chat -- --addr 127.0.0.1:9000
//! cargo run --example chat -- --tls cert.pem key.pem   # https:// and wss://
//! cargo run --example chat --features metrics -- --metrics 127.0.0.1:9464
//! ```
//!
//! `/status` is a live status page: connections, messages per second (with the crate's
//! `metrics` feature), rooms and their member counts. `--metrics ADDR` serves Prometheus
//! text at `http://ADDR/metrics`; `--log-json` logs JSON lines with each connection's span.
//!
//! (`cargo run --example self_signed_cert` writes a `cert.pem` and `key.pem` to try TLS with;
//! a browser asks you to accept that certificate first.)

use std::sync::Arc;

use actix::prelude::*;
use actix_meta_websocket::groups::{PresenceEvent, Since};
use actix_meta_websocket::*;
use actix_web::{web, App, HttpResponse};

const PAGE: &str = include_str!("chat.html");

#[path = "shared/observe.rs"]
mod observe;
#[path = "shared/rooms.rs"]
mod rooms;
#[path = "shared/status.rs"]
mod status;
#[path = "shared/tls.rs"]
mod tls;
use rooms::Rooms;

/// Every connection's target, and the watcher of every room.
struct Chat(Rooms);

impl Actor for Chat {
    type Context = Context<Self>;
}

impl Handler<MessageConnect> for Chat {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, ctx: &mut Context<Self>) {
        println!("guest{} connected (compression {})", m.id.seq(), m.compressed);
        // Sent like the broadcasts, so it comes before the lobby's news.
        self.0.groups.send_to([&m.id], format!("you are guest{}; /join <room> to move", m.id.seq()));
        let me = ctx.address();
        let groups = self.0.groups.clone();
        let start = rooms::Start::of(&m.uri).unwrap_or_else(|e| {
            self.0.groups.send_to([&m.id], format!("ignored ?since: {e}"));
            rooms::Start { room: "lobby".into(), since: Since::Start }
        });
        self.0.enter(&start.room, &m.id, start.since, |room| groups.watch(room, me.recipient()));
    }
}

impl Handler<WsMessage> for Chat {
    type Result = ();
    fn handle(&mut self, m: WsMessage, ctx: &mut Context<Self>) {
        let (me, groups) = (ctx.address(), self.0.groups.clone());
        self.0.said(&m, |room| groups.watch(room, me.recipient()));
    }
}

impl Handler<PresenceEvent> for Chat {
    type Result = ();
    fn handle(&mut self, e: PresenceEvent, _: &mut Context<Self>) {
        let names: Vec<String> = self.0.groups.members(&e.group).iter().map(|m| m.meta.to_string()).collect();
        self.0.tell(&e.group, &e.member.meta, e.change, &names);
    }
}

impl Handler<MessageDisconnect> for Chat {
    type Result = (); // It has left its room already: the room's watcher tells the others.
    fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {}
}

/// A chat in the browser: open the printed address in two tabs.
#[derive(clap::Parser)]
struct Cli {
    /// Where to listen (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8081")]
    addr: std::net::SocketAddr,
    /// Serve `https://` and `wss://` with this certificate chain and private key (PEM files).
    #[arg(long, num_args = 2, value_names = ["CERT", "KEY"])]
    tls: Option<Vec<std::path::PathBuf>>,
    #[command(flatten)]
    observe: observe::Flags,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    let scrape = observe::start(&cli.observe, "warn", true)?;
    let groups = Groups::new();
    let chat = Chat(Rooms::new(groups.clone(), String::new(), 100)).start();
    let handler = WsHandler::new(HandlerOptions::new(Target::from_addr(chat)).compression(true))?;
    let nodes = status::Nodes::default();
    nodes.lock().unwrap().insert("this node".into(), "up");
    let status = status::Status {
        handler: handler.clone(),
        groups,
        scrape: Arc::new(move || scrape.render()),
        nodes,
        broker: None,
    };
    let h = handler.clone();
    let page = || async { HttpResponse::Ok().content_type("text/html; charset=utf-8").body(PAGE) };
    let server = WsServer::new(move || {
        App::new().route("/", web::get().to(page)).route("/ws", h.route()).configure(status.routes())
    })
    .shutdown_signal(handler.shutdown_on(async {
        let _ = tokio::signal::ctrl_c().await;
    }));
    let (server, scheme) = match &cli.tls {
        Some(files) => {
            (server.bind_rustls_0_23(cli.addr, tls::server_config(&files[0], &files[1])?)?, "https")
        }
        None => (server.bind(cli.addr)?, "http"),
    };
    // Printed for scripts that start the example on port 0.
    println!("chat on {scheme}://{}/", server.addrs()[0]);
    server.run().await
}
