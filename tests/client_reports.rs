//! What the client tells, as a user's app meets it: a refused dial says what the server
//! said; no credential (userinfo, query) reaches a log line, a `Debug` output or an error;
//! reasons read as words; `MessageConnect` gives its query and path.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use actix_meta_websocket::client::Backoff;
use actix_meta_websocket::*;
use actix_web::{web, App, HttpRequest, HttpResponse};
use common::*;

/// A route that refuses upgrades without `token=good`, saying why, and mounts `handler`.
fn guarded(handler: WsHandler) -> TestServer {
    serve_app(1, Some(&handler.clone()), move || {
        let handler = handler.clone();
        App::new().route(
            "/ws/lobby",
            web::get().to(move |req: HttpRequest, body: web::Payload| {
                let handler = handler.clone();
                async move {
                    if !req.query_string().split('&').any(|kv| kv == "token=good") {
                        return Ok(HttpResponse::Unauthorized().body("bad or missing token"));
                    }
                    handler.upgrade(&req, body)
                }
            }),
        )
    })
}

#[actix_web::test]
async fn a_refused_dial_says_what_the_server_said() {
    let (worker, _rx) = recorder("client", false);
    let (server_worker, _srx) = recorder("server", true);
    let srv = guarded(WsHandler::new(options(server_worker)).unwrap());
    let url = format!("ws://{}/ws/lobby?token=bad", srv.addr);
    match connect(DialOptions::new(url, Target::from_addr(worker.clone()))).await {
        Err(ConnectError::Status { status: 401, body }) => assert_eq!(body, "bad or missing token"),
        other => panic!("{other:?}"),
    }
    // The same server lets a good token in.
    let url = format!("ws://{}/ws/lobby?token=good", srv.addr);
    connect(DialOptions::new(url, Target::from_addr(worker))).await.expect("let in");
}

#[actix_web::test]
async fn a_refusal_over_wss_and_a_chunked_or_long_one_are_read_too() {
    let (server_cfg, client_cfg) = tls_pair();
    let (worker, _rx) = recorder("client", false);
    let srv = serve_app_on("127.0.0.1:0", Some(server_cfg), 1, None, move || {
        App::new().route(
            "/ws",
            web::get().to(|| async {
                // Streamed: chunked, and past the 1 KiB kept.
                let long = format!("go away {}", "x".repeat(3000));
                let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(web::Bytes::from(long))]);
                HttpResponse::Forbidden().streaming(chunks)
            }),
        )
    });
    let url = format!("wss://localhost:{}/ws", srv.addr.port());
    let opts = DialOptions::new(url, Target::from_addr(worker)).tls(Arc::new(client_cfg));
    match connect(opts).await {
        Err(ConnectError::Status { status: 403, body }) => {
            assert!(body.starts_with("go away xxx"), "{body}");
            assert_eq!(body.len(), 1024);
        }
        other => panic!("{other:?}"),
    }
}

/// Everything the crate logs while `f` runs on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[actix_web::test]
async fn no_credential_reaches_a_log_line_a_debug_output_or_an_error() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("actix_meta_websocket=trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (worker, mut rx) = recorder("client", false);
    let (server_worker, _srx) = recorder("server", true);
    let srv = guarded(WsHandler::new(options(server_worker)).unwrap());
    let secret = |token: &str| format!("ws://me:pa55word@{}/ws/lobby?token={token}&room=1", srv.addr);
    let mut seen = String::new();

    // A refused reconnecting client: its warning names the URL.
    let refused = DialOptions::new(secret("s3cret"), Target::from_addr(worker.clone()));
    seen += &format!("{refused:?}\n");
    let client = reconnect(refused, Backoff { max_attempts: Some(1), ..Backoff::default() }, None);
    assert_eq!(client.connected().await, None, "gave up");
    // A connection that is let in, then closes: its log lines name its URI.
    let opts = DialOptions::new(secret("good"), Target::from_addr(worker));
    let id = connect(opts).await.expect("let in");
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!("connect") };
    assert_eq!((c.query(), c.path()), ("token=good&room=1", "/ws/lobby"), "the target reads its own query");
    seen += &format!("{c:?}\n");
    id.close(1000, "done").unwrap();
    let d = next_disconnect(&mut rx).await;
    assert!(
        d.reason.to_string().starts_with("closed by this side with 1000 (normal closure)"),
        "{}",
        d.reason
    );
    // Errors that name the URL.
    let http = secret("s3cret").replace("ws://", "http://");
    let bad = connect(DialOptions::new(http, Target::from_addr(recorder("x", false).0))).await;
    seen += &format!("{:?} {}\n", bad.as_ref().err(), bad.as_ref().err().unwrap());
    seen += &logs.text();
    assert!(seen.contains("token=***"), "the key shows, not its value:\n{seen}");
    for leak in ["s3cret", "pa55word", "token=good", "room=1"] {
        assert!(!seen.contains(leak), "{leak} leaked:\n{seen}");
    }
}
