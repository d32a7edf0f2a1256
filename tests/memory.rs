//! What a connection keeps between messages: the buffers a large message grew are given
//! back once the connection goes quiet, on both ends (with the server's sockets owned,
//! everything but the deflate windows). Live heap bytes are counted by this
//! binary's global allocator, so this file holds one test and nothing else runs beside it.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::AtomicIsize;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use actix_meta_websocket::*;
use common::*;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only the byte count is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Incompressible bytes, so compression does not shrink the buffers under test.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Each client sends `body`; the server's worker echoes it. Both events are dropped as
/// soon as they are checked, so no test code holds a message.
async fn echo_each(ids: &[ConnectionId], body: bytes::Bytes, client_rx: &mut Events, server_rx: &mut Events) {
    for id in ids {
        id.send_wait(Outgoing::binary(body.clone())).await.expect("send");
    }
    for rx in [client_rx, server_rx] {
        for _ in ids {
            match next(rx).await.1 {
                Event::Message(m) => assert_eq!(m.body, body),
                other => panic!("{other:?}"),
            }
        }
    }
}

#[actix_web::test]
async fn buffers_a_large_message_grew_are_given_back_when_the_connection_goes_quiet() {
    const CONNS: usize = 4;
    const SIZE: usize = 2 << 20;
    // The quiet check runs with the heartbeat.
    let quick = ConnectionSettings { heartbeat: Some(Duration::from_millis(50)), ..Default::default() };
    let (server_worker, mut server_rx) = recorder("server", true);
    let srv =
        serve(WsHandler::new(options(server_worker).compression(true).settings(quick.clone())).unwrap());
    let (client_worker, mut client_rx) = recorder("client", false);
    let url = url::Url::parse(&srv.url()).unwrap();
    let mut ids = Vec::new();
    for _ in 0..CONNS {
        let opts = DialOptions::new(url.clone(), Target::from_addr(client_worker.clone()))
            .compression(true)
            .settings(quick.clone());
        ids.push(connect(opts).await.expect("dial"));
    }
    for rx in [&mut client_rx, &mut server_rx] {
        for _ in 0..CONNS {
            assert!(matches!(next(rx).await.1, Event::Connect(_)));
        }
    }
    // A first message warms what each thread keeps for all its connections (the pooled
    // zlib streams): only what the connections keep is measured.
    echo_each(&ids, bytes::Bytes::from(noise(1024)), &mut client_rx, &mut server_rx).await;
    let body = bytes::Bytes::from(noise(SIZE));
    let before = LIVE.load(Relaxed);

    echo_each(&ids, body.clone(), &mut client_rx, &mut server_rx).await;
    let after_echo = LIVE.load(Relaxed) - before;

    // Grown and kept, each end would hold a read buffer, an encode buffer and a
    // compression buffer of about 2 MiB per connection: about 50 MiB here.
    // With its socket owned, a connection keeps its deflate windows (4 KiB each way) and
    // little else. Under `HttpServer`, actix-http's dispatcher keeps the high-water marks
    // of its own buffers (about 270 KiB per connection here), which this crate cannot
    // shrink; kept whole, every buffer would hold about 2 MiB per connection.
    let bound = if owned_sockets() { (CONNS * 16 * 1024) as isize } else { (CONNS * SIZE / 2) as isize };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = LIVE.load(Relaxed) - before;
        if held < bound {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{CONNS} quiet connections still hold {held} bytes more than before the echo \
             ({after_echo} right after it; bound {bound})"
        );
        // Nothing announces the release: the count is looked at again shortly.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(ids);
    srv.handle.stop(false).await;
}
