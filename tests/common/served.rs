//! Both servers in plain `cargo test`: every suite that starts a server through these
//! helpers runs all its tests a second time, on `WsServer` (sockets taken over after the
//! upgrade), in a child process of its own test binary with `AMW_SERVER=owned`. A new
//! suite gets both servers with nothing to add anywhere.
//!
//! The child is started by the one test below, which every suite that includes the
//! common helpers has. Suites that start no server (they run the examples as processes,
//! or only dial) are named in `ONE_SERVER`, so that their tests do not run twice for
//! nothing; both directions of that list are checked when the tests run.
//!
//! `AMW_SERVER=owned` or `AMW_SERVER=http` runs one server only (no child). A run filtered
//! to some tests (`cargo test NAME`) leaves out the test that starts the child, so it runs
//! them on `HttpServer` only: `AMW_SERVER=owned cargo test NAME` runs them on `WsServer`.

use std::path::PathBuf;
use std::process::Command;

/// The suites that start no server through these helpers.
const ONE_SERVER: &[&str] = &["cluster_metrics", "examples", "metrics", "tls_flush", "ws_server"];

/// The name of the test that starts the child, skipped in it (no other test has it).
const AGAIN: &str = "every_test_again_on_ws_server";

/// This test binary's suite (the file under tests/).
const SUITE: &str = env!("CARGO_CRATE_NAME");

/// Called by every helper that starts a server. A suite named in `ONE_SERVER` that starts
/// one fails here, since it would silently get only one server. Under scripts/test.sh the
/// suite also leaves its name in the folder `AMW_SERVED` names, which the script checks.
pub fn note() {
    assert!(
        !ONE_SERVER.contains(&SUITE),
        "suite {SUITE} starts a server: take it out of ONE_SERVER in tests/common/served.rs, so it runs on both"
    );
    if let Some(dir) = marks() {
        mark(&dir, SUITE);
    }
}

fn marks() -> Option<PathBuf> {
    std::env::var_os("AMW_SERVED").map(PathBuf::from)
}

fn mark(dir: &std::path::Path, name: &str) {
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(dir.join(name), b""))
        .expect("the mark written");
}

/// Runs this binary's tests again on `WsServer`, in a child process: its failure is this
/// test's failure, with the child's output.
#[test]
fn every_test_again_on_ws_server() {
    if std::env::var_os("AMW_SERVER").is_some() || ONE_SERVER.contains(&SUITE) {
        return; // One server asked for, or this is the child, or the suite serves nothing.
    }
    let served = tempdir();
    let mut child = Command::new(std::env::current_exe().expect("the test binary's path"));
    child.env("AMW_SERVER", "owned").env("AMW_SERVED", &served).args(["--skip", AGAIN]);
    // The child runs every other test, whatever filter this run was given, with as many
    // threads.
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--test-threads") {
        child.args(&args[at..(at + 2).min(args.len())]);
    }
    child.args(args.iter().filter(|a| a.starts_with("--test-threads=")));
    let out = child.output().expect("the test binary started again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "suite {SUITE} on WsServer (AMW_SERVER=owned) failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let started = served.join(SUITE).exists();
    let _ = std::fs::remove_dir_all(&served);
    // Without every peer installed, a serving suite's tests may all have skipped.
    if !started && std::env::var("AMW_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
        panic!(
            "suite {SUITE} started no server on WsServer: name it in ONE_SERVER in tests/common/served.rs, \
             so its tests do not run twice for nothing"
        );
    }
    if let Some(dir) = marks() {
        mark(&dir, &format!("{SUITE}.owned"));
    }
}

/// A fresh folder for the child's mark.
fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("amw-served-{SUITE}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
