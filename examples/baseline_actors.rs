//! Benchmark baseline: the echo an actix user writes today with actix-web-actors (the
//! deprecated `WebsocketContext`). `--mode direct` echoes inside the connection actor;
//! `--mode pool` forwards each message to one of 4 worker actors and back, the
//! hand-written pool this crate replaces. Used only by scripts/bench.sh.
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

struct Conn {
    worker: Option<Addr<Worker>>,
}

impl Actor for Conn {
    type Context = ws::WebsocketContext<Self>;
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
            Ok(m @ (ws::Message::Text(_) | ws::Message::Binary(_))) => match &self.worker {
                Some(w) => w.do_send(Work { from: ctx.address(), msg: m }),
                None => match m {
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
) -> Result<HttpResponse, Error> {
    let worker = pool.as_ref().as_ref().map(|p| {
        let i = p.next.get();
        p.next.set(i + 1);
        p.workers[i % p.workers.len()].clone()
    });
    ws::WsResponseBuilder::new(Conn { worker }, &req, stream).frame_size(16 << 20).start()
}

/// Benchmark baseline: an actix-web-actors echo, direct or through a hand-written pool.
#[derive(clap::Parser)]
#[command(version)]
struct Cli {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 9101)]
    port: u16,
    /// Echo in the session actor, or through a pool of 4 workers.
    #[arg(long, value_parser = ["direct", "pool"], default_value = "direct")]
    mode: String,
    /// actix-web worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let cli: Cli = clap::Parser::parse();
    let (port, pooled, workers) = (cli.port, cli.mode == "pool", cli.workers);
    HttpServer::new(move || {
        let pool = pooled.then(|| Pool { workers: (0..4).map(|_| Worker.start()).collect(), next: 0.into() });
        App::new().app_data(web::Data::new(pool)).route("/ws", web::get().to(index))
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
