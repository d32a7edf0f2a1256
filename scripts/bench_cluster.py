#!/usr/bin/env python3
"""Cluster benchmark: nodes of `bench_server --cluster` sharing one redis-server.

    python3 scripts/bench_cluster.py [--rounds 3] [--secs 4] [--only TEXT]

Servers and redis-server are pinned to CPU 0, examples/loadgen to CPU 1, so every setup
has one CPU for the whole server side. Measured:

- Cross-node send latency: `loadgen relay` sends `to <global id> <64 B>` at 1,000/s to a
  node, which relays it with `Cluster::send` to a receiver on the same node (a local send)
  or on another node (through Redis). Percentiles of send-to-arrival time.
- Fan-out: one group of 10,000 receivers, 64 B broadcasts, 4 in flight (`loadgen
  fanout`): on one node without the cluster, on one node with it, and spread over three
  nodes (of two worker threads each, like the one node, and of one). Delivered
  messages/s, and CPU per delivery of all servers plus redis-server.
- Memory: RSS per member connection with the cluster on and off (10,000 held
  connections, each in one group), and Redis memory per presence entry.
- Recovery: redis-server killed (-9) and restarted on its port under two nodes with
  1,000 members: time until both nodes have resubscribed and their presence is back.

Writes bench/cluster.{json,md} and the guide's cluster chapter between the cluster markers. Loopback only.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import CLK, EX, ROOT, free_port, publish, rss_kib, start_server  # noqa: E402

CONNS = 10000
FANOUT = ["--conns", str(CONNS), "--size", "64", "--sources", "8", "--inflight", "4", "--kind", "text"]
# (name, nodes, cluster on, worker threads per node)
SETUPS = [
    ("one node, groups without the cluster", 1, False, 2),
    ("one node, cluster on", 1, True, 2),
    ("three nodes, cluster on", 3, True, 2),
    ("three nodes of one worker thread, cluster on", 3, True, 1),
]
BASE = SETUPS[1][0]


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


class Redis:
    def __init__(self):
        self.port = free_port()
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        self.wait(lambda: self.cli("PING") == "PONG", "redis-server started")

    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def cli(self, *args):
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True)
        return out.stdout.strip()

    def numsub(self, channel):
        lines = self.cli("PUBSUB", "NUMSUB", channel).splitlines()
        return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else 0

    def presence(self, group):
        """Entries in every node's presence hash of `group`."""
        keys = [k for k in self.cli("KEYS", f"amw:m:{{{group}}}:*").splitlines() if k]
        return sum(int(self.cli("HLEN", k) or 0) for k in keys)

    def used_memory(self):
        for line in self.cli("INFO", "memory").splitlines():
            if line.startswith("used_memory:"):
                return int(line.split(":")[1])
        raise RuntimeError("no used_memory")

    @staticmethod
    def wait(cond, what, secs=30, step=0.005):
        deadline = time.time() + secs
        while not cond():
            if time.time() > deadline:
                raise RuntimeError(f"timed out: {what}")
            time.sleep(step)

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def start_nodes(n, redis, cluster=True, workers=2):
    ports = [free_port() for _ in range(n)]
    args = ["bench_server", "--fanout", "groups", "--workers", str(workers)]
    procs = [start_server(args + (["--cluster", redis.url()] if cluster else []), p) for p in ports]
    if cluster:
        Redis.wait(lambda: redis.numsub("amw:nodes") == n,
                   f"{n} nodes subscribed (have {redis.numsub('amw:nodes')})")
    return procs, [f"ws://127.0.0.1:{p}/ws" for p in ports]


def stop(procs):
    for p in procs:
        p.kill()
        p.wait()


def loadgen(mode, urls, extra, secs):
    also = [x for u in urls[1:] for x in ("--also", u)]
    cmd = ["taskset", "-c", "1", os.path.join(EX, "loadgen"), mode, "--url", urls[0], *also,
           "--secs", str(secs), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def ready(lg, what):
    line = lg.stdout.readline()
    if line.strip() != "READY":
        raise RuntimeError(f"{what}: {line!r}")


def measure_fanout(procs, urls, redis, secs):
    """loadgen's fan-out against `urls`: its report, with the CPU per delivery of the
    servers and redis-server together (`cpu_us`) and of redis-server alone (`redis_us`)."""
    # Under Redis Cluster every primary counts: the group's shard does the work, and the
    # others carry the nodes' heartbeats and probes.
    redis_pids = redis.pids() if hasattr(redis, "pids") else [redis.proc.pid]
    pids = [p.pid for p in procs] + redis_pids
    lg = loadgen("fanout", urls, FANOUT, secs)
    ready(lg, "fanout")
    c0 = [cpu(p) for p in pids]
    line = lg.stdout.readline()
    c1 = [cpu(p) for p in pids]
    lg.communicate(timeout=secs + 120)
    r = json.loads(line)
    d = max(r["delivered"], 1)
    r["cpu_us"] = sum(b - a for a, b in zip(c0, c1)) * 1e6 / d
    k = len(redis_pids)
    r["redis_us"] = sum(b - a for a, b in zip(c0[-k:], c1[-k:])) * 1e6 / d
    return r


def fanout(setup, secs, redis_cls=None):
    _, n, cluster, workers = setup
    redis = (redis_cls or Redis)()
    procs, urls = start_nodes(n, redis, cluster, workers)
    try:
        return measure_fanout(procs, urls, redis, secs)
    finally:
        stop(procs)
        redis.kill()


def relay(cross, secs, redis_cls=None):
    redis = (redis_cls or Redis)()
    procs, urls = start_nodes(2, redis, workers=1)
    try:
        lg = loadgen("relay", urls if cross else urls[:1], ["--rate", "1000", "--size", "64"], secs)
        ready(lg, "relay")
        out, _ = lg.communicate(timeout=secs + 60)
        return json.loads(out.strip().splitlines()[-1])
    finally:
        stop(procs)
        redis.kill()


def memory(cluster, secs):
    redis = Redis()
    procs, urls = start_nodes(1, redis, cluster)
    try:
        time.sleep(0.5)
        base_rss, base_redis = rss_kib(procs[0].pid), redis.used_memory()
        lg = loadgen("hold", urls, ["--conns", str(CONNS), "--sources", "8"], secs)
        ready(lg, "hold")
        if cluster:
            Redis.wait(lambda: redis.presence("all") == CONNS, "presence written", step=0.1)
        else:
            time.sleep(1.0)
        r = {"rss_per_conn_b": (rss_kib(procs[0].pid) - base_rss) * 1024 / CONNS}
        if cluster:
            r["redis_per_entry_b"] = (redis.used_memory() - base_redis) / CONNS
        lg.communicate(timeout=secs + 60)
        return r
    finally:
        stop(procs)
        redis.kill()


def recovery():
    redis = Redis()
    procs, urls = start_nodes(2, redis, workers=1)
    try:
        lg = loadgen("hold", urls, ["--conns", "1000"], 30)
        ready(lg, "hold")
        Redis.wait(lambda: redis.presence("all") == 1000, "presence written")
        redis.kill()
        time.sleep(0.5)
        redis.start()
        t0 = time.time()
        Redis.wait(lambda: redis.numsub("amw:nodes") == 2 and redis.presence("all") == 1000, "recovered")
        took = time.time() - t0
        lg.kill()
        lg.wait()
        return took
    finally:
        stop(procs)
        redis.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=float, default=4.0)
    ap.add_argument("--only", metavar="TEXT", help="only parts (latency, fanout, memory, recovery) "
                    "whose name contains TEXT; prints, writes nothing")
    ap.add_argument("--report", action="store_true", help="write the report again from bench/cluster.json")
    a = ap.parse_args()
    if a.report:
        with open(os.path.join(ROOT, "bench", "cluster.json")) as f:
            res = json.load(f)
        a.rounds = len(res["recovery_s"])
        return report(a, res)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    subprocess.run(["cargo", "build", "--release", "--features", "cluster", "--example", "loadgen",
                    "--example", "bench_server"], cwd=ROOT, check=True)
    want = lambda part: not a.only or a.only in part  # noqa: E731
    res = {"latency": {}, "fanout": {}, "memory": {}, "recovery_s": []}
    for rnd in range(a.rounds):
        if want("latency"):
            for cross in ([False, True] if rnd % 2 == 0 else [True, False]):
                r = relay(cross, a.secs)
                res["latency"].setdefault("cross" if cross else "same", []).append(r)
                print(f"[latency] round {rnd + 1} {'cross-node' if cross else 'same node'}: "
                      f"p50 {r['p50_us']} µs, p99 {r['p99_us']} µs ({r['received']}/{r['sent']})", flush=True)
        if want("fanout"):
            for setup in (SETUPS if rnd % 2 == 0 else list(reversed(SETUPS))):
                r = fanout(setup, a.secs)
                res["fanout"].setdefault(setup[0], []).append(r)
                print(f"[fanout] round {rnd + 1} {setup[0]}: {r['delivered_per_s']:.0f}/s, {r['cpu_us']:.2f} µs "
                      f"(redis {r['redis_us']:.2f}), p50 {r['p50_us']} p99 {r['p99_us']}", flush=True)
        if want("memory"):
            for cluster in (False, True):
                r = memory(cluster, a.secs)
                res["memory"].setdefault("on" if cluster else "off", []).append(r)
                print(f"[memory] round {rnd + 1} cluster {'on' if cluster else 'off'}: {r}", flush=True)
        if want("recovery"):
            took = recovery()
            res["recovery_s"].append(took)
            print(f"[recovery] round {rnd + 1}: {took * 1000:.0f} ms", flush=True)
    if a.only:
        return
    report(a, res)


def med(runs, key):
    return statistics.median(r[key] for r in runs)


def report(a, res):
    lat, fan, mem = res["latency"], res["fanout"], res["memory"]
    same50, cross50 = med(lat["same"], "p50_us"), med(lat["cross"], "p50_us")
    # Setups of one round ran back to back: ratios are per round, then the median.
    ratio = lambda name: statistics.median(  # noqa: E731
        r["delivered_per_s"] / b["delivered_per_s"] for r, b in zip(fan[name], fan[BASE]))
    rss_on, rss_off = med(mem["on"], "rss_per_conn_b"), med(mem["off"], "rss_per_conn_b")
    lines = [
        f"Medians of {a.rounds} rounds (`python3 scripts/bench_cluster.py`; ratios are medians of per-round "
        "ratios); servers and redis-server share CPU 0, the load generator has CPU 1.",
        "",
        "| send to a connection, 64 B at 1,000/s | p50 | p90 | p99 |",
        "|---|---:|---:|---:|",
    ]
    for key, name in (("same", "same node (local send)"), ("cross", "**another node, through Redis**")):
        lines.append(f"| {name} | {med(lat[key], 'p50_us')} µs | {med(lat[key], 'p90_us')} µs | "
                     f"{med(lat[key], 'p99_us')} µs |")
    lines += [
        "",
        f"Cross-node p50 is **{(cross50 - same50) / 1000:.2f} ms** above same-node (bar: at most 0.5 ms); "
        "per round: " + ", ".join(f"{(c['p50_us'] - s['p50_us']) / 1000:.2f}" for s, c in zip(lat["same"], lat["cross"]))
        + " ms.",
        "",
        f"| one group of {CONNS:,} members, 64 B, 4 in flight | delivered/s | vs one node (cluster on) | "
        "CPU per delivery (servers + Redis) | p50 | p99 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, *_ in SETUPS:
        rate = med(fan[name], "delivered_per_s")
        lines.append(f"| {name} | {rate:,.0f} | {ratio(name):.2f}x | {med(fan[name], 'cpu_us'):.2f} µs "
                     f"({med(fan[name], 'redis_us'):.2f} Redis) | {med(fan[name], 'p50_us') / 1000:.1f} ms | "
                     f"{med(fan[name], 'p99_us') / 1000:.1f} ms |")
    rec = statistics.median(res["recovery_s"]) * 1000
    lines += [
        "",
        f"- Memory: **{rss_on - rss_off:+.0f} B RSS per connection** with the cluster on "
        f"({rss_on:,.0f} B against {rss_off:,.0f} B, {CONNS:,} members of one group; bar: at most +1 KiB); "
        f"Redis holds **{med(mem['on'], 'redis_per_entry_b'):.0f} B per presence entry**.",
        f"- Recovery after `kill -9` and a restart of redis-server: both nodes resubscribed with their "
        f"presence back in **{rec:.0f} ms** (median; rounds: "
        f"{', '.join(f'{s * 1000:.0f}' for s in res['recovery_s'])} ms; bar: within 2 s).",
    ]
    md = "\n".join(lines) + "\n"
    publish("cluster", res, md, "cluster")
    print(md)


if __name__ == "__main__":
    main()
