//! The guide: from a first server to a cluster that survives its Redis failing over.
//!
//! Each chapter is a page; every Rust example in it compiles as a doc test, and those that
//! can run on their own do (the cluster's start a `redis-server` when one is installed, and
//! say loudly when they skip). The figures quoted come from scripts in `scripts/`, and say
//! which.
//!
//! 1. [Getting started](ch01_getting_started): a server, a client, a pool of workers;
//!    Ergo's names and ours; the examples.
//! 2. [Serving](ch02_serving): `WsServer` or actix-web's `HttpServer`, TLS, shutdown.
//! 3. [Connections](ch03_connections): targets and typed data, options and defaults,
//!    what is never lost, backpressure.
//! 4. [Groups and presence](ch04_groups): rooms, broadcasts, who is there.
//! 5. [History and recovery](ch05_history): positions, catching up after a reconnect,
//!    and what each refusal asks of a client.
//! 6. [The cluster](ch06_cluster): nodes on Redis or Redis Sentinel, what spans nodes
//!    and what stays local, where messages can be lost and how you learn of it.
//! 7. [Operating](ch07_operating): memory, compression, metrics, the status page.
//! 8. [The protocol layer](ch08_protocol): the sans-IO codec on its own, fuzzing.
//! 9. [Performance and conformance](ch09_performance): measured against the
//!    alternatives, Autobahn, how it compares.

#[doc = include_str!("ch01_getting_started.md")]
pub mod ch01_getting_started {}
#[doc = include_str!("ch02_serving.md")]
pub mod ch02_serving {}
#[doc = include_str!("ch03_connections.md")]
pub mod ch03_connections {}
#[doc = include_str!("ch04_groups.md")]
pub mod ch04_groups {}
#[doc = include_str!("ch05_history.md")]
pub mod ch05_history {}
#[doc = include_str!("ch06_cluster.md")]
pub mod ch06_cluster {}
#[doc = include_str!("ch07_operating.md")]
pub mod ch07_operating {}
#[doc = include_str!("ch08_protocol.md")]
pub mod ch08_protocol {}
#[doc = include_str!("ch09_performance.md")]
pub mod ch09_performance {}
