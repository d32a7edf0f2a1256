//! The API a first server and client are written against: a target and a typed value per
//! request, typed JSON, awaiting a connection's end, and a client that comes back.

mod common;

use std::time::Duration;

use actix::{Actor, Addr};
use actix_meta_websocket::client::{Backoff, DialFailed};
use actix_meta_websocket::*;
use actix_web::{web, App, HttpRequest};
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as TMessage;

#[derive(Debug)]
struct User(String);

type Rooms = std::collections::HashMap<String, Addr<Recorder>>;

/// Upgrades to the room named in the path, with the user from a header attached; an
/// unknown room is 404 with a reason that names it.
async fn join_room(
    req: HttpRequest,
    body: web::Payload,
    room: web::Path<String>,
    rooms: web::Data<Rooms>,
    handler: web::Data<WsHandler>,
) -> Result<actix_web::HttpResponse, HandshakeError> {
    let target =
        rooms.get(room.as_str()).ok_or_else(|| HandshakeError::not_found(format!("no room named {room}")))?;
    let name = req.headers().get("x-user").and_then(|v| v.to_str().ok()).unwrap_or("guest");
    let upgrade = Upgrade::new().target(target.clone()).data(User(name.to_owned()));
    handler.upgrade_with(&req, body, upgrade)
}

/// Two rooms, each its own actor, at `/ws/{room}`, on a handler without a pool (every
/// upgrade chooses its room); `/ws` is that handler's plain route, which has no target.
fn rooms_server() -> (TestServer, Events, Events, WsHandler) {
    let (a, a_rx) = recorder("a", true);
    let (b, b_rx) = recorder("b", true);
    let handler = WsHandler::new(HandlerOptions::default()).unwrap();
    let rooms = web::Data::new([("a".to_owned(), a), ("b".to_owned(), b)].into_iter().collect::<Rooms>());
    let h = handler.clone();
    let server = serve_app(1, Some(&h), move || {
        App::new()
            .app_data(rooms.clone())
            .app_data(web::Data::new(handler.clone()))
            .route("/ws/{room}", web::get().to(join_room))
            .route("/ws", handler.route())
    });
    (server, a_rx, b_rx, h)
}

/// The status and body of an upgrade request to `path` that is refused.
async fn refused(srv: &TestServer, path: &str) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let (status, head, mut stream, mut body) =
        http_request(srv.addr, &upgrade_request_to(srv.addr, path, "")).await;
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|n| n.trim().parse::<usize>())
        })
        .expect("a content-length")
        .expect("a number");
    while body.len() < length {
        assert!(stream.read_buf(&mut body).await.unwrap() > 0, "the body was cut short");
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[actix_web::test]
async fn each_request_chooses_its_target_and_attaches_a_typed_value() {
    let (srv, mut a_rx, mut b_rx, _h) = rooms_server();
    for (room, rx, user) in [("b", &mut b_rx, "bo"), ("a", &mut a_rx, "al")] {
        let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            format!("ws://{}/ws/{room}", srv.addr),
        )
        .unwrap();
        req.headers_mut().insert("x-user", user.parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let (name, Event::Connect(c)) = next(rx).await else { panic!() };
        assert_eq!(name, room);
        assert_eq!(c.data::<User>().map(|u| u.0.as_str()), Ok(user));
        // A wrong type is an error that names both types, not a silent None.
        let err = c.data::<String>().unwrap_err();
        assert!(err.expected.ends_with("String") && err.attached.ends_with("User"), "{err}");
        assert_eq!(err.to_string(), "the connection carries User, not String");
        ws.send(TMessage::text("hi")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text("hi"));
        // Every message carries it, through its id.
        let (_, Event::Message(m)) = next(rx).await else { panic!("the message") };
        assert_eq!(m.id.data::<User>().map(|u| u.0.as_str()), Ok(user));
        assert_eq!(m.id.data::<String>().unwrap_err().to_string(), "the connection carries User, not String");
    }
    // A room that does not exist: the route's own answer, before any upgrade.
    assert_eq!(refused(&srv, "/ws/nowhere").await, (404, "no room named nowhere".into()));
    // The plain route of a handler without a pool has no target to give: a server error
    // that says why, not a silent drop.
    let (status, body) = refused(&srv, "/ws").await;
    assert_eq!(status, 500);
    assert!(body.contains("Upgrade::target"), "{body}");
}

#[actix_web::test]
async fn without_an_attached_value_data_says_so() {
    let (worker, mut rx) = recorder("w", false);
    let srv = serve(WsHandler::new(HandlerOptions::new(worker)).unwrap());
    let _ws = tokio_tungstenite::connect_async(srv.url()).await.unwrap();
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    let err = c.data::<User>().unwrap_err();
    assert_eq!(err.attached, "nothing");
    assert!(err.to_string().contains("nothing"), "{err}");
}

#[cfg(feature = "serde")]
#[actix_web::test]
async fn json_goes_out_and_comes_in_typed() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Move {
        x: i32,
        y: i32,
    }
    let (worker, mut rx) = recorder("w", false);
    let srv = serve(WsHandler::new(HandlerOptions::new(worker)).unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(srv.url()).await.unwrap();
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    c.id.send_json(&Move { x: 1, y: -2 }).unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text(r#"{"x":1,"y":-2}"#));
    ws.send(TMessage::text(r#"{"x":3,"y":4}"#)).await.unwrap();
    ws.send(TMessage::text(r#"{"x":3}"#)).await.unwrap();
    let Event::Message(m) = next(&mut rx).await.1 else { panic!() };
    assert_eq!(m.json::<Move>().unwrap(), Move { x: 3, y: 4 });
    let Event::Message(m) = next(&mut rx).await.1 else { panic!() };
    let err = m.json::<Move>().unwrap_err();
    assert!(err.to_string().contains("missing field `y`"), "{err}");
}

#[actix_web::test]
async fn closed_resolves_when_the_connection_has_ended() {
    let (worker, mut rx) = recorder("w", false);
    let srv = serve(WsHandler::new(HandlerOptions::new(worker)).unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(srv.url()).await.unwrap();
    let Event::Connect(c) = next(&mut rx).await.1 else { panic!() };
    let waiter = actix_rt::spawn({
        let id = c.id.clone();
        async move { id.closed().await }
    });
    ws.close(None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("closed() resolved").unwrap();
    assert!(!c.id.is_connected() || c.id.stats().await.is_err());
    // Once ended, it resolves at once.
    tokio::time::timeout(Duration::from_secs(1), c.id.closed()).await.expect("at once");
}

/// A failure recorder for the reconnecting client.
struct Failures(tokio::sync::mpsc::UnboundedSender<DialFailed>);
impl Actor for Failures {
    type Context = actix::Context<Self>;
}
impl actix::Handler<DialFailed> for Failures {
    type Result = ();
    fn handle(&mut self, f: DialFailed, _: &mut actix::Context<Self>) {
        let _ = self.0.send(f);
    }
}

/// A server on `addr` (port 0 for a fresh one).
fn server_on(addr: &str, target: Addr<Recorder>) -> TestServer {
    let handler = WsHandler::new(HandlerOptions::new(target)).unwrap();
    let h = handler.clone();
    serve_app_on(addr, None, 1, Some(&handler), move || App::new().route("/ws", h.route()))
}

#[actix_web::test]
async fn a_reconnecting_client_comes_back_when_the_server_does() {
    let (server_worker, _server_rx) = recorder("server", false);
    let srv = server_on("127.0.0.1:0", server_worker.clone());
    let addr = srv.addr;
    let (client_worker, mut rx) = recorder("client", false);
    let (fail_tx, mut failures) = tokio::sync::mpsc::unbounded_channel();
    let backoff =
        Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(100), ..Backoff::default() };
    let client = reconnect(
        DialOptions::new(srv.url(), client_worker),
        backoff,
        Some(Failures(fail_tx).start().recipient()),
    );

    let Event::Connect(first) = next(&mut rx).await.1 else { panic!() };
    assert_eq!(client.connected().await.as_ref(), Some(&first.id));
    // The server goes away: the connection ends, and dials fail while it is away.
    srv.handle.stop(false).await;
    let d = next_disconnect(&mut rx).await;
    assert_eq!(d.id, first.id);
    let failed = tokio::time::timeout(Duration::from_secs(10), failures.recv()).await.unwrap().unwrap();
    assert!(failed.error.is_retryable(), "{}", failed.error);
    assert!(failed.retry_in.is_some());
    // It comes back on the same address: a new connection, with its own MessageConnect.
    let _back = server_on(&addr.to_string(), server_worker);
    let Event::Connect(second) = next(&mut rx).await.1 else { panic!() };
    assert_ne!(second.id, first.id);
    assert_eq!(client.connected().await.as_ref(), Some(&second.id));
    client.stop();
    let d = next_disconnect(&mut rx).await;
    assert_eq!(d.id, second.id);
}

#[actix_web::test]
async fn a_reconnecting_client_gives_up_on_errors_not_worth_retrying() {
    let (client_worker, _rx) = recorder("client", false);
    let (fail_tx, mut failures) = tokio::sync::mpsc::unbounded_channel();
    let client = reconnect(
        DialOptions::new("http://127.0.0.1:1/not-a-websocket", client_worker),
        Backoff::default(),
        Some(Failures(fail_tx).start().recipient()),
    );
    let failed = tokio::time::timeout(Duration::from_secs(10), failures.recv()).await.unwrap().unwrap();
    assert!(matches!(*failed.error, ConnectError::Url { .. }));
    assert_eq!((failed.attempt, failed.retry_in), (1, None));
    assert_eq!(client.connected().await, None, "given up");
}
