//! Redis Cluster for the tests: three primaries and three replicas, and what the tests
//! ask of it (who serves a slot, which server replicates which).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, Process, Redis, TempDir, WAIT};

impl Redis {
    /// Redis Cluster: three primaries, each with a replica, that fail over within about
    /// 2 to 3 s of a primary's death (node timeout 1 s).
    pub fn cluster(extra: &[&str]) -> Redis {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let servers = (0..6)
            .map(|_| Process { port: free_port(), bus: free_port(), child: None, stopped: false })
            .collect();
        let dir = Some(TempDir::new("cluster"));
        let mut redis = Redis { port: 0, servers, sentinels: vec![], extra, dir, sharded: true };
        for i in 0..6 {
            redis.start_server_anywhere(i);
        }
        redis.port = redis.servers[0].port;
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for s in &redis.servers {
            create.arg(format!("127.0.0.1:{}", s.port));
        }
        if let Some(pass) = redis.password() {
            create.args(["-a", pass, "--no-auth-warning"]);
        }
        let made = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(made.success(), "redis-cli --cluster create failed");
        redis.await_cluster();
        redis
    }

    pub fn is_cluster(&self) -> bool {
        self.sharded
    }

    /// Waits until every running server of the cluster says it is whole and each primary
    /// has a replica in sync.
    pub fn await_cluster(&self) {
        let deadline = Instant::now() + WAIT * 2;
        loop {
            let running: Vec<u16> = self.servers.iter().filter(|s| s.answers()).map(|s| s.port).collect();
            let ok =
                running.iter().all(|p| self.cli_on(*p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"));
            let linked = running.iter().all(|p| {
                let info = self.cli_on(*p, &["INFO", "replication"]);
                info.contains("role:master") || info.contains("master_link_status:up")
            });
            let primaries = self.primary_ports();
            if ok && linked && primaries.len() == 3 {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster never came whole (ok {ok}, linked {linked})");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Under Redis Cluster: the ports of the primaries serving slots, as the first server
    /// that answers sees them.
    pub fn primary_ports(&self) -> Vec<u16> {
        for s in self.servers.iter().filter(|s| s.answers()) {
            let out = self.cli_on(s.port, &["CLUSTER", "NODES"]);
            if out.is_empty() {
                continue;
            }
            let mut ports: Vec<u16> = out
                .lines()
                .filter(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    f.len() > 8 && f[2].contains("master") && !f[2].contains("fail")
                })
                .filter_map(|l| l.split(' ').nth(1)?.split(['@', ':']).nth(1)?.parse().ok())
                .collect();
            ports.sort_unstable();
            return ports;
        }
        Vec::new()
    }

    /// The port of the primary serving `key`'s slot.
    pub fn primary_of(&self, key: &str) -> u16 {
        let slot: u16 = self.cli_on(self.port_alive(), &["CLUSTER", "KEYSLOT", key]).parse().expect("a slot");
        let out = self.cli_on(self.port_alive(), &["CLUSTER", "SLOTS"]);
        let lines: Vec<&str> = out.lines().collect();
        // redis-cli prints each range as: first, last, then the primary's host, port, id...
        let mut i = 0;
        while i + 3 < lines.len() {
            if let (Ok(first), Ok(last)) = (lines[i].parse::<u16>(), lines[i + 1].parse::<u16>()) {
                if (first..=last).contains(&slot) {
                    return lines[i + 3].parse().expect("a port");
                }
            }
            i += 1;
        }
        panic!("no primary serves slot {slot}: {out}");
    }

    /// Under Redis Cluster: the port of a replica of the primary on `primary`.
    pub fn replica_of(&self, primary: u16) -> u16 {
        let linked = format!("master_port:{primary}");
        let replicas = self.servers.iter().filter(|s| s.answers() && s.port != primary);
        replicas
            .map(|s| s.port)
            .find(|p| self.cli_on(*p, &["INFO", "replication"]).contains(&linked))
            .expect("a replica of the primary")
    }

    pub(super) fn port_alive(&self) -> u16 {
        self.servers.iter().find(|s| s.answers()).map_or(self.port, |s| s.port)
    }

    /// The command that publishes on the crate's channels here.
    pub fn publish_command(&self) -> &'static str {
        if self.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// Starts data server `i` on fresh ports until one start answers: between
    /// `free_port` and the server's bind, another test may take a port (a cluster needs
    /// twelve).
    pub(super) fn start_server_anywhere(&mut self, i: usize) {
        for _ in 0..5 {
            self.spawn_server(i);
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                if self.cli_on(self.servers[i].port, &["PING"]) == "PONG" {
                    return;
                }
                let exited =
                    self.servers[i].child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
                if exited {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            self.servers[i].kill();
            self.servers[i].port = free_port();
            self.servers[i].bus = free_port();
        }
        panic!("redis-server {i} never started");
    }
}
