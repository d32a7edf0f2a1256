//! Interop with the peers our users' users run: Python `websockets` and Node `ws`, in both
//! directions, with and without permessage-deflate (scripts in tests/peers/).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use actix_meta_websocket::protocol::CloseCode;
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

async fn peer_client_against_our_server(peer: &'static str, deflate: bool) {
    if !installed(peer) {
        return;
    }
    let (worker, mut rx) = recorder("server", true);
    let mut opts = options(worker).compression(deflate);
    opts.settings.fragment_size = Some(4096); // our echo of the 1 MiB message goes out fragmented
    let srv = serve(WsHandler::new(opts).unwrap());
    let url = srv.url();
    let mode = if deflate { "deflate" } else { "none" };
    let out = actix_web::rt::task::spawn_blocking(move || {
        peer_command(peer).args(["client", &url, mode]).output().expect("run peer")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{peer} client failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.contains("permessage-deflate"), deflate, "{stdout}");
    let d = next_disconnect(&mut rx).await;
    assert_eq!(d.reason.code(), CloseCode(4001));
}

/// The peer as server (echo), our client driving the same exchange.
async fn our_client_against_peer_server(peer: &'static str, deflate: bool) {
    if !installed(peer) {
        return;
    }
    let (_server, port) = peer_server(peer, deflate);
    let (worker, mut rx) = recorder("client", false);
    let config = ConnectionSettings { fragment_size: Some(1000), ..ConnectionSettings::default() };
    let opts = DialOptions::new(
        url::Url::parse(&format!("ws://127.0.0.1:{port}/")).unwrap(),
        Target::from_addr(worker),
    )
    .compression(deflate)
    .settings(config);
    let id = connect(opts).await.unwrap();
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    assert_eq!(c.compressed, deflate);
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
    peer_client_against_our_server("python", false).await;
    peer_client_against_our_server("python", true).await;
}

#[actix_web::test]
async fn node_ws_client_to_our_server() {
    peer_client_against_our_server("node", false).await;
    peer_client_against_our_server("node", true).await;
}

#[actix_web::test]
async fn our_client_to_python_websockets_server() {
    our_client_against_peer_server("python", false).await;
    our_client_against_peer_server("python", true).await;
}

#[actix_web::test]
async fn our_client_to_node_ws_server() {
    our_client_against_peer_server("node", false).await;
    our_client_against_peer_server("node", true).await;
}
