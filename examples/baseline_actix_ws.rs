//! Benchmark baseline: an actix-ws echo (no actors); with `--room`, every message is
//! broadcast to every other connection by one room task holding the `Session`s (the shape
//! of actix-ws's chat example). Used only by the benchmark scripts.
//!
//! ```sh
//! cargo run --release --example baseline_actix_ws -- --port 9102 [--room]
//! ```

use std::time::Duration;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{web, App, Error, HttpRequest, HttpResponse, HttpServer};
use actix_ws::{Message, Session};
use bytes::Bytes;
use tokio::sync::mpsc;

/// What sessions tell the room.
enum Command {
    Join(usize, Session),
    Leave(usize),
    Publish(usize, Message),
}

type Room = mpsc::UnboundedSender<Command>;

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// The room task: sends every published message to every other session, one by one.
async fn room(mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut sessions: HashMap<usize, Session> = HashMap::new();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Command::Join(id, s) => {
                sessions.insert(id, s);
            }
            Command::Leave(id) => {
                sessions.remove(&id);
            }
            Command::Publish(from, msg) => {
                let mut gone = Vec::new();
                for (id, s) in sessions.iter_mut().filter(|(id, _)| **id != from) {
                    let sent = match &msg {
                        Message::Text(t) => s.text(t.clone()).await,
                        Message::Binary(b) => s.binary(Bytes::clone(b)).await,
                        _ => Ok(()),
                    };
                    if sent.is_err() {
                        gone.push(*id);
                    }
                }
                for id in gone {
                    sessions.remove(&id);
                }
            }
        }
    }
}

async fn index(
    req: HttpRequest,
    body: web::Payload,
    room: web::Data<Option<Room>>,
) -> Result<HttpResponse, Error> {
    let (response, mut session, stream) = actix_ws::handle(&req, body)?;
    let mut stream = stream.max_frame_size(16 << 20);
    if let Some(room) = room.as_ref().clone() {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let _ = room.send(Command::Join(id, session.clone()));
        actix_web::rt::spawn(async move {
            while let Some(Ok(msg)) = stream.recv().await {
                match msg {
                    m @ (Message::Text(_) | Message::Binary(_)) => {
                        let _ = room.send(Command::Publish(id, m));
                    }
                    Message::Ping(p) => {
                        let _ = session.pong(&p).await;
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = room.send(Command::Leave(id));
        });
        return Ok(response);
    }
    actix_web::rt::spawn(async move {
        while let Some(Ok(msg)) = stream.recv().await {
            let sent = match msg {
                Message::Text(t) => session.text(t).await,
                Message::Binary(b) => session.binary(b).await,
                Message::Ping(p) => session.pong(&p).await,
                Message::Close(r) => {
                    let _ = session.close(r).await;
                    return;
                }
                _ => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
    });
    Ok(response)
}

/// Benchmark baseline: an actix-ws echo.
#[derive(clap::Parser)]
#[command(version)]
struct Cli {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 9102)]
    port: u16,
    /// actix-web worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Broadcast every message to every other connection instead of echoing it.
    #[arg(long)]
    room: bool,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let Cli { port, workers, room: with_room } = clap::Parser::parse();
    let tx = with_room.then(|| {
        let (tx, rx) = mpsc::unbounded_channel();
        actix_web::rt::spawn(room(rx));
        tx
    });
    HttpServer::new(move || {
        App::new().app_data(web::Data::new(tx.clone())).route("/ws", web::get().to(index))
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
