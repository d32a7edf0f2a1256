#!/usr/bin/env python3
"""What Redis Sentinel costs a healthy cluster, against one redis-server in the same run.

    python3 scripts/bench_sentinel.py [--rounds 3] [--secs 4]

Alternating rounds on one redis-server and on a Sentinel set (a primary, a replica, three
sentinels; every Redis process pinned to CPU 0 with the servers, the load generator on
CPU 1), with scripts/bench_cluster.py's measurements:

- cross-node send latency (`loadgen relay`, 64 B at 1,000/s through two nodes);
- fan-out over three nodes (one group of 10,000 members, 64 B, 4 in flight): deliveries
  per second and CPU per delivery of the servers and the primary, and of the replica and
  sentinels besides;
- idle: three nodes with 100 members each in 100 groups, nothing sent for `--secs`: the
  commands per second the primary runs (`INFO commandstats`), and how many of them are
  `ROLE`, the check a node makes at every heartbeat under Sentinel.

Prints medians and the Sentinel/single ratios; writes bench/sentinel.md. Loopback only.
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
from bench import ROOT, free_port  # noqa: E402

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


def commandstats(redis):
    """Calls per command on the primary so far."""
    out = {}
    for line in redis.cli("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            out[name] = int(rest.split("calls=")[1].split(",")[0])
    return out


def idle(redis_cls, secs):
    """Commands per second on the primary under three idle nodes with members in 100 groups."""
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
        role = after.get("role", 0) - before.get("role", 0)
        return {"per_s": total / secs, "role_per_s": role / secs}
    finally:
        bc.stop(procs)
        redis.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=float, default=4.0)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--features", "cluster", "--example", "loadgen",
                    "--example", "bench_server"], cwd=ROOT, check=True)
    kinds = {"single": bc.Redis, "sentinel": Sentinel}
    res = {k: {"latency": [], "fanout": [], "idle": []} for k in kinds}
    three = bc.SETUPS[2]
    for rnd in range(a.rounds):
        for name in (["single", "sentinel"] if rnd % 2 == 0 else ["sentinel", "single"]):
            cls = kinds[name]
            lat = bc.relay(True, a.secs, cls)
            fan = bc.fanout(three, a.secs, cls)
            idl = idle(cls, a.secs)
            res[name]["latency"].append(lat)
            res[name]["fanout"].append(fan)
            res[name]["idle"].append(idl)
            print(f"round {rnd + 1} {name}: cross-node p50 {lat['p50_us']} µs; fan-out {fan['delivered_per_s']:.0f}/s "
                  f"{fan['cpu_us']:.2f} µs/delivery; idle {idl['per_s']:.0f} cmd/s ({idl['role_per_s']:.1f} ROLE)",
                  flush=True)
    text = report(a, res)
    print(text)
    with open(os.path.join(ROOT, "bench", "sentinel.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(ROOT, "bench", "sentinel.md"), "w") as f:
        f.write("# What Sentinel costs\n\nGenerated by `python3 scripts/bench_sentinel.py`.\n\n" + text + "\n")


def report(a, res):
    def med(name, part, key):
        return statistics.median(r[key] for r in res[name][part])
    rows = [("cross-node send p50 (µs)", "latency", "p50_us"), ("cross-node send p99 (µs)", "latency", "p99_us"),
            ("fan-out deliveries/s, three nodes", "fanout", "delivered_per_s"),
            ("CPU per delivery, servers + primary (µs)", "fanout", "cpu_us"),
            ("idle: primary's commands/s", "idle", "per_s"), ("idle: of which ROLE/s", "idle", "role_per_s")]
    lines = [f"Medians of {a.rounds} alternating rounds of {a.secs:g} s; every Redis process and the servers on "
             "CPU 0, the load generator on CPU 1.", "",
             "| | one redis-server | Sentinel (primary, replica, 3 sentinels) | Sentinel / single |",
             "|---|---:|---:|---:|"]
    for label, part, key in rows:
        x, y = med("single", part, key), med("sentinel", part, key)
        ratio = f"{y / x:.2f}x" if x else "-"
        lines.append(f"| {label} | {x:,.2f} | {y:,.2f} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
