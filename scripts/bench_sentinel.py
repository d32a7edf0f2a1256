#!/usr/bin/env python3
"""What Redis Sentinel, or Redis Cluster, costs a healthy cluster, against one redis-server
in the same run.

    python3 scripts/bench_sentinel.py [--topology sentinel|cluster] [--rounds 3] [--secs 4]

Alternating rounds on one redis-server and on a Sentinel set (a primary, a replica, three
sentinels; every Redis process pinned to CPU 0 with the servers, the load generator on
CPU 1), with scripts/bench_cluster.py's measurements:

- cross-node send latency (`loadgen relay`, 64 B at 1,000/s through two nodes);
- fan-out over three nodes (one group of 10,000 members, 64 B, 4 in flight): deliveries
  per second and CPU per delivery of the servers and the primary, and of the replica and
  sentinels besides;
- idle: three nodes, 300 members in 100 groups on one of them, nothing sent for `--secs`: the
  commands per second the primary runs (`INFO commandstats`), and how many of them are
  `ROLE`, the check a node makes at every heartbeat under Sentinel.

With `--topology cluster`: three primaries and three replicas, all on CPU 0; CPU counts
every primary, commands are summed over the primaries, and the probes (an `SPUBLISH` to a
shard that has been quiet for a heartbeat and a half, on a channel every node shares) and
the map of slots read again (`CLUSTER SLOTS`, every tenth heartbeat) take the place of
`ROLE`. The probes are counted as the `SPUBLISH`es beyond the heartbeats (one per node per
second, the default).

Prints medians and the Sentinel (or Cluster)/single ratios; writes bench/sentinel.md (or
bench/redis-cluster.md). Loopback only.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_cluster as bc  # noqa: E402
from bench import ROOT, free_port, write_block  # noqa: E402

PRIMARY = "amw"


class Sentinel(bc.Redis):
    """A primary, a replica and three sentinels, all on CPU 0; `proc` is the primary."""

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="amw-sentinel-bench-")
        self.extra = []
        base = ["taskset", "-c", "0", "redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--repl-diskless-sync-delay", "0", "--dir", self.dir]
        self.proc = subprocess.Popen(base + ["--port", str(self.port), "--dbfilename", "p.rdb"],
                                     stdout=subprocess.DEVNULL)
        self.wait(lambda: self.cli("PING") == "PONG", "primary started")
        replica_port = free_port()
        self.extra.append(subprocess.Popen(base + ["--port", str(replica_port), "--dbfilename", "r.rdb",
                                                   "--replicaof", "127.0.0.1", str(self.port)],
                                           stdout=subprocess.DEVNULL))
        self.sentinel_ports = [free_port() for _ in range(3)]
        for p in self.sentinel_ports:
            conf = os.path.join(self.dir, f"s{p}.conf")
            with open(conf, "w") as f:
                f.write(f"port {p}\nbind 127.0.0.1\nsentinel monitor {PRIMARY} 127.0.0.1 {self.port} 2\n"
                        f"sentinel down-after-milliseconds {PRIMARY} 1000\n")
            self.extra.append(subprocess.Popen(["taskset", "-c", "0", "redis-server", conf, "--sentinel"],
                                               stdout=subprocess.DEVNULL))
        self.wait(lambda: all(self.cli_on(p, "SENTINEL", "get-master-addr-by-name", PRIMARY).count("\n") == 1
                              for p in self.sentinel_ports), "sentinels up")

    def cli_on(self, port, *args):
        return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True).stdout.strip()

    def url(self):
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + f"/{PRIMARY}"

    def kill(self):
        for p in [self.proc] + self.extra:
            p.kill()
            p.wait()


class Sharded(bc.Redis):
    """Redis Cluster: three primaries and three replicas, all on CPU 0; `proc` is the
    first server."""

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="amw-cluster-bench-")
        self.ports = [self.port] + [free_port() for _ in range(5)]
        self.procs = []
        for p in self.ports:
            own = os.path.join(self.dir, str(p))
            os.makedirs(own)
            self.procs.append(subprocess.Popen(
                ["taskset", "-c", "0", "redis-server", "--port", str(p), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--repl-diskless-sync-delay", "0", "--dir", own, "--cluster-enabled", "yes",
                 "--cluster-node-timeout", "1000", "--cluster-port", str(free_port())], stdout=subprocess.DEVNULL))
        for p in self.ports:
            self.wait(lambda: self.cli_on(p, "PING") == "PONG", "cluster node started")
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
                        "--cluster-replicas", "1", "--cluster-yes"], check=True, capture_output=True)
        self.wait(lambda: all("cluster_state:ok" in self.cli_on(p, "CLUSTER", "INFO") for p in self.ports) and
                  len(self.primaries()) == 3, "cluster whole", step=0.05)
        self.proc = self.procs[0]

    def cli_on(self, port, *args):
        return subprocess.run(["redis-cli", "-c", "-p", str(port), *args], capture_output=True, text=True).stdout.strip()

    def cli(self, *args):
        return self.cli_on(self.port, *args)

    def primaries(self):
        return [p for p in self.ports if "role:master" in self.cli_on(p, "INFO", "replication")]

    def pids(self):
        return [proc.pid for p, proc in zip(self.ports, self.procs) if p in self.primaries()]

    def numsub(self, channel):
        total = 0
        for p in self.primaries():
            lines = self.cli_on(p, "PUBSUB", "SHARDNUMSUB", channel).splitlines()
            total += int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else 0
        return total

    def presence(self, group):
        return sum(int(self.cli_on(p, "HLEN", k) or 0) for p in self.primaries()
                   for k in self.cli_on(p, "KEYS", f"amw:m:{{{group}}}:*").splitlines() if k)

    def url(self):
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def kill(self):
        for p in self.procs:
            p.kill()
            p.wait()


def commandstats(redis):
    """Calls per command so far, on the primary (every primary under Redis Cluster)."""
    out = {}
    ports = redis.primaries() if hasattr(redis, "primaries") else [None]
    for port in ports:
        info = redis.cli("INFO", "commandstats") if port is None else redis.cli_on(port, "INFO", "commandstats")
        for line in info.splitlines():
            if line.startswith("cmdstat_"):
                name, rest = line[len("cmdstat_"):].split(":", 1)
                out[name] = out.get(name, 0) + int(rest.split("calls=")[1].split(",")[0])
    return out


def idle(redis_cls, secs):
    """Commands per second on the primary under three idle nodes, one with members in 100 groups."""
    redis = redis_cls()
    procs, urls = bc.start_nodes(3, redis, workers=1)
    try:
        lg = bc.loadgen("hold", urls[:1], ["--conns", "300"], secs + 30)
        bc.ready(lg, "hold")
        time.sleep(2)
        before = commandstats(redis)
        time.sleep(secs)
        after = commandstats(redis)
        lg.kill()
        total = sum(after.values()) - sum(before.values())
        # Under Redis Cluster: every SPUBLISH at idle is a heartbeat (one per node) or a
        # probe (one per shard per node), and CLUSTER is the map of slots read again.
        checks = ["spublish", "cluster"] if redis_cls is Sharded else ["role"]
        role = sum(after.get(c, 0) - before.get(c, 0) for c in checks) / secs
        # Each of the three nodes publishes one heartbeat a second (the default); under
        # Redis Cluster every other SPUBLISH at idle is a probe.
        spublish = (after.get("spublish", 0) - before.get("spublish", 0)) / secs
        probes = max(0.0, spublish - 3.0)
        return {"per_s": total / secs, "role_per_s": role, "probes_per_s": probes,
                "probe_share": probes / (total / secs) if total else 0.0}
    finally:
        bc.stop(procs)
        redis.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--topology", choices=["sentinel", "cluster"], default="sentinel")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=float, default=4.0)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--features", "cluster", "--example", "loadgen",
                    "--example", "bench_server"], cwd=ROOT, check=True)
    ha = a.topology
    kinds = {"single": bc.Redis, ha: Sharded if ha == "cluster" else Sentinel}
    res = {k: {"latency": [], "fanout": [], "idle": []} for k in kinds}
    three = bc.SETUPS[2]
    for rnd in range(a.rounds):
        for name in (["single", ha] if rnd % 2 == 0 else [ha, "single"]):
            cls = kinds[name]
            lat = bc.relay(True, a.secs, cls)
            fan = bc.fanout(three, a.secs, cls)
            idl = idle(cls, a.secs)
            res[name]["latency"].append(lat)
            res[name]["fanout"].append(fan)
            res[name]["idle"].append(idl)
            print(f"round {rnd + 1} {name}: cross-node p50 {lat['p50_us']} µs; fan-out {fan['delivered_per_s']:.0f}/s "
                  f"{fan['cpu_us']:.2f} µs/delivery; idle {idl['per_s']:.0f} cmd/s ({idl['role_per_s']:.1f} checks)",
                  flush=True)
    text = report(a, res)
    print(text)
    name = "redis-cluster" if ha == "cluster" else "sentinel"
    flag = " --topology cluster" if ha == "cluster" else ""
    with open(os.path.join(ROOT, "bench", f"{name}.json"), "w") as f:
        json.dump(res, f, indent=1)
    if ha == "cluster":
        write_block("redis-cluster-cost", f"Generated by `python3 scripts/bench_sentinel.py{flag}` "
                    f"(bench/{name}.md):\n\n" + text)
    with open(os.path.join(ROOT, "bench", f"{name}.md"), "w") as f:
        f.write(f"# What {'Redis Cluster' if ha == 'cluster' else 'Sentinel'} costs\n\n"
                f"Generated by `python3 scripts/bench_sentinel.py{flag}`.\n\n" + text + "\n")


def report(a, res):
    ha = a.topology
    def med(name, part, key):
        return statistics.median(r[key] for r in res[name][part])
    cluster = ha == "cluster"
    rows = [("cross-node send p50 (µs)", "latency", "p50_us"), ("cross-node send p99 (µs)", "latency", "p99_us"),
            ("fan-out deliveries/s, three nodes", "fanout", "delivered_per_s"),
            (f"CPU per delivery, servers + {'primaries' if cluster else 'primary'} (µs)", "fanout", "cpu_us"),
            (f"idle: commands/s {'summed over the primaries' if cluster else 'on the primary'}", "idle", "per_s"),
            ("idle: of which SPUBLISH (heartbeats, probes) and CLUSTER/s" if cluster else "idle: of which ROLE/s",
             "idle", "role_per_s")]
    if cluster:
        rows += [("idle: of which probes/s", "idle", "probes_per_s"),
                 ("idle: probes' share of the commands", "idle", "probe_share")]
    title = "Redis Cluster (3 primaries, 3 replicas)" if cluster else "Sentinel (primary, replica, 3 sentinels)"
    lines = [f"Medians of {a.rounds} alternating rounds of {a.secs:g} s; every Redis process and the servers on "
             "CPU 0, the load generator on CPU 1.", "",
             f"| | one redis-server | {title} | {'Cluster' if cluster else 'Sentinel'} / single |",
             "|---|---:|---:|---:|"]
    for label, part, key in rows:
        x, y = med("single", part, key), med(ha, part, key)
        ratio = f"{y / x:.2f}x" if x else "-"
        lines.append(f"| {label} | {x:,.2f} | {y:,.2f} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
