#!/usr/bin/env python3
"""What group history costs: broadcast CPU per delivery with history on and off, Redis
memory per stored broadcast, and how long a recovery of 300 broadcasts takes.

    python3 scripts/bench_history.py [--rounds 3] [--secs 4] [--only TEXT]

- Fan-out (as scripts/bench_cluster.py: 10,000 receivers of one group, 64 B broadcasts,
  4 in flight, `loadgen fanout`, servers and redis-server on CPU 0, loadgen on CPU 1):
  `bench_server --fanout groups` on one node without a cluster, and three
  `bench_server --cluster` nodes, each with `--history 1000` and without. CPU per
  delivery of every server process plus redis-server; the ratio on/off per round.
- Redis memory per stored broadcast: after a three-node run with history, the stream's
  `MEMORY USAGE` divided by its length (64 B payloads; 1,000 kept).
- Recovery: `cluster_chat` nodes keep 1,000 messages per room; 300 are said, then a
  client (Python `websockets`) connects to the other node `since` the position before
  them, 100 times: time from the start of its connect to the 300th replayed message,
  p50 and p99.

Writes bench/history.{json,md}. Loopback only.
"""
import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import EX, ROOT, free_port, start_server  # noqa: E402
from bench_cluster import Redis, measure_fanout, stop  # noqa: E402

SETUPS = [
    ("one node", 1, False),
    ("three nodes (cluster)", 3, True),
]


def start_nodes(n, redis, cluster, history):
    ports = [free_port() for _ in range(n)]
    args = ["bench_server", "--fanout", "groups", "--workers", "2"]
    if history:
        args += ["--history", "1000"]
    procs = [start_server(args + (["--cluster", redis.url()] if cluster else []), p) for p in ports]
    if cluster:
        Redis.wait(lambda: redis.numsub("amw:nodes") == n, f"{n} nodes subscribed")
    return procs, [f"ws://127.0.0.1:{p}/ws" for p in ports]


def fanout(setup, history, secs):
    _, n, cluster = setup
    redis = Redis()
    procs, urls = start_nodes(n, redis, cluster, history)
    try:
        r = measure_fanout(procs, urls, redis, secs)
        if cluster and history:
            length = int(redis.cli("XLEN", "amw:h:{all}") or 0)
            usage = int(redis.cli("MEMORY", "USAGE", "amw:h:{all}", "SAMPLES", "0") or 0)
            r["stored"] = length
            r["bytes_per_stored"] = usage / max(length, 1)
        return r
    finally:
        stop(procs)
        redis.kill()


async def recoveries(urls, since, want, times):
    import websockets
    took = []
    for i in range(times):
        url = urls[i % len(urls)] + f"?room=lobby&since={since}"
        t0 = time.perf_counter()
        got = 0
        async with websockets.connect(url, max_size=None) as ws:
            while got < want:
                if (await ws.recv()).startswith("@"):
                    got += 1
        took.append((time.perf_counter() - t0) * 1000)
    return took


async def say(url, n):
    import websockets
    async with websockets.connect(url + "?room=lobby&since=now") as ws:
        last = None
        for i in range(n):
            await ws.send(f"message {i}")
        while True:
            text = await ws.recv()
            m = re.match(r"^@(\S+) \[lobby\] \S+: message (\d+)$", text)
            if m and int(m.group(2)) == n - 1:
                return last
            if m and int(m.group(2)) == 0:
                # The position before the first of them.
                epoch, offset = m.group(1).split(":")
                last = f"{epoch}:{int(offset) - 1}"


def recovery(times):
    redis = Redis()
    chat = subprocess.Popen([os.path.join(EX, "cluster_chat"), "--redis", redis.url(), "--addr", "127.0.0.1:0",
                             "--nodes", "2", "--history", "1000"], stdout=subprocess.PIPE, text=True)
    try:
        urls = []
        while len(urls) < 2:
            m = re.search(r"chat on http://([0-9.:]+)/", chat.stdout.readline())
            if m:
                urls.append(f"ws://{m.group(1)}/ws")
        since = asyncio.run(say(urls[0], 300))
        took = asyncio.run(recoveries(urls[1:], since, 300, times))
        took.sort()
        return {"p50_ms": statistics.median(took), "p99_ms": took[int(len(took) * 0.99) - 1], "runs": len(took)}
    finally:
        chat.kill()
        chat.wait()
        redis.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=float, default=4.0)
    ap.add_argument("--only", metavar="TEXT", help="only the parts (fanout, recovery) whose name contains TEXT")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--features", "cluster", "--example", "loadgen",
                    "--example", "bench_server", "--example", "cluster_chat"], cwd=ROOT, check=True)
    res = {"fanout": {}, "recovery": None}
    if not a.only or "fanout" in a.only:
        for rnd in range(a.rounds):
            for setup in SETUPS:
                for history in ([False, True] if rnd % 2 == 0 else [True, False]):
                    r = fanout(setup, history, a.secs)
                    key = f"{setup[0]}, history {'on' if history else 'off'}"
                    res["fanout"].setdefault(key, []).append(r)
                    print(f"[fanout] round {rnd + 1} {key}: {r['delivered_per_s']:.0f}/s, {r['cpu_us']:.3f} µs "
                          f"per delivery (redis {r['redis_us']:.3f})", flush=True)
    if not a.only or "recovery" in a.only:
        res["recovery"] = recovery(100)
        print(f"[recovery] {res['recovery']}", flush=True)
    text = report(res)
    print(text)
    if not a.only:
        with open(os.path.join(ROOT, "bench", "history.json"), "w") as f:
            json.dump(res, f, indent=1)
        with open(os.path.join(ROOT, "bench", "history.md"), "w") as f:
            f.write("# What history costs\n\nGenerated by `python3 scripts/bench_history.py`.\n\n" + text + "\n")


def report(res):
    lines = []
    fan = res["fanout"]
    if fan:
        lines += ["| setup | deliveries/s, off | on | CPU per delivery, off | on | on/off (median of rounds) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, _, _ in SETUPS:
            off, on = fan[f"{name}, history off"], fan[f"{name}, history on"]
            ratio = statistics.median(b["cpu_us"] / a["cpu_us"] for a, b in zip(off, on))
            lines.append(f"| {name} | {statistics.median(r['delivered_per_s'] for r in off):.0f} | "
                         f"{statistics.median(r['delivered_per_s'] for r in on):.0f} | "
                         f"{statistics.median(r['cpu_us'] for r in off):.3f} µs | "
                         f"{statistics.median(r['cpu_us'] for r in on):.3f} µs | {ratio:.2f}x |")
        stored = [r["bytes_per_stored"] for r in fan.get("three nodes (cluster), history on", []) if "bytes_per_stored" in r]
        if stored:
            lines += ["", f"Redis memory per stored 64 B broadcast: {statistics.median(stored):.0f} bytes "
                          f"(the stream's MEMORY USAGE over its length)."]
    if res["recovery"]:
        r = res["recovery"]
        lines += ["", f"Recovery of 300 broadcasts on the other node (connect to the 300th replayed): "
                      f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms over {r['runs']} runs."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
