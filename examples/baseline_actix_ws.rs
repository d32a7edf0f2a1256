//! Benchmark baseline: an actix-ws echo (no actors). Used only by scripts/bench.sh.
//!
//! ```sh
//! cargo run --release --example baseline_actix_ws -- --port 9102
//! ```

use std::time::Duration;

use actix_web::{web, App, Error, HttpRequest, HttpResponse, HttpServer};
use actix_ws::Message;

async fn index(req: HttpRequest, body: web::Payload) -> Result<HttpResponse, Error> {
    let (response, mut session, stream) = actix_ws::handle(&req, body)?;
    let mut stream = stream.max_frame_size(16 << 20);
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
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let Cli { port, workers } = clap::Parser::parse();
    HttpServer::new(|| App::new().route("/ws", web::get().to(index)))
        .workers(workers)
        .backlog(4096)
        .max_connection_rate(4096)
        .max_connections(100_000)
        .client_disconnect_timeout(Duration::ZERO)
        .bind(("127.0.0.1", port))?
        .run()
        .await
}
