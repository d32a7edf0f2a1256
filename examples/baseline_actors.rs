//! Benchmark baseline: the echo an actix user writes today with actix-web-actors (the
//! deprecated `WebsocketContext`). `--mode direct` echoes inside the connection actor;
//! `--mode pool` forwards each message to one of 4 worker actors and back, the
//! hand-written pool this crate replaces; `--mode room` broadcasts every message to every
//! other connection through one room actor holding the sessions' `Addr`s (actix's chat
//! example). Used only by the benchmark scripts.
//!
//! ```sh
//! cargo run --release --example baseline_actors -- --port 9101 --mode pool
//! ```

use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, App, Error, HttpRequest, HttpResponse, HttpServer};
use actix_web_actors::ws;

/// A message from the connection to its worker, with the way back.
#[derive(Message)]
#[rtype(result = "()")]
struct Work {
    from: Addr<Conn>,
    msg: ws::Message,
}

/// A worker's answer.
#[derive(Message)]
#[rtype(result = "()")]
struct Reply(ws::Message);

struct Worker;
impl Actor for Worker {
    type Context = Context<Self>;
}
impl Handler<Work> for Worker {
    type Result = ();
    fn handle(&mut self, w: Work, _: &mut Context<Self>) {
        w.from.do_send(Reply(w.msg));
    }
}

/// The room of `--mode room`: every session's address, and a broadcast for every message.
#[derive(Default)]
struct Room {
    members: std::collections::HashMap<usize, Addr<Conn>>,
}
impl Actor for Room {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
enum RoomMsg {
    Join(usize, Addr<Conn>),
    Leave(usize),
    Publish(usize, ws::Message),
}

impl Handler<RoomMsg> for Room {
    type Result = ();
    fn handle(&mut self, m: RoomMsg, _: &mut Context<Self>) {
        match m {
            RoomMsg::Join(id, addr) => {
                self.members.insert(id, addr);
            }
            RoomMsg::Leave(id) => {
                self.members.remove(&id);
            }
            RoomMsg::Publish(from, msg) => {
                for (id, addr) in &self.members {
                    if *id != from {
                        let copy = match &msg {
                            ws::Message::Text(t) => ws::Message::Text(t.clone()),
                            ws::Message::Binary(b) => ws::Message::Binary(b.clone()),
                            _ => continue,
                        };
                        addr.do_send(Reply(copy));
                    }
                }
            }
        }
    }
}

static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct Conn {
    worker: Option<Addr<Worker>>,
    room: Option<(usize, Addr<Room>)>,
}

impl Actor for Conn {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some((id, room)) = &self.room {
            room.do_send(RoomMsg::Join(*id, ctx.address()));
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some((id, room)) = &self.room {
            room.do_send(RoomMsg::Leave(*id));
        }
    }
}

impl Handler<Reply> for Conn {
    type Result = ();
    fn handle(&mut self, Reply(m): Reply, ctx: &mut Self::Context) {
        match m {
            ws::Message::Text(t) => ctx.text(t),
            ws::Message::Binary(b) => ctx.binary(b),
            _ => {}
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Conn {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match msg {
            Ok(m @ (ws::Message::Text(_) | ws::Message::Binary(_))) => match (&self.worker, &self.room) {
                (_, Some((id, room))) => room.do_send(RoomMsg::Publish(*id, m)),
                (Some(w), None) => w.do_send(Work { from: ctx.address(), msg: m }),
                (None, None) => match m {
                    ws::Message::Text(t) => ctx.text(t),
                    ws::Message::Binary(b) => ctx.binary(b),
                    _ => {}
                },
            },
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Close(r)) => {
                ctx.close(r);
                ctx.stop();
            }
            Ok(_) => {}
            Err(_) => ctx.stop(),
        }
    }
}

struct Pool {
    workers: Vec<Addr<Worker>>,
    next: std::cell::Cell<usize>,
}

async fn index(
    req: HttpRequest,
    stream: web::Payload,
    pool: web::Data<Option<Pool>>,
    room: web::Data<Option<Addr<Room>>>,
) -> Result<HttpResponse, Error> {
    let room = room
        .as_ref()
        .as_ref()
        .map(|r| (NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed), r.clone()));
    let worker = pool.as_ref().as_ref().map(|p| {
        let i = p.next.get();
        p.next.set(i + 1);
        p.workers[i % p.workers.len()].clone()
    });
    ws::WsResponseBuilder::new(Conn { worker, room }, &req, stream).frame_size(16 << 20).start()
}

/// Benchmark baseline: an actix-web-actors echo, direct or through a hand-written pool.
#[derive(clap::Parser)]
#[command(version)]
struct Cli {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 9101)]
    port: u16,
    /// Echo in the session actor, or through a pool of 4 workers, or broadcast through a room.
    #[arg(long, value_parser = ["direct", "pool", "room"], default_value = "direct")]
    mode: String,
    /// actix-web worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let cli: Cli = clap::Parser::parse();
    let (port, pooled, workers) = (cli.port, cli.mode == "pool", cli.workers);
    // One room for every worker thread, on the main thread, as actix's chat example has it.
    let room = (cli.mode == "room").then(|| Room::default().start());
    HttpServer::new(move || {
        let pool = pooled.then(|| Pool { workers: (0..4).map(|_| Worker.start()).collect(), next: 0.into() });
        App::new()
            .app_data(web::Data::new(pool))
            .app_data(web::Data::new(room.clone()))
            .route("/ws", web::get().to(index))
    })
    .workers(workers)
    .backlog(4096)
    .max_connection_rate(4096)
    .max_connections(100_000)
    .client_disconnect_timeout(Duration::ZERO)
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
