//! The chat's live status page: `/status` (plain HTML and JS, no build step) polls
//! `/status.json` every second and draws connections and messages per second as small
//! charts, with the rooms and their member counts and the cluster's nodes.
//!
//! The figures come from the handler (connections), the groups (rooms) and, with the
//! crate's `metrics` feature, from the same recorder `/metrics` renders (traffic totals,
//! summed over their labels).
#![allow(dead_code)] // each example uses what it needs

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use actix_meta_websocket::{Groups, WsHandler};
use actix_web::{web, HttpResponse};

const PAGE: &str = include_str!("../status.html");

/// The cluster's nodes as this node last heard of them: id → `up` or `down`.
pub type Nodes = Arc<Mutex<BTreeMap<String, &'static str>>>;

/// The link to the broker (a cluster node's Redis), as the page and `/ready` show it.
pub struct Broker {
    /// Up and not silent: `Cluster::is_ready`.
    pub ready: bool,
    /// The Redis server in use (`host:port`).
    pub server: String,
    pub reconnects: u64,
    pub last_outage: Option<std::time::Duration>,
    pub probe_timeouts: u64,
    /// Under Redis Cluster, each shard's primary and how long its subscription has been
    /// quiet (`BrokerStatus::shards`).
    pub shards: Vec<(String, std::time::Duration)>,
}

/// What the page shows.
#[derive(Clone)]
pub struct Status {
    pub handler: WsHandler,
    pub groups: Groups,
    /// The recorder's Prometheus text, if there is a recorder.
    pub scrape: Arc<dyn Fn() -> Option<String> + Send + Sync>,
    pub nodes: Nodes,
    /// A cluster node's link to Redis (none on a single server).
    pub broker: Option<Arc<dyn Fn() -> Broker + Send + Sync>>,
}

impl Status {
    /// `/status`, `/status.json` and `/ready` (200, or 503 while a cluster node's link to
    /// Redis is down or silent: for a load balancer's readiness check), for an
    /// `App::configure`.
    pub fn routes(&self) -> impl Fn(&mut web::ServiceConfig) + Clone {
        let status = self.clone();
        move |cfg: &mut web::ServiceConfig| {
            let me = status.clone();
            cfg.route(
                "/status",
                web::get()
                    .to(|| async { HttpResponse::Ok().content_type("text/html; charset=utf-8").body(PAGE) }),
            )
            .route("/ready", {
                let broker = status.broker.clone();
                web::get().to(move || {
                    let ready = broker.as_ref().is_none_or(|b| b().ready);
                    async move {
                        match ready {
                            true => HttpResponse::Ok().body("ready\n"),
                            false => HttpResponse::ServiceUnavailable()
                                .body("not ready: redis is away or silent\n"),
                        }
                    }
                })
            })
            .route(
                "/status.json",
                web::get().to(move || {
                    let body = me.json();
                    async move {
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .insert_header(("cache-control", "no-store"))
                            .body(body)
                    }
                }),
            );
        }
    }

    fn json(&self) -> String {
        let mut out = format!("{{\"connections\":{},\"rooms\":[", self.handler.connections());
        let mut rooms: Vec<(String, usize)> =
            self.groups.names().iter().map(|n| (n.to_string(), self.groups.count(n))).collect();
        rooms.sort();
        for (i, (name, members)) in rooms.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}{{\"name\":{},\"members\":{members}}}", quote(name));
        }
        out.push_str("],\"nodes\":[");
        for (i, (id, state)) in self.nodes.lock().unwrap().iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}{{\"id\":{},\"state\":\"{state}\"}}", quote(id));
        }
        out.push_str("],\"broker\":");
        match self.broker.as_ref().map(|b| b()) {
            Some(b) => {
                let outage = b.last_outage.map_or("null".into(), |d| d.as_millis().to_string());
                let _ = write!(
                    out,
                    "{{\"ready\":{},\"server\":{},\"reconnects\":{},\"last_outage_ms\":{outage},\"probe_timeouts\":{},\"shards\":[",
                    b.ready,
                    quote(&b.server),
                    b.reconnects,
                    b.probe_timeouts
                );
                for (i, (server, quiet)) in b.shards.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    let _ = write!(
                        out,
                        "{sep}{{\"server\":{},\"quiet_ms\":{}}}",
                        quote(server),
                        quiet.as_millis()
                    );
                }
                out.push_str("]}");
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"totals\":");
        match (self.scrape)() {
            Some(text) => {
                out.push('{');
                for (i, (name, value)) in totals(&text).iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    let _ = write!(out, "{sep}\"{name}\":{value}");
                }
                out.push('}');
            }
            None => out.push_str("null"),
        }
        out.push('}');
        out
    }
}

/// Each `amw_` metric of a Prometheus text, summed over its labels (histograms left out).
fn totals(text: &str) -> BTreeMap<&str, f64> {
    let mut sums = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("amw_")) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = value.filter(|_| !name.ends_with("_bucket") && !name.ends_with("_sum")) {
            *sums.entry(name).or_insert(0.0) += v;
        }
    }
    sums
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
