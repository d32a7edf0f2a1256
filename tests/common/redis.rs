//! A `redis-server` of a test's own on a free loopback port, without persistence unless
//! asked, killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// A `redis-server` of this test's own, stopped when dropped.
pub struct Redis {
    pub port: u16,
    child: Child,
    extra: Vec<String>,
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port()
}

pub fn redis_installed() -> bool {
    let runs = |p: &str| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success());
    super::peer("redis-server and redis-cli", runs("redis-server") && runs("redis-cli"))
}

impl Redis {
    pub fn start(extra: &[&str]) -> Redis {
        Redis::start_on(free_port(), extra)
    }

    /// A redis-server on `port` (one a test reserved with `free_port` and told a node of).
    pub fn start_on(port: u16, extra: &[&str]) -> Redis {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = Redis::spawn(port, &extra);
        let redis = Redis { port, child, extra };
        redis.wait_ready();
        redis
    }

    fn spawn(port: u16, extra: &[String]) -> Child {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server")
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        while self.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_with_input(args, None)
    }

    /// `redis-cli -x`: the last argument is `input`, bytes as they are.
    pub fn cli_with_input(&self, args: &[&str], input: Option<&[u8]>) -> String {
        use std::io::Write;
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some(i) = self.extra.iter().position(|a| a == "--requirepass") {
            cmd.args(["--no-auth-warning", "-a", &self.extra[i + 1]]);
        }
        if input.is_some() {
            cmd.arg("-x");
        }
        let mut child = cmd
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli");
        let mut stdin = child.stdin.take().expect("stdin");
        if let Some(input) = input {
            stdin.write_all(input).expect("write");
        }
        drop(stdin);
        let out = child.wait_with_output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// How many subscribers `channel` has.
    pub fn numsub(&self, channel: &str) -> usize {
        let out = self.cli(&["PUBSUB", "NUMSUB", channel]);
        out.lines().nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    }

    /// Waits until `channel` has `n` subscribers (a join subscribes its node a moment
    /// after it returns).
    pub async fn await_numsub(&self, channel: &str, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.numsub(channel) != n {
            assert!(Instant::now() < deadline, "{channel} never had {n} subscribers");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn restart(&mut self) {
        self.child = Redis::spawn(self.port, &self.extra);
        self.wait_ready();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
