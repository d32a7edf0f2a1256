//! A line-oriented WebSocket client: prints what arrives, sends each line of standard
//! input as a text message, and closes with 1000 on end of input.
//!
//! ```sh
//! cargo run --example echo_server &
//! cargo run --example client                              # ws://127.0.0.1:8080/ws
//! cargo run --example client -- --url wss://host/ws --compression
//! cargo run --example client -- --url wss://localhost:8080/ws --ca cert.pem   # trust cert.pem only
//! ```

use actix::prelude::*;
use actix_meta_websocket::{
    connect, DialOptions, MessageConnect, MessageDisconnect, Outgoing, Target, WsMessage,
};
use tokio::io::AsyncBufReadExt;

#[path = "shared/tls.rs"]
mod tls;

/// Prints the connection's events; signals `done` when the connection ends.
struct Printer {
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Actor for Printer {
    type Context = Context<Self>;
}

impl actix::Handler<MessageConnect> for Printer {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        eprintln!(
            "connected to {} ({}), compression {}",
            m.uri,
            m.id,
            if m.compressed { "on" } else { "off" }
        );
    }
}

impl actix::Handler<WsMessage> for Printer {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        match m.as_text() {
            Some(text) => println!("{text}"),
            None => println!("<{} bytes of {:?}>", m.body.len(), m.kind),
        }
    }
}

impl actix::Handler<MessageDisconnect> for Printer {
    type Result = ();
    fn handle(&mut self, m: MessageDisconnect, _: &mut Context<Self>) {
        eprintln!("disconnected: {}", m.reason);
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

/// Dials a WebSocket server, prints what arrives, sends each line of standard input as a
/// text message, and closes with 1000 at the end of input.
#[derive(clap::Parser)]
#[command(version)]
struct Cli {
    /// The server.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: actix_meta_websocket::Url,
    /// Offer permessage-deflate.
    #[arg(long)]
    compression: bool,
    /// For wss://: trust the certificates in this PEM file instead of the usual roots
    /// (a self-signed server's own certificate, say).
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
}

#[actix::main]
async fn main() {
    let Cli { url, compression, ca } = clap::Parser::parse();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let printer = Printer { done: Some(done_tx) }.start();
    let mut options = DialOptions::new(url, Target::from_addr(printer)).compression(compression);
    if let Some(ca) = ca {
        match tls::client_config(&ca) {
            Ok(config) => options = options.tls(std::sync::Arc::new(config)),
            Err(e) => {
                eprintln!("--ca: {e}");
                std::process::exit(2);
            }
        }
    }
    let id = match connect(options).await {
        Ok(id) => id,
        Err(e) => {
            eprintln!("connect failed: {e}");
            std::process::exit(1);
        }
    };
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                if id.send_wait(Outgoing::text(line)).await.is_err() {
                    break; // the connection ended
                }
            }
            Ok(None) | Err(_) => {
                let _ = id.send_wait(Outgoing::close(1000, "bye")).await;
                break;
            }
        }
    }
    // Whatever the server still sends before it answers the close is printed too.
    let _ = done.await;
}
