//! Clear errors instead of quiet surprises: settings that cannot work, close codes that
//! may not be sent, the addresses and counters a connection reports, and the timeout a
//! dial reports.

mod common;

use std::time::Duration;

use actix_meta_websocket::protocol::{CloseCode, Decoder, Incoming, Limits, Role};
use actix_meta_websocket::*;
use actix_web::App;
use common::*;

#[actix_web::test]
async fn settings_that_cannot_work_are_refused_with_their_field() {
    let (worker, _rx) = recorder("w", false);
    let mut opts = options(worker.clone());
    opts.settings.max_in_flight_bytes = 0;
    let err = WsHandler::new(opts).unwrap_err();
    assert_eq!(err.field, "max_in_flight_bytes");
    assert!(err.to_string().contains("max_in_flight_bytes"), "{err}");

    let url = url::Url::parse("ws://127.0.0.1:1/ws").unwrap();
    let config = ConnectionSettings { max_write_buffer: 0, ..Default::default() };
    match connect(DialOptions::new(url, Target::from_addr(worker)).settings(config)).await {
        Err(ConnectError::Config(e)) => assert_eq!(e.field, "max_write_buffer"),
        other => panic!("{other:?}"),
    }
}

#[actix_web::test]
async fn close_codes_that_may_not_be_sent_are_refused_and_a_bare_close_is_possible() {
    let (worker, mut rx) = recorder("w", false);
    let srv = serve(WsHandler::new(options(worker)).unwrap());
    let (mut raw, _) = RawClient::connect(srv.addr, "").await;
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
        assert!(
            matches!(c.id.close(code, "no"), Err(WriteError::Invalid(_))),
            "close({code}) must be refused at the call"
        );
    }
    // The awaitable form refuses the same codes when it writes.
    let refused = c.id.send_wait(Outgoing::close(CloseCode(1015), "tls")).await;
    assert!(matches!(refused, Err(WriteError::Invalid(_))), "{refused:?}");
    // Nothing was sent meanwhile; the connection is open.
    raw.send_raw(&client_frame(true, 0, 9, b"still there?")).await;
    assert_eq!(raw.recv().await, Some(Incoming::Pong("still there?".into())));
    // A close without a code: the peer sees an empty close frame.
    c.id.close_bare();
    assert_eq!(raw.recv().await, Some(Incoming::Close(None)));
    raw.send_raw(&client_frame(true, 0, 8, b"")).await;
    let d = next_disconnect(&mut rx).await;
    assert!(
        matches!(d.reason, DisconnectReason::Closed { code: CloseCode::NO_STATUS, .. }),
        "{:?}",
        d.reason
    );
}

#[actix_web::test]
async fn message_connect_reports_the_accepted_sockets_local_address() {
    // A wildcard bind, reached through 127.0.0.2: the listener is 0.0.0.0:port, the
    // accepted socket 127.0.0.2:port.
    let (worker, mut rx) = recorder("w", false);
    let handler = WsHandler::new(options(worker)).unwrap();
    let h = handler.clone();
    let srv = serve_app_on("0.0.0.0:0", None, 1, Some(&handler), move || App::new().route("/ws", h.route()));
    let (port, handle) = (srv.addr.port(), srv.handle);
    let addr: std::net::SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let (_raw, _) = RawClient::connect(addr, "").await;
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    assert_eq!(c.local_addr, Some(addr));
    assert_eq!(c.id.stats().await.unwrap().local_addr, Some(addr));
    handle.stop(false).await;
}

#[actix_web::test]
async fn stats_report_message_bytes_and_wire_bytes() {
    let (worker, mut rx) = recorder("w", true);
    let srv = serve(WsHandler::new(options(worker).compression(true)).unwrap());
    let (mut raw, _) = RawClient::connect(srv.addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    assert!(c.compressed);
    let deflate = actix_meta_websocket::protocol::DeflateParams::default();
    raw.decoder = Decoder::new(Role::Client, Limits::default(), Some(&deflate));
    // 4 KiB of repetitive text in 4 KiB of frame payload, uncompressed from the client;
    // the echo goes back compressed.
    let text = "abcd".repeat(1024);
    raw.send_raw(&client_frame(true, 0, 1, text.as_bytes())).await;
    let Some(Incoming::Text(echo)) = raw.recv().await else { panic!() };
    assert_eq!(echo, text.as_bytes());
    let s = c.id.stats().await.unwrap();
    assert_eq!((s.traffic.messages_in, s.traffic.message_bytes_in), (1, 4096));
    assert_eq!((s.traffic.messages_out, s.traffic.message_bytes_out), (1, 4096));
    // Wire bytes: a frame header and mask more in, far fewer out (deflated).
    assert_eq!(s.traffic.bytes_in, 4096 + 4 + 4);
    assert!(s.traffic.bytes_out < 200, "{s:?}");
}

#[actix_web::test]
async fn a_callers_client_that_times_out_first_reports_its_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (worker, _rx) = recorder("client", false);
    let client = awc::Client::builder().timeout(Duration::from_millis(300)).finish();
    let opts =
        DialOptions::new(url::Url::parse(&format!("ws://{addr}/")).unwrap(), Target::from_addr(worker))
            .client(client)
            .handshake_timeout(Duration::from_secs(30));
    match connect(opts).await {
        Err(ConnectError::Timeout(t)) => {
            assert!(t >= Duration::from_millis(300) && t < Duration::from_secs(30), "{t:?}")
        }
        other => panic!("{other:?}"),
    }
    drop(listener);
}
