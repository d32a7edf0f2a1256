//! `WsServer` serves the user's `App` unchanged, and takes each accepted WebSocket's
//! socket over: plain routes, middleware and `app_data` beside the WebSocket route; an
//! upgrade no `WsHandler` takes is answered as the `App` says; another crate's WebSocket
//! route (actix-ws) keeps working; what the client sent right behind its request reaches
//! the target; addresses and `connection_info` are right over TLS too; a handler's bound
//! on connections; shutdown through `WsHandler::shutdown_on` closes with 1001.

mod common;

use std::time::Duration;

use actix_meta_websocket::protocol::Incoming;
use actix_meta_websocket::*;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpRequest, HttpResponse};
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as TMessage;

/// What an `App`'s plain route knows of its request's connection.
async fn info(req: HttpRequest, greeting: web::Data<String>) -> HttpResponse {
    let c = req.connection_info();
    let peer = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    HttpResponse::Ok().body(format!("{} {} {} {peer}", greeting.as_str(), c.scheme(), c.host()))
}

/// An actix-ws echo route: another crate's WebSocket in the same `App`.
async fn actix_ws_echo(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    let (res, mut session, mut stream) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let sent = match msg {
                actix_ws::Message::Text(t) => session.text(t).await,
                actix_ws::Message::Close(reason) => return drop(session.close(reason).await),
                _ => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
    });
    Ok(res)
}

/// A `WsServer` with everything an `App` usually has beside the WebSocket route.
fn full_app(handler: WsHandler, tls: Option<rustls::ServerConfig>) -> TestServer {
    let server = WsServer::new(move || {
        App::new()
            .app_data(web::Data::new("hello".to_owned()))
            .wrap(DefaultHeaders::new().add(("x-app", "yes")))
            .route("/", web::get().to(info))
            .route("/ws", handler.route())
            .route("/actix-ws", web::get().to(actix_ws_echo))
    })
    .workers(1)
    .disable_signals();
    let server = match tls {
        Some(config) => server.bind_rustls_0_23("127.0.0.1:0", config),
        None => server.bind("127.0.0.1:0"),
    }
    .expect("bind");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    TestServer { addr, handle }
}

fn handler(echo: bool) -> (WsHandler, Events) {
    let (worker, rx) = recorder("w", echo);
    (WsHandler::new(options(worker)).unwrap(), rx)
}

/// The response to `request`, read to the end of the connection.
async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
        .await
        .expect("the server closes after answering")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[actix_web::test]
async fn plain_routes_middleware_and_app_data_serve_beside_the_websocket_route() {
    let (h, mut rx) = handler(true);
    let srv = full_app(h, None);
    let mut res = awc::Client::new().get(format!("http://{}/", srv.addr)).send().await.unwrap();
    assert_eq!(res.headers().get("x-app").unwrap(), "yes");
    let body = res.body().await.unwrap();
    assert_eq!(body, format!("hello http {} 127.0.0.1", srv.addr).as_bytes());
    // The 101 went through the middleware too.
    let (mut ws, resp) = tokio_tungstenite::connect_async(srv.url()).await.unwrap();
    assert_eq!(resp.headers().get("x-app").unwrap(), "yes");
    ws.send(TMessage::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text("hi"));
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!("connect") };
    assert_eq!(c.local_addr, Some(srv.addr));
}

#[actix_web::test]
async fn an_upgrade_no_handler_takes_is_answered_as_the_app_says() {
    let (h, _rx) = handler(true);
    let srv = full_app(h, None);
    let to_nowhere = exchange(srv.addr, &upgrade_request_to(srv.addr, "/nowhere", "")).await;
    assert!(to_nowhere.starts_with("HTTP/1.1 404"), "{to_nowhere}");
    assert!(to_nowhere.to_ascii_lowercase().contains("connection: close"), "{to_nowhere}");
    // An upgrade to something else: the plain route answers it, then the connection ends.
    let h2c = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        srv.addr
    );
    let answer = exchange(srv.addr, &h2c).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(&format!("hello http {} 127.0.0.1", srv.addr)), "{answer}");
}

#[actix_web::test]
async fn another_crates_websocket_route_in_the_same_app_keeps_working() {
    let (h, _rx) = handler(true);
    let srv = full_app(h, None);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/actix-ws", srv.addr)).await.unwrap();
    for i in 0..50 {
        ws.send(TMessage::text(format!("m{i}"))).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text(format!("m{i}")));
    }
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
}

#[actix_web::test]
async fn what_the_client_sent_behind_its_request_reaches_the_target() {
    let (h, mut rx) = handler(false);
    let srv = full_app(h, None);
    // The request and two frames in one write: actix-http has read the frames with the
    // head, and they travel with the socket.
    let mut bytes = upgrade_request(srv.addr, "").into_bytes();
    bytes.extend(client_frame(true, 0, 1, b"first"));
    bytes.extend(client_frame(true, 0, 2, b"second"));
    let mut tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    tcp.write_all(&bytes).await.unwrap();
    let Event::Connect(_) = next(&mut rx).await.1 else { panic!("connect") };
    for want in [&b"first"[..], b"second"] {
        let Event::Message(m) = next(&mut rx).await.1 else { panic!("message") };
        assert_eq!(&m.body[..], want);
    }
}

#[actix_web::test]
async fn over_tls_the_addresses_and_connection_info_are_right() {
    let (server_cfg, client_cfg) = tls_pair();
    let (h, mut rx) = handler(true);
    let srv = full_app(h, Some(server_cfg));
    let port = srv.addr.port();
    let client = awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(std::sync::Arc::new(client_cfg.clone())))
        .finish();
    let body = client.get(format!("https://localhost:{port}/")).send().await.unwrap().body().await.unwrap();
    assert_eq!(body, format!("hello https localhost:{port} 127.0.0.1").as_bytes());

    let (worker, mut client_rx) = recorder("client", false);
    let url = url::Url::parse(&format!("wss://localhost:{port}/ws")).unwrap();
    let opts = DialOptions::new(url, Target::from_addr(worker)).tls(std::sync::Arc::new(client_cfg));
    let id = connect(opts).await.expect("wss dial");
    let Event::Connect(server_side) = next(&mut rx).await.1 else { panic!("connect") };
    let Event::Connect(client_side) = next(&mut client_rx).await.1 else { panic!("connect") };
    assert_eq!(server_side.local_addr, Some(srv.addr), "the accepted socket's own address");
    assert_eq!(server_side.remote_addr, client_side.local_addr);
    id.send_wait(Outgoing::text("over tls")).await.unwrap();
    let Event::Message(m) = next(&mut client_rx).await.1 else { panic!("echo") };
    assert_eq!(m.as_text(), Some("over tls"));
}

#[actix_web::test]
async fn a_handler_bounds_its_connections_and_shutdown_closes_them_with_1001() {
    let (worker, mut rx) = recorder("w", false);
    let handler = WsHandler::new(options(worker).max_connections(2)).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let h = handler.clone();
    let server = WsServer::new(move || App::new().route("/ws", h.route()))
        .workers(1)
        .disable_signals()
        .shutdown_signal(handler.shutdown_on(async {
            let _ = stopped.await;
        }))
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = server.addrs()[0];
    let running = actix_web::rt::spawn(server.run());
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(RawClient::connect(addr, "").await.0);
        assert!(matches!(next(&mut rx).await.1, Event::Connect(_)));
    }
    let (status, ..) = http_request(addr, &upgrade_request(addr, "")).await;
    assert_eq!(status, 503, "a third connection is refused");
    let _ = stop.send(());
    for raw in &mut open {
        assert_eq!(raw.expect_close().await, 1001);
    }
    for _ in 0..2 {
        assert_eq!(next_disconnect(&mut rx).await.reason, DisconnectReason::Shutdown);
    }
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the server stopped")
        .unwrap()
        .unwrap();
    assert!(matches!(open[0].recv().await, None | Some(Incoming::Close(_))));
}
