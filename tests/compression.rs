//! permessage-deflate over real sockets with the memory settings: broadcasts in the
//! shared-compressor mode and with context takeover, connections of one thread sharing
//! pooled zlib streams, every direction checked for compression actually used.

mod common;

use actix_meta_websocket::protocol::{DeflateConfig, DeflateMemory};
use actix_meta_websocket::*;
use common::*;

/// Market-feed JSON that differs per call: compresses well, never repeats whole.
fn feed(n: usize, records: usize) -> String {
    let rows: Vec<String> = (0..records)
        .map(|i| {
            let k = n * 7919 + i * 104_729;
            format!(
                r#"{{"symbol":"{}","bid":{}.{:02},"volume":{},"ts":{}}}"#,
                ["ACME", "GLOBEX", "HOOLI", "STARK"][k % 4],
                100 + k % 50,
                k % 100,
                100 * (1 + k % 40),
                1_764_108_000_000u64 + (n * records + i) as u64
            )
        })
        .collect();
    format!("[{}]", rows.join(","))
}

/// A server with `server_deflate`, and `clients` of our own dialling it with the default
/// settings: the server's ids (in connect order) and each client's events.
async fn setup(
    server_deflate: DeflateConfig,
    clients: usize,
) -> (TestServer, Vec<ConnectionId>, Vec<ConnectionId>, Vec<Events>) {
    let (worker, mut server_rx) = recorder("server", false);
    let mut opts = options(worker).compression(true);
    opts.settings.deflate = server_deflate;
    let srv = serve(WsHandler::new(opts).unwrap());
    let (mut server_ids, mut client_ids, mut client_rx) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..clients {
        let (w, mut rx) = recorder("client", false);
        let id = connect(DialOptions::new(srv.url(), Target::from_addr(w)).compression(true)).await.unwrap();
        let Event::Connect(c) = next(&mut rx).await.1 else { panic!("client connect") };
        assert!(c.compressed);
        let Event::Connect(s) = next(&mut server_rx).await.1 else { panic!("server connect") };
        server_ids.push(s.id);
        client_ids.push(id);
        client_rx.push(rx);
    }
    (srv, server_ids, client_ids, client_rx)
}

async fn expect_text(rx: &mut Events, want: &str) {
    let Event::Message(m) = next(rx).await.1 else { panic!("expected a message") };
    assert_eq!(m.as_text(), Some(want));
}

/// Every member of a shared-mode broadcast gets the same compressed frame and inflates
/// it; ordinary messages between broadcasts go on compressing per connection.
#[actix_web::test]
async fn shared_mode_broadcasts_decode_everywhere_and_are_compressed() {
    let (_srv, server_ids, _clients, mut rxs) = setup(DeflateConfig::shared(), 3).await;
    for round in 0..5 {
        let news = PreparedMessage::text(feed(round, 60));
        for id in &server_ids {
            id.send_prepared(&news);
            id.send(feed(round + 100, 30));
        }
        for rx in &mut rxs {
            expect_text(rx, &feed(round, 60)).await;
            expect_text(rx, &feed(round + 100, 30)).await;
        }
    }
    for id in &server_ids {
        let t = id.stats().await.unwrap().traffic;
        assert!(t.bytes_out * 3 < t.message_bytes_out, "not compressed: {t:?}");
    }
}

/// With context takeover a broadcast is compressed by each connection in its own stream,
/// and three connections on one thread pass pooled streams between them correctly, with
/// and without dedicated streams.
#[actix_web::test]
async fn context_takeover_connections_keep_their_own_streams() {
    for memory in [DeflateMemory::Pooled, DeflateMemory::Dedicated] {
        let config = DeflateConfig { memory, ..DeflateConfig::default() };
        let (_srv, server_ids, client_ids, mut rxs) = setup(config, 3).await;
        for round in 0..8 {
            let news = PreparedMessage::text(feed(round, 40));
            for (i, id) in server_ids.iter().enumerate() {
                id.send(feed(round * 10 + i, 20));
                id.send_prepared(&news);
            }
            for (i, rx) in rxs.iter_mut().enumerate() {
                expect_text(rx, &feed(round * 10 + i, 20)).await;
                expect_text(rx, &feed(round, 40)).await;
            }
        }
        for (server, client) in server_ids.iter().zip(&client_ids) {
            let t = server.stats().await.unwrap().traffic;
            // Context takeover: repeated structure across messages shrinks further.
            assert!(t.bytes_out * 5 < t.message_bytes_out, "{memory:?}: {t:?}");
            client.close(1000, "").unwrap();
        }
    }
}

/// The client's side too: what our dialled connections send is compressed, inflated by
/// the server, with pooled streams shared by the clients of this thread.
#[actix_web::test]
async fn dialled_connections_compress_what_they_send() {
    let (worker, mut server_rx) = recorder("server", false);
    let srv = serve(WsHandler::new(options(worker).compression(true)).unwrap());
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (w, _rx) = recorder("client", false);
        ids.push(connect(DialOptions::new(srv.url(), Target::from_addr(w)).compression(true)).await.unwrap());
        let Event::Connect(_) = next(&mut server_rx).await.1 else { panic!("server connect") };
    }
    for round in 0..6 {
        for (i, id) in ids.iter().enumerate() {
            id.send_wait(feed(round * 3 + i, 50)).await.unwrap();
        }
    }
    let mut got = Vec::new();
    while got.len() < 18 {
        if let Event::Message(m) = next(&mut server_rx).await.1 {
            got.push(m.as_text().unwrap().to_owned());
        }
    }
    got.sort();
    let mut want: Vec<String> = (0..18).map(|n| feed(n, 50)).collect();
    want.sort();
    assert_eq!(got, want);
    for id in &ids {
        let t = id.stats().await.unwrap().traffic;
        assert!(t.bytes_out * 3 < t.message_bytes_out, "client did not compress: {t:?}");
    }
}
