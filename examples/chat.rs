//! A chat with rooms on [`Groups`]: an HTML page at `/`, the WebSocket at `/ws`. Everyone
//! starts in `lobby`; `/join <room>` moves to another room. Each room hears who joins and
//! leaves, with its member list, from the room's presence events. Compression is on, since
//! browsers offer it.
//!
//! ```sh
//! cargo run --example chat            # open http://127.0.0.1:8081/ in two tabs
//! cargo run --example chat -- --addr 127.0.0.1:9000
//! ```

use actix::prelude::*;
use actix_meta_websocket::*;
use actix_web::{web, App, HttpResponse, HttpServer};

const PAGE: &str = include_str!("chat.html");

/// Every connection's target, and the watcher of every room.
#[derive(Default)]
struct Chat(Groups);

impl Actor for Chat {
    type Context = Context<Self>;
}

impl Chat {
    /// Leaves the current room for `room`; the rooms' watchers tell everyone.
    fn enter(&mut self, room: &str, id: &ConnectionId, ctx: &mut Context<Self>) {
        // A group lasts while it has members or watchers: one that does not exist is new.
        if !self.0.names().iter().any(|name| **name == *room) {
            self.0.watch(room, ctx.address().recipient());
        }
        for old in self.0.groups_of(id) {
            self.0.leave(&old, id);
        }
        let _ = self.0.join_with(room, id, format!("guest{}", id.seq()));
    }
}

impl Handler<MessageConnect> for Chat {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, ctx: &mut Context<Self>) {
        println!("guest{} connected (compression {})", m.id.seq(), m.compressed);
        // Sent like the broadcasts, so it comes before the lobby's news.
        self.0.send_to([&m.id], format!("you are guest{}; /join <room> to move", m.id.seq()));
        self.enter("lobby", &m.id, ctx);
    }
}

impl Handler<WsMessage> for Chat {
    type Result = ();
    fn handle(&mut self, m: WsMessage, ctx: &mut Context<Self>) {
        let Some(text) = m.as_text().map(str::trim) else { return };
        match text.strip_prefix("/join ").map(str::trim) {
            Some(room) if (1..=32).contains(&room.len()) => self.enter(room, &m.id, ctx),
            Some(_) => m.id.send("a room's name has 1 to 32 bytes"),
            None => self.0.groups_of(&m.id).iter().for_each(|room| {
                self.0.broadcast(room, format!("[{room}] guest{}: {text}", m.id.seq()));
            }),
        }
    }
}

impl Handler<PresenceEvent> for Chat {
    type Result = ();
    fn handle(&mut self, e: PresenceEvent, _: &mut Context<Self>) {
        let (room, verb) = (&e.group, if e.change == PresenceChange::Joined { "joined" } else { "left" });
        let names: Vec<_> = self.0.members(room).into_iter().map(|m| m.meta).collect();
        self.0.broadcast(room, format!("[{room}] {} {verb}; here: {}", e.member.meta, names.join(", ")));
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
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let chat = Chat::default().start();
    let handler = WsHandler::new(HandlerOptions::new(Target::from_addr(chat)).compression(true))?;
    let h = handler.clone();
    let page = || async { HttpResponse::Ok().content_type("text/html; charset=utf-8").body(PAGE) };
    let server = handler
        .configure_server(HttpServer::new(move || {
            App::new().route("/", web::get().to(page)).route("/ws", h.route())
        }))
        .shutdown_signal(handler.shutdown_on(async {
            let _ = tokio::signal::ctrl_c().await;
        }))
        .bind(<Cli as clap::Parser>::parse().addr)?;
    // Printed for scripts that start the example on port 0.
    println!("chat on http://{}/", server.addrs()[0]);
    server.run().await
}
