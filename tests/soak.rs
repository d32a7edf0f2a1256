//! Soak: thousands of connections open, exchange and close, with our client against our
//! server, then nothing may be left: no live connection actors, no leaked file
//! descriptors, RSS back near where it started.
//!
//! CI runs the short version (15 s). Longer: `SOAK_SECS=600 cargo test --release --test soak`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_meta_websocket::*;
use common::reliability;
use common::*;

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// RSS after returning freed heap to the OS (glibc keeps freed pages in its arenas,
/// which would read as growth without being held by anything).
fn rss_kib() -> u64 {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: malloc_trim only releases free memory; it touches no live allocation.
    unsafe { malloc_trim(0) };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A count that can be awaited.
#[derive(Default)]
struct Tally {
    count: AtomicU64,
    changed: tokio::sync::Notify,
}

impl Tally {
    fn add(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    fn get(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until the count is at least `n`, at most 30 s; the count then.
    async fn reach(&self, n: u64) -> u64 {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if self.get() >= n {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(30), wait).await;
        self.get()
    }
}

/// A client-side worker: counts echoes and disconnects.
struct Counter {
    echoes: Arc<AtomicU64>,
    disconnects: Arc<Tally>,
}
impl actix::Actor for Counter {
    type Context = actix::Context<Self>;
}
impl actix::Handler<MessageConnect> for Counter {
    type Result = ();
    fn handle(&mut self, _: MessageConnect, _: &mut actix::Context<Self>) {}
}
impl actix::Handler<WsMessage> for Counter {
    type Result = ();
    fn handle(&mut self, _: WsMessage, _: &mut actix::Context<Self>) {
        self.echoes.fetch_add(1, Ordering::Relaxed);
    }
}
impl actix::Handler<MessageDisconnect> for Counter {
    type Result = ();
    fn handle(&mut self, _: MessageDisconnect, _: &mut actix::Context<Self>) {
        self.disconnects.add();
    }
}

/// An echo server whose target's disconnects are counted.
fn echo_server() -> (TestServer, WsHandler, Arc<Tally>) {
    let (server_worker, mut server_rx) = recorder("server", true);
    let server_disconnects = Arc::new(Tally::default());
    let tally = server_disconnects.clone();
    // Drained as it goes, so the recorder's channel does not grow.
    actix_rt::spawn(async move {
        while let Some((_, e)) = server_rx.recv().await {
            if matches!(e, Event::Disconnect(_)) {
                tally.add();
            }
        }
    });
    let handler = WsHandler::new(options(server_worker)).unwrap();
    (serve(handler.clone()), handler, server_disconnects)
}

/// 64 loops of dial, 10 echoed messages and close, for `secs`; how many connections.
async fn churn(url: &url::Url, target: &Target, secs: u64) -> u64 {
    let started = Instant::now();
    let opened = Arc::new(AtomicU64::new(0));
    let mut loops = Vec::new();
    for _ in 0..64 {
        let (url, target, opened) = (url.clone(), target.clone(), opened.clone());
        loops.push(actix_rt::spawn(async move {
            while started.elapsed() < Duration::from_secs(secs) {
                let id = connect(DialOptions::new(url.clone(), target.clone())).await.expect("dial");
                opened.fetch_add(1, Ordering::Relaxed);
                for i in 0..10 {
                    id.send_wait(Outgoing::text(format!("m{i}"))).await.expect("send");
                }
                id.close(1000, "").unwrap();
            }
        }));
    }
    for l in loops {
        l.await.unwrap();
    }
    opened.load(Ordering::Relaxed)
}

#[actix_web::test]
async fn thousands_of_connections_leave_nothing_behind() {
    use actix::Actor;
    let secs: u64 = std::env::var("SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let (srv, handler, server_disconnects) = echo_server();
    let url = url::Url::parse(&srv.url()).unwrap();

    // Warm up once so lazily created runtime state is not counted as a leak.
    let echoes = Arc::new(AtomicU64::new(0));
    let disconnects = Arc::new(Tally::default());
    let counter = Counter { echoes: echoes.clone(), disconnects: disconnects.clone() }.start();
    let target = Target::from_addr(counter);
    let id = connect(DialOptions::new(url.clone(), target.clone())).await.unwrap();
    id.send_wait(Outgoing::text("warm")).await.unwrap();
    id.close(1000, "").unwrap();
    disconnects.reach(1).await;
    server_disconnects.reach(1).await;
    let fds_before = fd_count();
    let rss_before = rss_kib();

    let opened = churn(&url, &target, secs).await;
    // Every connection ends: both sides report their disconnects. The server's actor has
    // left the handler's set before its target hears of its end.
    assert_eq!(disconnects.reach(opened + 1).await, opened + 1, "every client connection reported its end");
    assert_eq!(server_disconnects.reach(opened + 1).await, opened + 1, "and every server connection");
    assert_eq!(handler.connections(), 0, "no live server connection actors");
    let fds_after = fd_count();
    let rss_after = rss_kib();
    assert!(opened > 500, "only {opened} connections in {secs} s");
    assert!(fds_after <= fds_before + 2, "file descriptors: {fds_before} before, {fds_after} after");
    assert!(rss_after < rss_before + 16 * 1024, "RSS: {rss_before} KiB before, {rss_after} KiB after");

    let what = format!("{secs} s of 64 parallel loops: dial, 10 echoed messages, close");
    let figures = [
        ("connections", opened.to_string()),
        ("echoes", echoes.load(Ordering::Relaxed).to_string()),
        ("live_server_connections_after", handler.connections().to_string()),
        ("fds_before", fds_before.to_string()),
        ("fds_after", fds_after.to_string()),
        ("rss_kib_before", rss_before.to_string()),
        ("rss_kib_after", rss_after.to_string()),
    ];
    reliability::record("soak", &what, &figures);
}
