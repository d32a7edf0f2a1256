//! The server under Autobahn|Testsuite (`wstest -m fuzzingclient`): echoes every message
//! through a pool of workers, compression on (every permessage-deflate parameter
//! combination accepted), limits high enough for the 9.x cases.
//!
//! ```sh
//! cargo run --release --example autobahn_server -- --port 9002 [--deflate shared] [--owned]
//! ```
//!
//! `--owned` serves on `WsServer` (the socket taken over after the upgrade) instead of
//! actix-web's `HttpServer`.

use std::time::Duration;

use actix::prelude::*;
use actix_meta_websocket::protocol::{DeflateConfig, Limits};
use actix_meta_websocket::{ConnectionSettings, HandlerOptions, Pool, WsHandler, WsServer};
use actix_web::{App, HttpServer};

#[path = "shared/echo.rs"]
mod echo;
use echo::Echo;

/// The server under Autobahn|Testsuite's fuzzing client: echo, compression accepted.
#[derive(clap::Parser)]
#[command(version)]
struct Cli {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 9002)]
    port: u16,
    /// permessage-deflate settings: the defaults, or the shared-compressor mode.
    #[arg(long, value_parser = ["default", "shared"], default_value = "default")]
    deflate: String,
    /// Serve on `WsServer` rather than actix-web's `HttpServer`.
    #[arg(long)]
    owned: bool,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let Cli { port, deflate, owned } = clap::Parser::parse();
    let pool = Pool::new((0..4).map(|_| Echo.start())).map_err(std::io::Error::other)?;
    let config = ConnectionSettings {
        limits: Limits { max_frame_size: 64 << 20, max_message_size: 64 << 20 },
        max_write_buffer: 128 << 20,
        close_timeout: Duration::from_secs(2),
        deflate: if deflate == "shared" { DeflateConfig::shared() } else { DeflateConfig::default() },
        ..ConnectionSettings::default()
    };
    let handler = WsHandler::new(HandlerOptions::new(pool).compression(true).settings(config))?;
    let app = move || App::new().default_service(handler.route());
    eprintln!("autobahn_server on ws://127.0.0.1:{port} (owned sockets: {owned})");
    if owned {
        return WsServer::new(app).workers(1).bind(("127.0.0.1", port))?.run().await;
    }
    HttpServer::new(app)
        .workers(1)
        // Close TCP right after the closing handshake (see Handler's docs).
        .client_disconnect_timeout(Duration::ZERO)
        .bind(("127.0.0.1", port))?
        .run()
        .await
}
