#!/usr/bin/env python3
"""Failover run on Redis Sentinel or Redis Cluster: how long cross-node delivery stops
when the primary fails, next to how long Redis itself takes to fail over; and whether
anything is lost silently, doubled or reordered on the way.

    python3 scripts/failover.py [--topology sentinel|cluster] [--failovers 10] [--members 60] [--rate 400]

With `--topology cluster`: three primaries and three replicas (`cluster-node-timeout
1000`), the nodes on `redis+cluster://`, and the faults hit the primary of the lobby's
shard: `kill -9` (restarted at once, to come back as a replica) or `CLUSTER FAILOVER` on
its replica. Redis's failover is from the fault to `CLUSTER SLOTS` naming another primary
for the lobby's slot. Writes bench/failover-cluster.md and the `failover-cluster` block.

With `--topology cluster --fault other-shard`: each fault stops (SIGSTOP) the primary of a
shard the lobby is not on, until Redis has failed it over, then resumes it (it comes back
as a replica). The lobby's own shard stays healthy throughout, so its delivery should not
pause: each pair of nodes is probed again and again from the fault until a second after
that failover, and the longest a line took to cross is the pause. Writes
bench/failover-other-shard.md.

Starts a primary, a replica and three sentinels (down after 1 s, `repl-diskless-sync-delay
0`), then three `cluster_chat` nodes (release build, each its own process, on
`redis+sentinel://`), `--members` WebSocket clients in the lobby spread over the nodes,
reconnecting at random since the last position they saw, and two publishers. Then
`--failovers` failovers in turn: the primary killed with `kill -9` (and started again a
moment after the sentinels have named another, as a stale primary that they turn into a
replica), or `SENTINEL FAILOVER`.

For each failover:
- Redis: from the fault to the sentinels naming another primary;
- delivery: from the fault to a line said on one node arriving on another, for each of
  the three pairs of nodes (a probe process of its own says a line every 50 ms on one node
  and listens on the other);
- what each node reported: `Gap(Reconnected { outage })`.

The members are checked as in scripts/history_fault.py: within each stretch between
explicit "missed messages are gone" notices, positions must follow one another exactly.
Writes bench/failover.md and the guide's cluster chapter between the failover markers.
Needs redis-server and Python websockets (scripts/test.sh
installs both). Loopback only. `CARGO_TARGET_DIR` is honoured.
"""
import argparse
import asyncio
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import websockets

sys.dont_write_bytecode = True  # importing the scripts beside it must not leave __pycache__ behind
import history_fault as hf  # noqa: E402
from bench import write_block  # noqa: E402
from redis_sets import PRIMARY, ClusterSet, SentinelSet  # noqa: E402

WHY = re.compile(r"lost redis; reconnecting .*why=(.*)$")
OUTAGE = re.compile(r"Gap\(Reconnected \{ outage: ([0-9.]+)(ms|s|µs)")


class Node:
    """A `cluster_chat` process whose lines are kept: the gaps it reports."""

    def __init__(self, redis_url):
        self.proc = subprocess.Popen([hf.BIN, "--redis", redis_url, "--addr", "127.0.0.1:0", "--nodes", "1",
                                      "--history", "20000", "--heartbeat-ms", "200", "--node-timeout-ms", "1000"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "NO_COLOR": "1"})
        line = self.proc.stdout.readline()
        while "chat on http" not in line and line:
            line = self.proc.stdout.readline()
        m = re.search(r"chat on http://([0-9.:]+)/", line)
        if not m:
            sys.exit("cluster_chat did not start")
        self.url = f"ws://{m.group(1)}/ws"
        self.outages = []
        self.why = []  # why the node's link was re-made, as it logged it
        self.lines = []  # everything it printed, for a failover that went wrong
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        for line in self.proc.stdout:
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)
            self.lines.append(line)
            w = WHY.search(line)
            if w:
                self.why.append(w.group(1))
            m = OUTAGE.search(line)
            if m:
                scale = {"ms": 1e-3, "s": 1.0, "µs": 1e-6}[m.group(2)]
                self.outages.append(float(m.group(1)) * scale)


LINGER = 0.5  # seconds a probe waits for a node to end a connection it closes


async def cross(a, b, deadline=30.0):
    """Seconds until a line said on the node at `a` arrives on the node at `b`, and how
    many of the probe's closes waited out `LINGER` (a node slow to end a connection: the
    client library would wait 10 s by default, and the probe with it)."""
    t0 = time.monotonic()
    k = 0
    lingered = 0
    while time.monotonic() - t0 < deadline:
        closing = [None]
        try:
            # `say` is a member of the room too and never reads: an unbounded queue keeps the
            # client reading, or its close would not see the node's answer behind the room's
            # traffic (websockets stops reading at 16 unread messages).
            async with websockets.connect(f"{a}?room=lobby&since=now", open_timeout=2, close_timeout=LINGER,
                                          max_queue=None) as say, \
                    websockets.connect(f"{b}?room=lobby&since=now", open_timeout=2, max_size=None,
                                       close_timeout=LINGER) as hear:
                try:
                    k += 1
                    if await heard_back(say, hear, f"cross{random.randrange(1 << 30)}x{k}", t0, deadline):
                        return time.monotonic() - t0, lingered
                finally:
                    closing[0] = time.monotonic()
        except (websockets.exceptions.ConnectionClosed, OSError, asyncio.TimeoutError,
                websockets.exceptions.InvalidHandshake):
            await asyncio.sleep(0.02)
        finally:
            if closing[0] and time.monotonic() - closing[0] > LINGER * 0.9:
                lingered += 1
    return float("inf"), lingered


async def heard_back(say, hear, word, t0, deadline):
    """Says `word` every 50 ms until `hear` gets it back, or the deadline passes."""
    while time.monotonic() - t0 < deadline:
        await say.send(word)
        end = time.monotonic() + 0.05
        while time.monotonic() < end:
            try:
                text = await asyncio.wait_for(hear.recv(), timeout=max(0.001, end - time.monotonic()))
            except asyncio.TimeoutError:
                break
            m = hf.LINE.match(text)
            if m and m.group(3) == word:
                return True
    return False


def prober_main():
    for line in sys.stdin:
        a, b = line.split()
        took, lingered = asyncio.run(cross(a, b))
        print(took, lingered, flush=True)


class Prober:
    """A process of its own: the members' event loop would delay the probe itself."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--prober"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    async def time(self, a, b):
        self.proc.stdin.write(f"{a} {b}\n")
        self.proc.stdin.flush()
        took, lingered = (await asyncio.get_running_loop().run_in_executor(None, self.proc.stdout.readline)).split()
        return float(took), int(lingered)


async def fail_over(redis, kind):
    """Makes the fault; seconds until Redis names another primary."""
    old = redis.primary()
    t0 = time.monotonic()
    if kind == "kill -9":
        redis.procs[old].kill()
        redis.procs[old].wait()
    elif kind == "CLUSTER FAILOVER":
        redis.cli(redis.replica_of(old), "CLUSTER", "FAILOVER")
    else:
        redis.cli(redis.sentinel_ports[0], "SENTINEL", "FAILOVER", PRIMARY)
    while redis.primary() in (old, None):
        await asyncio.sleep(0.02)
    took = time.monotonic() - t0
    if kind == "kill -9":
        redis.start_server(old)  # a stale primary until the sentinels turn it into a replica
    return t0, took


async def stop_other_shard(redis, i):
    """Stops the primary of a shard the lobby is not on; when it stopped, the port, and a
    wait that resolves with the seconds until Redis names another primary there."""
    lobby = redis.primary()
    others = sorted(redis.primaries() - {lobby})
    victim = others[i % len(others)]
    t0 = time.monotonic()
    redis.procs[victim].send_signal(signal.SIGSTOP)

    async def failed_over():
        while victim in redis.primaries(skip={victim}):
            await asyncio.sleep(0.02)
        took = time.monotonic() - t0
        redis.procs[victim].send_signal(signal.SIGCONT)
        return took
    return t0, victim, asyncio.ensure_future(failed_over())


async def run(a):
    redis = ClusterSet() if a.topology == "cluster" else SentinelSet()
    nodes = [Node(redis.url()) for _ in range(3)]
    urls = [n.url for n in nodes]
    stop_at = asyncio.Event()
    members = [hf.Member(f"m{i}") for i in range(a.members)]
    said = [0]
    tasks = [asyncio.ensure_future(hf.run_member(m, urls, stop_at, 8.0)) for m in members]
    pubs = [asyncio.ensure_future(hf.publisher(j, urls, said, 10 ** 9, a.rate, stop_at)) for j in range(2)]
    probers = [Prober() for _ in range(3)]
    rows = []
    await asyncio.sleep(3)
    for i in range(a.failovers):
        manual = "CLUSTER FAILOVER" if a.topology == "cluster" else "SENTINEL FAILOVER"
        kind = "kill -9" if i % 2 == 0 else manual
        before = [len(n.outages) for n in nodes]
        why_before = [len(n.why) for n in nodes]
        pairs = [(urls[0], urls[1]), (urls[1], urls[2]), (urls[2], urls[0])]
        if a.fault == "other-shard":
            kind = "another shard's primary stopped"
            t0, _, redis_failover = await stop_other_shard(redis, i)
            # The lobby's shard is healthy, so any wait is ours: each pair is probed again
            # and again from the fault until a second after Redis has failed the other
            # shard over, and the longest a line took is the pause.
            done = asyncio.Event()
            longest = [0.0] * len(pairs)
            lingered_all = [0]

            async def keep_probing(k, prober, x, y):
                while not done.is_set():
                    took, lingered = await prober.time(x, y)
                    longest[k] = max(longest[k], took)
                    lingered_all[0] += lingered
            probing = [asyncio.ensure_future(keep_probing(k, pr, x, y))
                       for k, (pr, (x, y)) in enumerate(zip(probers, pairs))]
            redis_took = await redis_failover
            await asyncio.sleep(1.0)
            done.set()
            await asyncio.gather(*probing)
            delivery = longest
            timed = [(0.0, lingered_all[0])]
        else:
            t0, redis_took = await fail_over(redis, kind)
            # Probes start once the sentinels have named the new primary: the time already
            # gone since the fault is added.
            waited = time.monotonic() - t0
            timed = await asyncio.gather(*[p.time(x, y) for p, (x, y) in zip(probers, pairs)])
            delivery = [waited + t for t, _ in timed]
        lingered = sum(n for _, n in timed)
        await asyncio.sleep(1.0)
        reported = [o for n, b in zip(nodes, before) for o in n.outages[b:]]
        why = [w for n, b in zip(nodes, why_before) for w in n.why[b:]]
        rows.append({"kind": kind, "redis": redis_took, "delivery": delivery, "reported": reported, "why": why,
                     "lingered": lingered})
        if max(delivery) > redis_took + 1.0 or (a.fault == "other-shard" and max(delivery) > 1.0):
            # Kept for whoever looks into it: each node's log and the pairs' times.
            for k, n in enumerate(nodes):
                with open(os.path.join(tempfile.gettempdir(), f"failover-{i + 1}-node{k}.log"), "w") as f:
                    f.writelines(n.lines[-20000:])
            print(f"   slow: pairs {[round(d, 2) for d in delivery]}, logs in {tempfile.gettempdir()}/failover-{i + 1}-node*.log")
        print(f"{i + 1:2} {kind:18} redis {redis_took:5.2f} s  delivery max {max(delivery):5.2f} s  "
              f"reported {', '.join(f'{o:.2f}' for o in reported)}; closes that lingered {lingered}; "
              f"why: {'; '.join(sorted(set(why)))}", flush=True)
        redis.await_replica()
        await asyncio.sleep(2)
    for p in pubs:
        p.cancel()
    await asyncio.gather(*pubs, return_exceptions=True)
    last, totals, caught_up = await hf.settle(
        members, stop_at, tasks, lambda: redis.cli(redis.primary(), "HMGET", "amw:hm:{lobby}", "e", "o").split())
    print(caught_up, flush=True)
    totals["broadcasts received"] = sum(1 for m in members for e in m.events if e[0] == "msg")
    for p in probers:
        p.proc.kill()
    for n in nodes:
        n.proc.kill()
    redis.stop()
    return rows, totals


def report(a, rows, totals):
    def ms(x):
        return f"{x * 1000:.0f} ms"
    outages = [", ".join(ms(o) for o in r["reported"]) for r in rows]
    red = [r["redis"] for r in rows]
    dl = [max(r["delivery"]) for r in rows]
    crowd = f"3 `cluster_chat` nodes, {a.members} members reconnecting at random, 2 publishers at {a.rate:g}/s."
    if a.fault == "other-shard":
        head = (f"{a.failovers} faults on Redis Cluster (3 primaries, 3 replicas, node timeout 1 s): each stops "
                f"the primary of a shard the lobby is not on until Redis fails it over, then resumes it. {crowd}")
        columns = "| # | that shard's failover | lobby's delivery paused (3 pairs, max) | outages the nodes reported |"
        align = "|---:|---:|---:|---|"
        cells = [f"{ms(r['redis'])} | {ms(d)}" for r, d in zip(rows, dl)]
        summary = [("the other shard's failover", red), ("the lobby's delivery paused", dl)]
    else:
        where = ("Redis Cluster (3 primaries, 3 replicas, node timeout 1 s; the faults hit the lobby's shard)"
                 if a.topology == "cluster" else "Redis Sentinel (2 data servers, 3 sentinels, down after 1 s)")
        head = f"{a.failovers} failovers on {where}, {crowd}"
        columns = "| # | fault | Redis failover | delivery back (3 pairs, max) | outages the nodes reported |"
        align = "|---:|---|---:|---:|---|"
        cells = [f"{r['kind']} | {ms(r['redis'])} | {ms(d)}" for r, d in zip(rows, dl)]
        summary = [("Redis failover", red), ("cross-node delivery back", dl),
                   ("delivery back after Redis's failover", [d - r for d, r in zip(dl, red)])]
    lines = [head, "", columns, align]
    lines += [f"| {i + 1} | {c} | {o} |" for i, (c, o) in enumerate(zip(cells, outages))]
    lines += ["", "| | p50 | max |", "|---|---:|---:|"]
    lines += [f"| {name} | {ms(statistics.median(v))} | {ms(max(v))} |" for name, v in summary]
    lines += ["", "| member outcome | count |", "|---|---:|"]
    for k in hf.BAD + sorted(k for k in totals if k not in hf.BAD):
        lines.append(f"| {k} | {totals[k]} |")
    return "\n".join(lines)


def main():
    if sys.argv[1:] == ["--prober"]:
        return prober_main()
    ap = argparse.ArgumentParser()
    ap.add_argument("--topology", choices=["sentinel", "cluster"], default="sentinel")
    ap.add_argument("--failovers", type=int, default=10)
    ap.add_argument("--members", type=int, default=60)
    ap.add_argument("--rate", type=float, default=400, help="broadcasts per second, both publishers together")
    ap.add_argument("--fault", choices=["lobby", "other-shard"], default="lobby",
                    help="other-shard (Redis Cluster only): stop another shard's primary, time the lobby")
    a = ap.parse_args()
    if a.fault == "other-shard" and a.topology != "cluster":
        ap.error("--fault other-shard needs --topology cluster")
    subprocess.run(["cargo", "build", "--release", "--features", "cluster", "--example", "cluster_chat"],
                   cwd=hf.ROOT, check=True)
    rows, totals = asyncio.run(run(a))
    text = report(a, rows, totals)
    print(text)
    name, flag = ("failover-cluster", " --topology cluster") if a.topology == "cluster" else ("failover", "")
    if a.fault == "other-shard":
        name, flag = "failover-other-shard", " --topology cluster --fault other-shard"
    with open(os.path.join(hf.ROOT, "bench", f"{name}.md"), "w") as f:
        f.write(f"# Failover run\n\nGenerated by `python3 scripts/failover.py{flag}`.\n\n" + text + "\n")
    if a.fault == "lobby":
        write_block(name, f"Generated by `python3 scripts/failover.py{flag}` (bench/{name}.md):\n\n" + text)
    bad = sum(totals[k] for k in hf.BAD)
    slow = [r for r in rows if max(r["delivery"]) > r["redis"] + 1.0]
    sys.exit(1 if bad or slow else 0)


if __name__ == "__main__":
    main()
