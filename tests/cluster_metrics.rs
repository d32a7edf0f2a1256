//! What an operator scraping a node's metrics sees of Redis Cluster: the `cluster_chat`
//! example (features `cluster` and `metrics`, `--metrics ADDR`) on three primaries and
//! three replicas, its `/metrics` read over loopback. Each primary's link is up and its
//! shard heard within a few heartbeats; a primary killed goes down in the metrics once
//! the node has moved, and the replica promoted in its place comes up.
#![cfg(all(feature = "cluster", feature = "metrics"))]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::cluster::{cluster_chat, process_with};
use common::redis::{redis_installed, Redis};

/// Redis Cluster fails over in about 2 to 3 s here (node timeout 1 s).
const WAIT: Duration = Duration::from_secs(30);

/// Each shard's gauges in the Prometheus text at `at`: server to (up, quiet seconds).
async fn shard_gauges(at: &str) -> HashMap<String, (Option<f64>, Option<f64>)> {
    let mut res = awc::Client::default().get(format!("http://{at}")).send().await.expect("metrics answer");
    let body = res.body().await.expect("the text");
    let text = std::str::from_utf8(&body).expect("UTF-8");
    let mut out: HashMap<String, (Option<f64>, Option<f64>)> = HashMap::new();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        for (name, up) in [("amw_cluster_shard_up{", true), ("amw_cluster_shard_quiet_seconds{", false)] {
            let Some(labels) = series.strip_prefix(name) else { continue };
            let server = labels.split('"').nth(1).expect("a server label").to_owned();
            let gauges = out.entry(server).or_default();
            if up {
                gauges.0 = Some(value);
            } else {
                gauges.1 = Some(value);
            }
        }
    }
    out
}

/// Waits until the gauges at `at` satisfy `ok`; what they were, if they never do.
async fn until(at: &str, what: &str, ok: impl Fn(&HashMap<String, (Option<f64>, Option<f64>)>) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let gauges = shard_gauges(at).await;
        if ok(&gauges) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} never showed: {gauges:?}");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling the scrape endpoint
    }
}

fn server(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

#[actix_rt::test]
async fn each_shard_shows_in_the_metrics_and_a_primary_failed_over_goes_down() {
    if !redis_installed() {
        return;
    }
    let Some(bin) = cluster_chat() else { return };
    let mut redis = Redis::cluster(&[]);
    let node = process_with(&redis, bin, &["--metrics", "127.0.0.1:0"]).await;
    let at = node.metrics.clone().expect("it serves metrics");
    let primaries = redis.primary_ports();
    assert_eq!(primaries.len(), 3);
    // Heartbeats every 100 ms, each to one shard, and a probe to a shard quiet for 150 ms:
    // no shard's subscription is quiet for long.
    let heard = |ports: &[u16], g: &HashMap<String, (Option<f64>, Option<f64>)>| {
        ports
            .iter()
            .all(|&p| g.get(&server(p)).is_some_and(|&(up, quiet)| up == Some(1.0) && quiet < Some(0.5)))
    };
    until(&at, "every primary up and heard", |g| heard(&primaries, g)).await;
    let gauges = shard_gauges(&at).await;
    assert_eq!(gauges.len(), 3, "the primaries alone: {gauges:?}");

    let old = primaries[0];
    redis.kill_server(redis.server_at(old));
    let deadline = Instant::now() + WAIT;
    let now = loop {
        let now = redis.primary_ports();
        if now.len() == 3 && !now.contains(&old) {
            break now;
        }
        assert!(Instant::now() < deadline, "the cluster never failed over from {old}: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    until(&at, "the killed primary down and its replica up", |g| {
        g.get(&server(old)).is_some_and(|&(up, _)| up == Some(0.0)) && heard(&now, g)
    })
    .await;
}
