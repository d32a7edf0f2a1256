//! The server the performance work measures: plain echo (body and kind unchanged) through
//! a pool of 4 worker actors at `/ws`, compression off (`--compression` to accept
//! permessage-deflate), 16 MiB limits, quiet logging.
//!
//! Each actix worker thread gets its own handler and pool, so a connection and its
//! worker actor share a thread, as a tuned deployment would have them.
//!
//! ```sh
//! cargo run --release --example bench_server -- --port 9100 --workers 1 [--compression]
//! ```

use std::time::Duration;

use actix::prelude::*;
use actix_meta_websocket::protocol::Limits;
use actix_meta_websocket::{ConnectionSettings, HandlerOptions, Pool, WsHandler};
use actix_web::{App, HttpServer};

#[path = "shared/echo.rs"]
mod echo;
use echo::Echo;

/// Echo through a pool of 4 workers, for load tests.
#[derive(clap::Parser)]
#[command(version)]
struct Cli {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 9100)]
    port: u16,
    /// actix-web worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Accept permessage-deflate.
    #[arg(long)]
    compression: bool,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let Cli { port, workers, compression } = clap::Parser::parse();
    let config = ConnectionSettings {
        limits: Limits { max_frame_size: 16 << 20, max_message_size: 16 << 20 },
        max_write_buffer: 64 << 20,
        ..ConnectionSettings::default()
    };
    config.validate()?;
    let server = HttpServer::new(move || {
        // Runs on each worker thread: the pool's actors start on that thread's arbiter.
        let pool = Pool::new((0..4).map(|_| Echo.start())).expect("four workers");
        let handler =
            WsHandler::new(HandlerOptions::new(pool).compression(compression).settings(config.clone()))
                .expect("settings validated before the server starts");
        App::new().route("/ws", handler.route())
    })
    .workers(workers)
    .backlog(4096)
    .max_connection_rate(4096)
    .max_connections(100_000)
    .client_disconnect_timeout(Duration::ZERO)
    .bind(("127.0.0.1", port))?;
    eprintln!("bench_server on ws://127.0.0.1:{port}/ws ({workers} worker threads)");
    server.run().await
}
