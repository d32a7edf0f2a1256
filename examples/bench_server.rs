//! The server the performance work measures: plain echo (body and kind unchanged) through
//! a pool of 4 worker actors at `/ws`, compression off (`--compression [MODE]` to accept
//! permessage-deflate), 16 MiB limits, quiet logging. With `--fanout`, every message is
//! broadcast to every other connection instead: through the crate's groups, or with
//! `--fanout hub` through one hub actor that writes to each member itself. With
//! `--keep-headers`, the workers keep every connection's `MessageConnect::headers`, as an
//! application that authenticates later would.
//!
//! Each actix worker thread gets its own handler and pool, so a connection and its
//! worker actor share a thread, as a tuned deployment would have them.
//!
//! ```sh
//! cargo run --release --example bench_server -- --port 9100 --workers 1 [--compression [shared]] [--fanout [hub]]
//! ```

use std::time::Duration;

use actix::prelude::*;
use actix_meta_websocket::protocol::{DeflateConfig, DeflateMemory, Limits};
use actix_meta_websocket::{
    ConnectionSettings, Groups, HandlerOptions, MessageConnect, MessageDisconnect, Pool, WsHandler,
    WsMessage, WsServer,
};
use actix_web::{App, HttpServer};

#[path = "shared/echo.rs"]
mod echo;
use echo::Echo;
#[path = "shared/fanout.rs"]
mod fanout;
#[cfg(feature = "rustls")]
#[path = "shared/tls.rs"]
mod tls;
use fanout::{Fanout, Hub};

/// permessage-deflate settings, by name.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Compression {
    /// `DeflateConfig::default()`: 4 KiB windows, context takeover, pooled zlib streams.
    Default,
    /// `DeflateConfig::shared()`: no context takeover from the server.
    Shared,
    /// The defaults with a dedicated zlib stream per connection.
    Dedicated,
    /// 32 KiB windows and dedicated streams: zlib's own defaults.
    Full,
}

impl Compression {
    fn config(self) -> DeflateConfig {
        match self {
            Compression::Default => DeflateConfig::default(),
            Compression::Shared => DeflateConfig::shared(),
            Compression::Dedicated => {
                DeflateConfig { memory: DeflateMemory::Dedicated, ..DeflateConfig::default() }
            }
            Compression::Full => DeflateConfig {
                server_max_window_bits: 15,
                client_max_window_bits: 15,
                memory: DeflateMemory::Dedicated,
                ..DeflateConfig::default()
            },
        }
    }
}

/// How a message reaches the other connections.
#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum FanoutMode {
    /// `Groups::broadcast_except`, from a worker actor on each thread.
    Groups,
    /// One hub actor for all threads, one `send_prepared` per member.
    Hub,
}

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
    /// Accept permessage-deflate, with these settings.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "default")]
    compression: Option<Compression>,
    /// Broadcast every message to every other connection instead of echoing it.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "groups")]
    fanout: Option<FanoutMode>,
    /// With --fanout groups: join the cluster on this Redis; the groups span its nodes
    /// (feature `cluster`).
    #[cfg(feature = "cluster")]
    #[arg(long)]
    cluster: Option<String>,
    /// The echo workers keep the headers of every connection they are told of.
    #[arg(long)]
    keep_headers: bool,
    /// With --fanout groups: the group keeps its last N broadcasts as history (in Redis
    /// with --cluster), so every broadcast is stored.
    #[arg(long)]
    history: Option<usize>,
    /// Serve with `WsServer` (each WebSocket's socket taken over) instead of `HttpServer`.
    #[arg(long)]
    owned: bool,
    /// With --owned: TLS with this certificate chain and key (PEM files).
    #[arg(long, num_args = 2, value_names = ["CERT", "KEY"])]
    tls: Option<Vec<std::path::PathBuf>>,
    /// Install a Prometheus recorder (feature `metrics`), as a service that exports its
    /// metrics would: what the counters cost.
    #[cfg(feature = "metrics")]
    #[arg(long)]
    metrics: bool,
}

/// The echo worker, keeping what `MessageConnect` brought.
struct KeepHeaders(Vec<actix_web::http::header::HeaderMap>);

impl Actor for KeepHeaders {
    type Context = Context<Self>;
}

impl actix::Handler<MessageConnect> for KeepHeaders {
    type Result = ();
    fn handle(&mut self, m: MessageConnect, _: &mut Context<Self>) {
        self.0.push(m.headers);
    }
}

impl actix::Handler<WsMessage> for KeepHeaders {
    type Result = ();
    fn handle(&mut self, m: WsMessage, _: &mut Context<Self>) {
        let (id, same) = m.into_parts();
        id.send(same);
    }
}

impl actix::Handler<MessageDisconnect> for KeepHeaders {
    type Result = ();
    fn handle(&mut self, _: MessageDisconnect, _: &mut Context<Self>) {}
}

/// Room for the largest benchmark messages, and the chosen compression.
fn settings(compression: Option<Compression>) -> std::io::Result<ConnectionSettings> {
    let config = ConnectionSettings {
        limits: Limits { max_frame_size: 16 << 20, max_message_size: 16 << 20 },
        max_write_buffer: 64 << 20,
        deflate: compression.map_or_else(DeflateConfig::default, Compression::config),
        ..ConnectionSettings::default()
    };
    config.validate()?;
    Ok(config)
}

/// The groups every worker's fan-out actor shares, on a cluster with `--cluster`.
async fn fanout_state(cli: &Cli) -> std::io::Result<Fanout> {
    #[cfg(feature = "cluster")]
    let cluster = match &cli.cluster {
        Some(url) => {
            let opts = actix_meta_websocket::ClusterOptions::new(url.clone()).max_queued(256 << 20);
            Some(actix_meta_websocket::Cluster::join(opts).await.map_err(std::io::Error::other)?)
        }
        None => None,
    };
    #[cfg(feature = "cluster")]
    let groups = cluster.as_ref().map_or_else(Groups::new, |c| c.groups().clone());
    #[cfg(not(feature = "cluster"))]
    let groups = Groups::new();
    if let Some(n) = cli.history {
        let limits = actix_meta_websocket::groups::HistoryLimits::default()
            .max_messages(n)
            .max_bytes(n.saturating_mul(1024));
        groups.keep_history("all", limits);
    }
    Ok(Fanout {
        groups,
        #[cfg(feature = "cluster")]
        cluster,
    })
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let cli: Cli = clap::Parser::parse();
    #[cfg(feature = "metrics")]
    if cli.metrics {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        metrics::set_global_recorder(recorder).map_err(std::io::Error::other)?;
    }
    let shared = fanout_state(&cli).await?;
    let Cli { port, workers, compression, fanout, keep_headers, owned, tls, .. } = cli;
    let config = settings(compression)?;
    // One hub, or one set of groups, for every worker thread.
    let hub = (fanout == Some(FanoutMode::Hub)).then(|| Hub::default().start());
    let app = move || {
        // Runs on each worker thread: the pool's actors start on that thread's arbiter.
        let pool = match (fanout, &hub) {
            (Some(FanoutMode::Hub), Some(hub)) => Pool::from(hub.clone()),
            (Some(_), _) => Pool::from(shared.clone().start()),
            (None, _) if keep_headers => {
                Pool::new((0..4).map(|_| KeepHeaders(Vec::new()).start())).expect("four workers")
            }
            (None, _) => Pool::new((0..4).map(|_| Echo.start())).expect("four workers"),
        };
        let options = HandlerOptions::new(pool).compression(compression.is_some()).settings(config.clone());
        let handler = WsHandler::new(options).expect("settings validated before the server starts");
        App::new().route("/ws", handler.route())
    };
    eprintln!("bench_server on ws://127.0.0.1:{port}/ws ({workers} worker threads, owned sockets: {owned})");
    if owned {
        let server = WsServer::new(app).workers(workers).backlog(4096).max_connections(100_000);
        let server = match tls {
            #[cfg(feature = "rustls")]
            Some(files) => {
                server.bind_rustls_0_23(("127.0.0.1", port), tls::server_config(&files[0], &files[1])?)?
            }
            #[cfg(not(feature = "rustls"))]
            Some(_) => return Err(std::io::Error::other("--tls needs the crate's rustls feature")),
            None => server.bind(("127.0.0.1", port))?,
        };
        return server.run().await;
    }
    HttpServer::new(app)
        .workers(workers)
        .backlog(4096)
        .max_connection_rate(4096)
        .max_connections(100_000)
        .client_disconnect_timeout(Duration::ZERO)
        .bind(("127.0.0.1", port))?
        .run()
        .await
}
