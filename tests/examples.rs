//! The examples as their users run them, in processes of their own: `echo_server` over
//! `wss://` with a self-signed certificate, dialled by the crate's client trusting that
//! certificate and nothing else. (`scripts/test.sh` builds the examples first.)

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use actix_meta_websocket::protocol::CloseCode;
use actix_meta_websocket::*;
use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A certificate for localhost and 127.0.0.1, and its key, as PEM files in a directory of
/// this test's own; and a client configuration that trusts that certificate only.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, rustls::ClientConfig) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("a certificate");
    std::fs::create_dir_all(dir).expect("a directory for it");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).expect("cert.pem");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("key.pem");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(made.cert.der().clone()).expect("the root");
    let client =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    (cert, key, client)
}

#[actix_web::test]
async fn echo_server_serves_wss_with_the_certificate_it_is_given() {
    let Some(bin) = example("echo_server", "cargo build --example echo_server") else { return };
    let dir = std::env::temp_dir().join(format!("amw-echo-tls-{}", std::process::id()));
    let (cert, key, client) = self_signed(&dir);
    let mut child = tokio::process::Command::new(bin)
        .args(["--addr", "127.0.0.1:0", "--tls"])
        .args([&cert, &key])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("examples/echo_server starts");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), out.next_line())
        .await
        .expect("echo_server prints where it listens")
        .expect("its output")
        .expect("a line");
    let addr = line.strip_prefix("listening on wss://").and_then(|rest| rest.strip_suffix("/ws"));
    let port = addr.and_then(|a| a.rsplit(':').next()).expect(&line);

    // By name and by address: the certificate covers both.
    for host in ["localhost", "127.0.0.1"] {
        let (worker, mut rx) = recorder("client", false);
        let url = url::Url::parse(&format!("wss://{host}:{port}/ws")).unwrap();
        let opts = DialOptions::new(url, Target::from_addr(worker)).tls(Arc::new(client.clone()));
        let id = connect(opts).await.expect("a wss dial that trusts the server's certificate");
        let Event::Connect(_) = next(&mut rx).await.1 else { panic!("connect") };
        let Event::Message(hello) = next(&mut rx).await.1 else { panic!("the greeting") };
        assert!(hello.as_text().is_some_and(|t| t.starts_with("hello from worker")), "{hello:?}");
        id.send_wait(Outgoing::text("over tls")).await.unwrap();
        let Event::Message(m) = next(&mut rx).await.1 else { panic!("the answer") };
        assert_eq!(m.as_text(), Some("OK over tls"));
        id.send_wait(Outgoing::close(1000, "done")).await.unwrap();
        let d = next_disconnect(&mut rx).await;
        assert_eq!(d.reason.code(), CloseCode::NORMAL);
    }

    // A client that trusts only the usual roots refuses the self-signed certificate.
    let (worker, _rx) = recorder("untrusting", false);
    let url = url::Url::parse(&format!("wss://localhost:{port}/ws")).unwrap();
    let refused = connect(DialOptions::new(url, Target::from_addr(worker))).await;
    assert!(
        refused.is_err_and(|e| e.to_string().contains("certificate")),
        "a dial without the certificate must fail"
    );
    let _ = std::fs::remove_dir_all(dir);
}
