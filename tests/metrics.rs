//! The metrics as an operator sees them: the chat example (feature `metrics`, `--metrics
//! ADDR`) scraped every second by a real Prometheus server (Debian's `prometheus`, started
//! here on a free loopback port), a scripted session over real sockets, and Prometheus'
//! HTTP API asked for the exact values of the connection gauge, the message counter, the
//! close counter and the handshakes. (`scripts/test.sh` installs Prometheus and builds the
//! example with every feature.)
#![cfg(feature = "metrics")]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as TCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(30);

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn prometheus_installed() -> bool {
    let found = std::process::Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    common::peer("prometheus (Debian package prometheus)", found)
}

/// The chat example with metrics on: where it chats and where it serves `/metrics`.
async fn chat(bin: std::path::PathBuf) -> (Child, String, String) {
    let mut child = Command::new(bin)
        .args(["--addr", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("examples/chat starts");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut chat, mut metrics) = (None, None);
    while chat.is_none() || metrics.is_none() {
        let line = tokio::time::timeout(WAIT, out.next_line()).await.expect("chat prints its addresses");
        let line = line.expect("its output").expect("a line");
        if let Some(rest) = line.strip_prefix("chat on http://") {
            chat = Some(rest.trim_end_matches('/').to_owned());
        } else if let Some(rest) = line.strip_prefix("metrics on http://") {
            metrics = Some(rest.trim_end_matches("/metrics").to_owned());
        }
    }
    // Later lines (guests joining) are read so that its pipe never fills.
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    (child, chat.unwrap(), metrics.unwrap())
}

/// Prometheus scraping `target` every second, and its address once it is ready.
async fn prometheus(target: &str, dir: &std::path::Path) -> (Child, String) {
    std::fs::create_dir_all(dir).expect("a directory for Prometheus");
    let config = dir.join("prometheus.yml");
    let yml = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: chat\n    static_configs:\n      - targets: ['{target}']\n"
    );
    std::fs::write(&config, yml).expect("prometheus.yml");
    let addr = format!("127.0.0.1:{}", common::redis::free_port());
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus starts");
    let client = awc::Client::default();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(res) = client.get(format!("http://{addr}/-/ready")).send().await {
            if res.status().is_success() {
                return (child, addr);
            }
        }
        assert!(Instant::now() < deadline, "Prometheus did not get ready");
        tokio::time::sleep(Duration::from_millis(100)).await; // polling its readiness endpoint
    }
}

/// The value of an instant query, if it has exactly one series.
async fn query(prom: &str, promql: &str) -> Option<f64> {
    let mut res = awc::Client::default()
        .get(format!("http://{prom}/api/v1/query"))
        .query(&[("query", promql)])
        .ok()?
        .send()
        .await
        .ok()?;
    let body = res.body().await.ok()?;
    let text = std::str::from_utf8(&body).ok()?;
    // {"status":"success","data":{"resultType":"vector","result":[{"metric":{..},"value":[t,"v"]}]}}
    let mut values = text.match_indices("\"value\":[");
    let (at, _) = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let rest = &text[at..];
    let v = rest.split('"').nth(3)?;
    v.parse().ok()
}

/// A guest in the lobby.
async fn guest(chat: &str) -> Ws {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{chat}/ws")).await.expect("a guest connects");
    until(&mut ws, |t| t.contains("you are here")).await;
    ws
}

async fn until(ws: &mut Ws, want: impl Fn(&str) -> bool) -> String {
    let read = async {
        while let Some(m) = ws.next().await {
            if let Message::Text(t) = m.expect("a message") {
                if want(&t) {
                    return t.to_string();
                }
            }
        }
        panic!("closed before the awaited message")
    };
    tokio::time::timeout(WAIT, read).await.expect("the awaited message")
}

/// Waits until Prometheus answers each query with its expected value. Scraped every
/// second, each connection's traffic added at least once a second: the figures settle
/// within a few seconds.
async fn settle(prom: &str, expected: &[(&str, f64)]) {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        seen.clear();
        for (q, _) in expected {
            seen.push(query(prom, q).await);
        }
        if expected.iter().zip(&seen).all(|((_, want), got)| *got == Some(*want)) {
            return;
        }
        assert!(Instant::now() < deadline, "Prometheus has {seen:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(250)).await; // polling Prometheus' API
    }
}

#[actix_rt::test]
async fn prometheus_scrapes_the_exact_connections_messages_and_closes_of_a_session() {
    let Some(bin) = common::example("chat", "cargo build --all-features --example chat") else { return };
    if !prometheus_installed() {
        return;
    }
    let (_chat_process, chat_addr, metrics_addr) = chat(bin).await;
    let dir = std::env::temp_dir().join(format!("amw-prometheus-{}", std::process::id()));
    let (_prometheus, prom) = prometheus(&metrics_addr, &dir).await;

    // Three guests; each says two things, and each hears all six.
    let mut guests = Vec::new();
    for _ in 0..3 {
        guests.push(guest(&chat_addr).await);
    }
    for (i, g) in guests.iter_mut().enumerate() {
        for n in 0..2 {
            g.send(Message::text(format!("g{i} line {n}"))).await.expect("said");
        }
    }
    for g in guests.iter_mut() {
        let mut heard = std::collections::BTreeSet::new();
        while heard.len() < 6 {
            let line = until(g, |t| t.contains(" line ")).await;
            heard.insert(line.rsplit(": ").next().map(str::to_owned));
        }
    }
    // One leaves with a code of its own (counted as 4xxx), and waits for the answer.
    let mut leaving = guests.remove(0);
    let bye = CloseFrame { code: TCode::from(4001), reason: "bye".into() };
    leaving.close(Some(bye)).await.expect("close sent");
    while let Some(Ok(_)) = leaving.next().await {}

    let expected = [
        ("amw_connections{role=\"accepted\"}", 2.0),
        ("amw_messages_received_total{role=\"accepted\"}", 6.0),
        ("amw_closes_total{code=\"4xxx\",initiator=\"peer\"}", 1.0),
        ("amw_handshakes_total{outcome=\"upgraded\"}", 3.0),
        ("amw_group_members", 2.0),
    ];
    settle(&prom, &expected).await;
    // Six broadcasts, each handed to the three guests; and no guest ended but the one.
    let broadcasts = query(&prom, "amw_broadcasts_total").await.expect("broadcasts");
    assert!(broadcasts >= 6.0, "{broadcasts}");
    let ended = query(&prom, "sum(amw_closes_total)").await;
    assert_eq!(ended, Some(1.0));
    let _ = std::fs::remove_dir_all(&dir);
}
