//! The server under Autobahn|Testsuite (`wstest -m fuzzingclient`): echoes every message
//! through a pool of workers, compression on (every permessage-deflate parameter
//! combination accepted), limits high enough for the 9.x cases.
//!
//! ```sh
//! cargo run --release --example autobahn_server -- --port 9002
//! ```

use std::time::Duration;

use actix::prelude::*;
use actix_meta_websocket::protocol::Limits;
use actix_meta_websocket::{ConnectionConfig, Handler, HandlerOptions, Pool};
use actix_web::{App, HttpServer};

#[path = "shared/echo.rs"]
mod echo;
use echo::Echo;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(9002);
    let pool = Pool::new((0..4).map(|_| Echo.start())).map_err(std::io::Error::other)?;
    let config = ConnectionConfig {
        limits: Limits { max_frame_size: 64 << 20, max_message_size: 64 << 20 },
        max_write_buffer: 128 << 20,
        close_timeout: Duration::from_secs(2),
        ..ConnectionConfig::default()
    };
    let handler = Handler::new(HandlerOptions::new(pool).compression(true).connection(config))?;
    let server = HttpServer::new(move || App::new().default_service(handler.route()))
        .workers(1)
        // Close TCP right after the closing handshake (see Handler's docs).
        .client_disconnect_timeout(Duration::ZERO)
        .bind(("127.0.0.1", port))?;
    eprintln!("autobahn_server on ws://127.0.0.1:{port}");
    server.run().await
}
