//! Interop with the peers our users' users run: Python `websockets` and Node `ws`, in both
//! directions, without permessage-deflate, with the default deflate settings and with the
//! shared-compressor mode (scripts in tests/peers/). Compression must be negotiated and
//! used both ways: the wire carries far fewer bytes than the messages.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use actix_meta_websocket::protocol::{CloseCode, DeflateConfig};
use actix_meta_websocket::*;
use common::*;

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

fn peer_command(peer: &str) -> Command {
    match peer {
        "python" => {
            let mut c = Command::new("python3");
            c.arg(peers_dir().join("py_peer.py"));
            c
        }
        _ => {
            let mut c = Command::new("node");
            c.arg(peers_dir().join("node_peer.js")).current_dir(peers_dir());
            c
        }
    }
}

struct Peer(Child);
impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peer_server(peer: &str, deflate: bool) -> (Peer, u16) {
    let mut child = peer_command(peer)
        .args(["server", if deflate { "deflate" } else { "none" }])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{peer} peer needs its runtime and library (scripts/test.sh installs them): {e}")
        });
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
        .unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("{peer} server did not start: {line:?}"));
    (Peer(child), port)
}

/// Our server, the peer as client: the peer checks every echo and the close.
fn installed(peer: &str) -> bool {
    if peer == "python" {
        python_websockets()
    } else {
        node_ws()
    }
}

/// Compression was used both ways: the 1 MiB message of the exchange, which compresses
/// well, crossed the wire in far fewer bytes each way.
fn assert_compressed_both_ways(t: &Traffic) {
    assert!(t.bytes_in * 4 < t.message_bytes_in, "the peer did not compress: {t:?}");
    assert!(t.bytes_out * 4 < t.message_bytes_out, "we did not compress: {t:?}");
}

/// The peer as client against our echo server.
async fn peer_client_against_our_server(peer: &'static str, deflate: Option<DeflateConfig>) {
    if !installed(peer) {
        return;
    }
    let (worker, mut rx) = recorder("server", true);
    let mut opts = options(worker).compression(deflate.is_some());
    opts.settings.fragment_size = Some(4096); // our echo of the 1 MiB message goes out fragmented
    opts.settings.deflate = deflate.clone().unwrap_or_default();
    let srv = serve(WsHandler::new(opts).unwrap());
    let url = srv.url();
    let mode = if deflate.is_some() { "deflate" } else { "none" };
    let run = actix_web::rt::task::spawn_blocking(move || {
        peer_command(peer).args(["client", &url, mode]).output().expect("run peer")
    });
    // The last of the exchange's messages: the peer still waits for its echo, so the
    // connection is open and has echoed the 1 MiB message.
    let traffic = loop {
        if let (_, Event::Message(m)) = next(&mut rx).await {
            if m.as_text() == Some("msg 99") {
                break m.id.stats().await.expect("open until the peer closes").traffic;
            }
        }
    };
    let out = run.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{peer} client failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.contains("permessage-deflate"), deflate.is_some(), "{stdout}");
    if deflate.is_some() {
        assert_compressed_both_ways(&traffic);
    }
    let d = next_disconnect(&mut rx).await;
    assert_eq!(d.reason.code(), CloseCode(4001));
}

/// The peer as server (echo), our client driving the same exchange.
async fn our_client_against_peer_server(peer: &'static str, deflate: Option<DeflateConfig>) {
    if !installed(peer) {
        return;
    }
    let (_server, port) = peer_server(peer, deflate.is_some());
    let (worker, mut rx) = recorder("client", false);
    let config = ConnectionSettings {
        fragment_size: Some(1000),
        deflate: deflate.clone().unwrap_or_default(),
        ..ConnectionSettings::default()
    };
    let opts = DialOptions::new(
        url::Url::parse(&format!("ws://127.0.0.1:{port}/")).unwrap(),
        Target::from_addr(worker),
    )
    .compression(deflate.is_some())
    .settings(config);
    let id = connect(opts).await.unwrap();
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    assert_eq!(c.compressed, deflate.is_some());
    let big: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let mut sent =
        vec![Outgoing::text("héllo wörld"), Outgoing::binary(vec![0u8, 1, 255]), Outgoing::binary(big)];
    sent.extend((0..100).map(|i| Outgoing::text(format!("msg {i}"))));
    for m in &sent {
        id.send_wait(m.clone()).await.unwrap();
    }
    for want in &sent {
        let Event::Message(got) = next(&mut rx).await.1 else { panic!("expected a message") };
        assert_eq!((got.kind, &got.body), (want.kind, &want.body));
    }
    if deflate.is_some() {
        assert_compressed_both_ways(&id.stats().await.unwrap().traffic);
    }
    id.close(4001, "done").unwrap();
    let d = next_disconnect(&mut rx).await;
    assert_eq!(
        d.reason,
        DisconnectReason::Closed {
            initiator: Initiator::Local,
            code: CloseCode(4001),
            reason: "done".into()
        }
    );
}

#[actix_web::test]
async fn python_websockets_client_to_our_server() {
    peer_client_against_our_server("python", None).await;
    peer_client_against_our_server("python", Some(DeflateConfig::default())).await;
    peer_client_against_our_server("python", Some(DeflateConfig::shared())).await;
}

#[actix_web::test]
async fn node_ws_client_to_our_server() {
    peer_client_against_our_server("node", None).await;
    peer_client_against_our_server("node", Some(DeflateConfig::default())).await;
    peer_client_against_our_server("node", Some(DeflateConfig::shared())).await;
}

#[actix_web::test]
async fn our_client_to_python_websockets_server() {
    our_client_against_peer_server("python", None).await;
    our_client_against_peer_server("python", Some(DeflateConfig::default())).await;
    our_client_against_peer_server("python", Some(DeflateConfig::shared())).await;
}

#[actix_web::test]
async fn our_client_to_node_ws_server() {
    our_client_against_peer_server("node", None).await;
    our_client_against_peer_server("node", Some(DeflateConfig::default())).await;
    our_client_against_peer_server("node", Some(DeflateConfig::shared())).await;
}
