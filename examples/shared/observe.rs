//! What an operator sees of an example: its log (plain, or JSON with `--log-json`, where
//! every line of a connection carries its `ws` span: id, role, peer and path) and, with
//! `--metrics ADDR` and the crate's `metrics` feature, Prometheus text at
//! `http://ADDR/metrics`.
//!
//! ```sh
//! cargo run --features metrics --example chat -- --metrics 127.0.0.1:9464 --log-json
//! curl -s 127.0.0.1:9464/metrics | grep amw_
//! ```
#![allow(dead_code)] // each example uses what it needs

use std::io;
use std::net::SocketAddr;

/// The flags every serving example takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Flags {
    /// Serve Prometheus text at http://ADDR/metrics (needs `--features metrics`).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Log as JSON lines, each with its connection's span (id, role, peer, path).
    #[arg(long)]
    pub log_json: bool,
}

/// Renders what the crate has recorded, as Prometheus text; `None` without a recorder.
#[derive(Clone, Default)]
pub struct Scrape {
    #[cfg(feature = "metrics")]
    handle: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl Scrape {
    pub fn render(&self) -> Option<String> {
        #[cfg(feature = "metrics")]
        if let Some(h) = &self.handle {
            return Some(h.render());
        }
        None
    }
}

/// Sets up logging to stderr (at `level` unless `RUST_LOG` says otherwise; stdout is for
/// the lines scripts read), and the recorder when the example records (`record`: the
/// chat's status page reads it even without `--metrics`); serves `/metrics` on
/// `--metrics ADDR`. Call it first thing, inside the actix runtime: the crate's counters
/// go to the recorder installed before the first connection.
pub fn start(flags: &Flags, level: &str, record: bool) -> io::Result<Scrape> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr);
    if flags.log_json {
        logs.json().with_current_span(true).with_span_list(false).init();
    } else {
        logs.init();
    }
    #[cfg(feature = "metrics")]
    if record || flags.metrics.is_some() {
        let handle = install()?;
        if let Some(addr) = flags.metrics {
            serve(addr, handle.clone())?;
        }
        return Ok(Scrape { handle: Some(handle) });
    }
    #[cfg(not(feature = "metrics"))]
    if flags.metrics.is_some() {
        return Err(io::Error::other(
            "--metrics needs the crate's metrics feature: cargo run --features metrics ...",
        ));
    }
    let _ = record;
    Ok(Scrape::default())
}

#[cfg(feature = "metrics")]
fn install() -> io::Result<metrics_exporter_prometheus::PrometheusHandle> {
    use actix_meta_websocket::telemetry;
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(telemetry::CLUSTER_REDIS_ROUND_TRIP.into()),
            telemetry::ROUND_TRIP_BUCKETS,
        )
        .and_then(|b| b.install_recorder())
        .map_err(io::Error::other)?;
    telemetry::describe();
    // Histograms are drained into their buckets by the upkeep.
    let upkeep = handle.clone();
    actix::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// `/metrics` on its own listener, so that a scrape never shares the WebSocket port.
#[cfg(feature = "metrics")]
fn serve(addr: SocketAddr, handle: metrics_exporter_prometheus::PrometheusHandle) -> io::Result<()> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let server = HttpServer::new(move || {
        let handle = handle.clone();
        App::new().route(
            "/metrics",
            web::get().to(move || {
                let text = handle.render();
                async move { HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text) }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?;
    // Printed for scripts that start the example on port 0.
    println!("metrics on http://{}/metrics", server.addrs()[0]);
    actix::spawn(server.run());
    Ok(())
}
