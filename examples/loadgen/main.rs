//! A WebSocket load generator for any `ws://` URL, loopback only, bounded in time. It
//! speaks the protocol with this crate's sans-IO codec straight over tokio sockets, so
//! its own cost per message is small and the same whichever server it drives.
//!
//! ```sh
//! # echo: C connections, P messages in flight each, S bytes, text or binary
//! cargo run --release --example loadgen -- echo --url ws://127.0.0.1:9100/ws --conns 50 --inflight 32 --size 64 --kind text --secs 5
//! # hold: N idle connections from several 127.0.0.x source addresses, until --secs ends
//! cargo run --release --example loadgen -- hold --url ws://127.0.0.1:9100/ws --conns 10000 --sources 8 --secs 10
//! # connect-rate: handshake + close cycles per second over C parallel loops
//! cargo run --release --example loadgen -- connect-rate --url ws://127.0.0.1:9100/ws --conns 8 --secs 5
//! # churn: C members join and leave a group on the server's side, once
//! cargo run --release --example loadgen -- churn --url ws://127.0.0.1:9100/ws --conns 10000 --sources 8
//! # fanout: C receivers and one publisher, against `bench_server --fanout`; P broadcasts in flight
//! cargo run --release --example loadgen -- fanout --url ws://127.0.0.1:9100/ws --conns 1000 --inflight 4 --size 2048 --secs 5
//! # fanout over cluster nodes: receivers spread over --url and every --also
//! cargo run --release --example loadgen -- fanout --url ws://127.0.0.1:9100/ws --also ws://127.0.0.1:9101/ws --conns 1000
//! # relay: one sender on --url, one receiver on the last --also (or --url), through
//! # `bench_server --cluster`'s global ids, R messages per second; latency percentiles
//! cargo run --release --example loadgen -- relay --url ws://127.0.0.1:9100/ws --also ws://127.0.0.1:9101/ws --rate 1000
//! ```
//!
//! Each mode prints one JSON line of results on standard output; `hold` first prints
//! `READY` once every connection is open.

mod conn;
mod echo;
mod fanout;
#[path = "../shared/tls.rs"]
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// A WebSocket load generator for a loopback `ws://` URL, bounded in time; prints one
/// JSON line of results.
#[derive(clap::Parser)]
#[command(version)]
struct Cli {
    /// echo: messages echoed; hold: idle connections (prints READY once all are open);
    /// connect-rate: handshake and close cycles; fanout: one publisher's messages
    /// delivered to every receiver; churn: C connections, then one request that the
    /// server make each join a group and leave it (prints READY before the request).
    #[arg(value_parser = ["echo", "hold", "connect-rate", "fanout", "churn", "relay"], default_value = "echo")]
    mode: String,
    #[command(flatten)]
    servers: Servers,
    /// Connections (or parallel loops for connect-rate).
    #[arg(long, default_value_t = 50)]
    conns: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Message kind.
    #[arg(long, value_parser = ["text", "binary"], default_value = "text")]
    kind: String,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Source addresses 127.0.0.1..=127.0.0.N (hold mode, past 64k connections per source).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..))]
    sources: u8,
    /// Offer permessage-deflate.
    #[arg(long)]
    deflate: bool,
    /// hold: each connection first sends one text message of --size bytes and reads its
    /// echo, so the hold measures connections that have talked.
    #[arg(long)]
    first_message: bool,
    /// fanout: broadcasts per second (0: as fast as --inflight allows); relay: messages
    /// per second.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
}

/// Where the servers are, and how to trust them over TLS.
#[derive(clap::Args)]
struct Servers {
    /// The server, on a loopback IP address (`ws://`, or `wss://` with --ca).
    #[arg(long, default_value = "ws://127.0.0.1:9100/ws")]
    url: url::Url,
    /// For `wss://`: the server's certificate (PEM), trusted for the IP address in the URL.
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// More servers (nodes of one cluster): fanout spreads its receivers over all of
    /// them; relay receives on the last.
    #[arg(long)]
    also: Vec<url::Url>,
}

pub struct Args {
    pub mode: String,
    /// --url, then every --also.
    pub targets: Vec<Target>,
    pub conns: usize,
    pub inflight: usize,
    pub size: usize,
    pub text: bool,
    pub secs: f64,
    pub sources: u8,
    pub deflate: bool,
    pub first_message: bool,
    pub rate: f64,
    /// For the `wss://` targets.
    pub tls: Option<tokio_rustls::TlsConnector>,
}

pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    pub tls: bool,
}

fn target(url: &url::Url) -> Target {
    let Some(host) = url.host_str().map(str::to_owned) else {
        clap_error("--url has no host");
    };
    let ip: IpAddr = host.parse().unwrap_or_else(|_| clap_error("--url must use a loopback IP address"));
    if !ip.is_loopback() {
        clap_error("--url must use a loopback IP address");
    }
    let tls = match url.scheme() {
        "ws" => false,
        "wss" => true,
        _ => clap_error("--url must be ws:// or wss://"),
    };
    let port = url.port_or_known_default().unwrap_or(80);
    Target {
        addr: SocketAddr::new(ip, port),
        host: format!("{host}:{port}"),
        path: url.path().to_owned(),
        tls,
    }
}

fn parse_args() -> Args {
    let cli = <Cli as clap::Parser>::parse();
    let Servers { url, also, ca } = &cli.servers;
    let targets: Vec<Target> = std::iter::once(url).chain(also).map(target).collect();
    let tls = match ca {
        Some(ca) => {
            let config = tls::client_config(ca).unwrap_or_else(|e| clap_error(&format!("--ca: {e}")));
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        }
        None if targets.iter().any(|t| t.tls) => {
            clap_error("a wss:// URL needs --ca (the server's certificate)")
        }
        None => None,
    };
    Args {
        mode: cli.mode,
        targets,
        conns: cli.conns,
        inflight: cli.inflight,
        size: cli.size,
        text: cli.kind == "text",
        secs: cli.secs,
        sources: cli.sources,
        deflate: cli.deflate,
        first_message: cli.first_message,
        rate: cli.rate,
        tls,
    }
}

fn clap_error(msg: &str) -> ! {
    <Cli as clap::CommandFactory>::command().error(clap::error::ErrorKind::ValueValidation, msg).exit()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Arc::new(parse_args());
    match args.mode.as_str() {
        "echo" => echo::echo(args).await,
        "hold" => echo::hold(args).await,
        "connect-rate" => echo::connect_rate(args).await,
        "fanout" => fanout::fanout(args).await,
        "churn" => fanout::churn(args).await,
        "relay" => fanout::relay(args).await,
        other => {
            eprintln!("unknown mode {other:?}: echo | hold | connect-rate | fanout | churn | relay");
            std::process::exit(2);
        }
    }
}
