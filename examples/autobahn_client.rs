//! The client under Autobahn|Testsuite (`wstest -m fuzzingserver`): runs the case
//! protocol with this crate's own client, echoing every message, offering compression.
//!
//! ```sh
//! cargo run --release --example autobahn_client -- --url ws://127.0.0.1:9001 --agent actix-meta-websocket
//! ```

use std::time::Duration;

use actix::prelude::*;
use actix_meta_websocket::protocol::{DeflateConfig, Limits};
use actix_meta_websocket::{
    connect, ConnectionSettings, DialOptions, MessageConnect, MessageDisconnect, Target, WsMessage,
};
use tokio::sync::mpsc;

/// Echoes every message; reports the first text message and the disconnect.
struct Case {
    events: mpsc::UnboundedSender<Option<String>>,
    echo: bool,
}

impl Actor for Case {
    type Context = Context<Self>;
}

impl actix::Handler<MessageConnect> for Case {
    type Result = ();
    fn handle(&mut self, _: MessageConnect, _: &mut Context<Self>) {}
}

impl actix::Handler<WsMessage> for Case {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        if self.echo {
            let (id, same) = m.into_parts();
            id.send(same);
        } else {
            let _ = self.events.send(m.as_text().map(str::to_owned));
        }
    }
}

impl actix::Handler<MessageDisconnect> for Case {
    type Result = ();
    fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {
        let _ = self.events.send(None);
    }
}

/// The client under Autobahn|Testsuite's fuzzing server: runs every case, then asks for
/// the reports.
#[derive(clap::Parser)]
#[command(version)]
struct Cli {
    /// The fuzzing server.
    #[arg(long, default_value = "ws://127.0.0.1:9001")]
    url: String,
    /// The agent name the reports are filed under.
    #[arg(long, default_value = "actix-meta-websocket")]
    agent: String,
    /// permessage-deflate settings: the defaults, or the shared-compressor mode.
    #[arg(long, value_parser = ["default", "shared"], default_value = "default")]
    deflate: String,
}

/// The permessage-deflate settings every case dials with.
static DEFLATE: std::sync::OnceLock<DeflateConfig> = std::sync::OnceLock::new();

async fn run(base: &str, path: &str, echo: bool) -> Result<Option<String>, String> {
    let url = format!("{base}{path}");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let target = Target::from_addr(Case { events: tx, echo }.start());
    let config = ConnectionSettings {
        limits: Limits { max_frame_size: 64 << 20, max_message_size: 64 << 20 },
        max_write_buffer: 128 << 20,
        close_timeout: Duration::from_secs(2),
        deflate: DEFLATE.get().cloned().unwrap_or_default(),
        ..ConnectionSettings::default()
    };
    let options = DialOptions::new(url, target).compression(true).settings(config);
    let _id = connect(options).await.map_err(|e| e.to_string())?;
    let mut first = None;
    // Until the disconnect (None); remember the first text for getCaseCount.
    while let Some(Some(text)) = rx.recv().await {
        first.get_or_insert(text);
    }
    Ok(first)
}

#[actix::main]
async fn main() {
    let Cli { url: base, agent, deflate } = clap::Parser::parse();
    let _ = DEFLATE.set(if deflate == "shared" { DeflateConfig::shared() } else { DeflateConfig::default() });
    let count: u32 = match run(&base, "/getCaseCount", false).await {
        Ok(Some(n)) => n.trim().parse().unwrap_or(0),
        other => {
            eprintln!("getCaseCount failed: {other:?}");
            std::process::exit(1);
        }
    };
    eprintln!("{count} cases");
    for case in 1..=count {
        if let Err(e) = run(&base, &format!("/runCase?case={case}&agent={agent}"), true).await {
            eprintln!("case {case}: {e}");
        }
    }
    if let Err(e) = run(&base, &format!("/updateReports?agent={agent}"), false).await {
        eprintln!("updateReports failed: {e}");
        std::process::exit(1);
    }
    eprintln!("reports updated for {agent}");
}
