//! Redis of a test's own on free loopback ports, killed when dropped. Without persistence
//! unless asked.
//!
//! `AMW_REDIS` picks the topology the cluster suites run on (scripts/test.sh runs them on
//! each): `single` (the default) is one `redis-server`; `sentinel` is a primary, a replica
//! and three sentinels watching them, and `url()` is then the sentinels' URL; `cluster` is
//! a Redis Cluster of three primaries and three replicas (node timeout 1 s), and `url()`
//! names its primaries as seeds. `kill` and
//! `restart` take down and bring back every data server, so "Redis away" means the same
//! on both. The HA tests build a `sentinel` set whatever `AMW_REDIS` says, and fail over.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod cluster;

const WAIT: Duration = Duration::from_secs(15);
/// The primary's name for the sentinels.
pub const PRIMARY: &str = "amw";

/// A loopback port nothing listens on now, for a server a test starts later.
///
/// Not one the kernel picks (`:0`): it hands the same ephemeral ports to other tests'
/// `:0` and to every outgoing connection, so between this call and the server's bind the
/// port could be taken (a sentinel once found another test's redis-server on its port).
/// Ports come from below the ephemeral range instead, each handed out once per test
/// binary, from a start that differs between binaries running at once.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Below Linux's ephemeral range (32768 and up) and above the well-known services.
    const FIRST: u32 = 12_000;
    const SPAN: u32 = 20_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = u16::try_from(FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN).expect("below 32768");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn redis_installed() -> bool {
    let runs = |p: &str| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success());
    super::peer("redis-server and redis-cli", runs("redis-server") && runs("redis-cli"))
}

/// A data directory of a test's own, removed at the end.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("amw-{name}-{}-{}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("UTF-8 path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One process: a data server or a sentinel.
struct Process {
    port: u16,
    /// Under Redis Cluster, the cluster bus's port (by default the port + 10000, which may
    /// be taken, or past 65535).
    bus: u16,
    child: Option<Child>,
    /// Stopped (`SIGSTOP`): it would not answer `redis-cli`.
    stopped: bool,
}

impl Process {
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    fn signal(&mut self, sig: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args([sig, &child.id().to_string()]).status();
            self.stopped = sig == "-STOP";
        }
    }

    fn answers(&self) -> bool {
        self.child.is_some() && !self.stopped
    }
}

/// The channel of `group` (its name in its hash tag).
pub fn group_channel(group: &str) -> String {
    format!("amw:g:{{{group}}}")
}

/// Redis for one test: one server, a Sentinel set (servers[0] the first primary), or a
/// Redis Cluster (servers 0 to 2 the first primaries).
pub struct Redis {
    /// The first primary's port.
    pub port: u16,
    servers: Vec<Process>,
    sentinels: Vec<Process>,
    extra: Vec<String>,
    dir: Option<TempDir>,
    sharded: bool,
}

impl Redis {
    /// On the topology `AMW_REDIS` names.
    pub fn start(extra: &[&str]) -> Redis {
        match std::env::var("AMW_REDIS").as_deref() {
            Ok("sentinel") => Redis::sentinel(extra),
            Ok("cluster") => Redis::cluster(extra),
            Ok("single") | Err(_) => Redis::start_on(free_port(), extra),
            Ok(other) => panic!("AMW_REDIS={other}: single, sentinel or cluster"),
        }
    }

    /// One redis-server on `port` (one a test reserved with `free_port` and told a node of).
    pub fn start_on(port: u16, extra: &[&str]) -> Redis {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let servers = vec![Process { port, bus: 0, child: None, stopped: false }];
        let mut redis = Redis { port, servers, sentinels: vec![], extra, dir: None, sharded: false };
        redis.start_server(0);
        redis
    }

    /// A primary, a replica, and three sentinels that fail over within about 2 s of the
    /// primary's death (down after 1 s).
    pub fn sentinel(extra: &[&str]) -> Redis {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let servers = (0..2)
            .map(|_| Process { port: free_port(), bus: free_port(), child: None, stopped: false })
            .collect();
        let sentinels = (0..3)
            .map(|_| Process { port: free_port(), bus: free_port(), child: None, stopped: false })
            .collect();
        let dir = Some(TempDir::new("sentinel"));
        let mut redis = Redis { port: 0, servers, sentinels, extra, dir, sharded: false };
        redis.port = redis.servers[0].port;
        redis.start_server(0);
        redis.start_server(1);
        for i in 0..3 {
            redis.start_sentinel(i);
        }
        redis.await_replicas(1);
        redis
    }

    fn password(&self) -> Option<&str> {
        let i = self.extra.iter().position(|a| a == "--requirepass")?;
        self.extra.get(i + 1).map(String::as_str)
    }

    /// Starts data server `i` again: the first as a primary, the others as its replicas
    /// (the sentinels reconfigure one that comes back after a failover).
    pub fn start_server(&mut self, i: usize) {
        self.spawn_server(i);
        self.await_answer(self.servers[i].port);
    }

    fn spawn_server(&mut self, i: usize) {
        let port = self.servers[i].port;
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--repl-diskless-sync-delay", "0"])
            .args(&self.extra);
        if self.sharded {
            cmd.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"]);
            cmd.args(["--cluster-port", &self.servers[i].bus.to_string()]);
            // A replica promoted when its primary dies, whatever its lag.
            cmd.args(["--cluster-replica-validity-factor", "0"]);
        }
        if let Some(dir) = &self.dir {
            // Each its own files: a replica must not write over the primary's.
            let own = dir.0.join(format!("server-{i}"));
            std::fs::create_dir_all(&own).expect("server dir");
            if !self.extra.iter().any(|a| a == "--dir") || i > 0 {
                cmd.args(["--dir", own.to_str().expect("UTF-8")]);
            }
            if i > 0 && !self.sharded {
                cmd.args(["--replicaof", "127.0.0.1", &self.servers[0].port.to_string()]);
            }
            if let Some(pass) = self.password() {
                cmd.args(["--masterauth", pass]);
            }
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("redis-server");
        self.servers[i].child = Some(child);
        self.servers[i].stopped = false;
    }

    fn start_sentinel(&mut self, i: usize) {
        let dir = self.dir.as_ref().expect("a sentinel set").0.clone();
        let conf = dir.join(format!("sentinel-{i}.conf"));
        let mut text = format!(
            "port {}\nbind 127.0.0.1\nsentinel resolve-hostnames no\n\
             sentinel monitor {PRIMARY} 127.0.0.1 {} 2\n\
             sentinel down-after-milliseconds {PRIMARY} 1000\n\
             sentinel failover-timeout {PRIMARY} 4000\nsentinel parallel-syncs {PRIMARY} 1\n",
            self.sentinels[i].port, self.servers[0].port
        );
        if let Some(pass) = self.password() {
            text.push_str(&format!("sentinel auth-pass {PRIMARY} {pass}\n"));
        }
        std::fs::write(&conf, text).expect("sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        self.sentinels[i].child = Some(child);
        self.await_answer(self.sentinels[i].port);
    }

    fn await_answer(&self, port: u16) {
        let deadline = Instant::now() + WAIT;
        while !matches!(self.cli_on(port, &["PING"]).as_str(), "PONG" | "NOAUTH Authentication required.") {
            assert!(Instant::now() < deadline, "redis-server on {port} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every sentinel knows `n` replicas of the primary and the replicas are
    /// in sync: only then can a failover pick one.
    pub fn await_replicas(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            let primary = self.primary_port();
            let linked = self
                .servers
                .iter()
                .filter(|s| s.port != primary && s.child.is_some())
                .all(|s| self.cli_on(s.port, &["INFO", "replication"]).contains("master_link_status:up"));
            let known = self.sentinels.iter().filter(|s| s.child.is_some()).all(|s| {
                let out = self.cli_on(s.port, &["SENTINEL", "replicas", PRIMARY]);
                usable_replicas(&out) >= n
            });
            if linked && known {
                return;
            }
            let views: Vec<String> = self
                .sentinels
                .iter()
                .map(|s| self.cli_on(s.port, &["SENTINEL", "replicas", PRIMARY]))
                .collect();
            assert!(
                Instant::now() < deadline,
                "the replicas never linked up (primary {primary}, linked {linked}, known {known}): {views:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_sentinel(&self) -> bool {
        !self.sentinels.is_empty()
    }

    /// The URL a node joins by, with the password when the servers ask for one.
    pub fn url(&self) -> String {
        let auth = self.password().map(|p| format!(":{p}@")).unwrap_or_default();
        if self.sharded {
            let hosts: Vec<String> = self.servers.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
            return format!("redis+cluster://{auth}{}", hosts.join(","));
        }
        if !self.is_sentinel() {
            return format!("redis://{auth}127.0.0.1:{}", self.port);
        }
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        format!("redis+sentinel://{auth}{}/{PRIMARY}", hosts.join(","))
    }

    /// The port of the primary as the sentinels name it, the newest view first (the first
    /// server's without sentinels).
    pub fn primary_port(&self) -> u16 {
        if self.sharded {
            // `redis-cli -c` takes a keyed command on to its shard.
            return self.port_alive();
        }
        // The newest view, as a node takes it: the highest config epoch among the sentinels
        // that answer (one that has not heard of a failover yet names the old primary).
        let views = self.sentinels.iter().filter(|s| s.child.is_some()).filter_map(|s| {
            let out = self.cli_on(s.port, &["SENTINEL", "master", PRIMARY]);
            let lines: Vec<&str> = out.lines().collect();
            Some((field::<u64>(&lines, "config-epoch")?, field::<u16>(&lines, "port")?))
        });
        views.max_by_key(|&(epoch, _)| epoch).map_or(self.port, |(_, port)| port)
    }

    /// Data server `i`'s port.
    pub fn server_port(&self, i: usize) -> u16 {
        self.servers[i].port
    }

    /// Which data server is on `port`.
    pub fn server_at(&self, port: u16) -> usize {
        self.servers.iter().position(|s| s.port == port).expect("one of ours")
    }

    /// `redis-cli` against the primary.
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_on(self.primary_port(), args)
    }

    /// `redis-cli` against the server (or sentinel) on `port`.
    pub fn cli_on(&self, port: u16, args: &[&str]) -> String {
        self.cli_with_input_on(port, args, None)
    }

    /// `redis-cli -x`: the last argument is `input`, bytes as they are.
    pub fn cli_with_input(&self, args: &[&str], input: Option<&[u8]>) -> String {
        self.cli_with_input_on(self.primary_port(), args, input)
    }

    fn cli_with_input_on(&self, port: u16, args: &[&str], input: Option<&[u8]>) -> String {
        use std::io::Write;
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-p", &port.to_string()]);
        if self.sharded {
            // Keyed commands go to the key's shard.
            cmd.arg("-c");
        }
        let is_sentinel = self.sentinels.iter().any(|s| s.port == port);
        if let (Some(pass), false) = (self.password(), is_sentinel) {
            cmd.args(["--no-auth-warning", "-a", pass]);
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

    /// How many subscribers `channel` has on the primary (under Redis Cluster, on the
    /// primary of its shard, as a shard channel).
    pub fn numsub(&self, channel: &str) -> usize {
        let out = if self.sharded {
            self.cli_on(self.primary_of(channel), &["PUBSUB", "SHARDNUMSUB", channel])
        } else {
            self.cli(&["PUBSUB", "NUMSUB", channel])
        };
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

    /// Kills every data server (the sentinels stay): Redis is away.
    pub fn kill(&mut self) {
        self.servers.iter_mut().for_each(Process::kill);
    }

    /// Starts every data server again, the first as the primary.
    pub fn restart(&mut self) {
        for i in 0..self.servers.len() {
            self.start_server(i);
        }
        if self.is_sentinel() {
            self.await_replicas(1);
        }
        if self.sharded {
            self.await_cluster();
        }
    }

    /// Kills data server `i` alone (`kill -9`).
    pub fn kill_server(&mut self, i: usize) {
        self.servers[i].kill();
    }

    /// Stops (`SIGSTOP`) or resumes (`SIGCONT`) data server `i`.
    pub fn signal_server(&mut self, i: usize, sig: &str) {
        self.servers[i].signal(sig);
    }

    /// Kills sentinel `i`.
    pub fn kill_sentinel(&mut self, i: usize) {
        self.sentinels[i].kill();
    }

    /// `redis-cli` against sentinel `i`.
    pub fn sentinel_cli(&self, i: usize, args: &[&str]) -> String {
        self.cli_on(self.sentinels[i].port, args)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.servers.iter_mut().chain(self.sentinels.iter_mut()).for_each(Process::kill);
    }
}

/// A field of a sentinel's answer, given as key and value on lines of their own.
fn field<T: std::str::FromStr>(lines: &[&str], name: &str) -> Option<T> {
    lines.chunks(2).find(|kv| kv[0] == name)?.get(1)?.parse().ok()
}

/// The replicas a sentinel could promote, from its `SENTINEL replicas` answer (key and
/// value on lines of their own): linked to it and to their primary. A replica it has only
/// heard of from the primary is listed too, `slave,disconnected` with no run id, and a
/// `SENTINEL FAILOVER` then answers `NOGOODSLAVE`.
fn usable_replicas(out: &str) -> usize {
    let lines: Vec<&str> = out.lines().collect();
    let mut usable = 0;
    for replica in lines.split(|l| *l == "name").skip(1) {
        let field =
            |key: &str| replica.iter().position(|l| *l == key).and_then(|i| replica.get(i + 1)).copied();
        if field("flags") == Some("slave") && field("master-link-status") == Some("ok") {
            usable += 1;
        }
    }
    usable
}
