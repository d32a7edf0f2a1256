#!/usr/bin/env python3
"""Fault run of group history and recovery across nodes: is anything ever lost silently,
doubled, reordered, or is a position ever given to two broadcasts?

    python3 scripts/history_fault.py [--seeds 1,2,3] [--members 200] [--broadcasts 20000]
                                     [--rate 1500] [--outage 3] [--topology single|cluster]

Per seed: starts a redis-server and three `cluster_chat` nodes (each its own process, every
room keeping 20,000 messages), then `--members` WebSocket clients (Python `websockets`) in
the lobby, spread over the nodes, and two publishers that say `p<j> <n>` for n = 0, 1, ...
until `--broadcasts` in all have been said. Members drop their connection at random and
come back since the last position they saw, to a node picked at random (a page that
reconnects), all through the faults, which come in turn:

1. Redis killed and away for `--outage` seconds, then back without persistence (history
   lost: a new epoch);
2. a snapshot taken (`SAVE`); later Redis *and every node* killed with `kill -9`, Redis back
   from that older snapshot, the nodes started again;
3. Redis switched to `appendonly yes` (`everysec`); its append-only file copied; later
   Redis and every node killed again, Redis back from the older copy (what `everysec` can
   lose, and more), the nodes started again;
4. one node killed with `kill -9` and started again a second later;
5. Redis restarted gracefully from its append-only file.

With `--topology cluster` the Redis is a Redis Cluster (three primaries, each with a
replica, node timeout 1 s; scripts/failover.py's), and the faults are:

1. the primary of the lobby's shard *and every node* killed with `kill -9`; the nodes
   started again at once, while its replica takes over; the old primary started again a
   second later (it comes back a replica);
2. the lobby's primary stopped (SIGSTOP) for `--outage` seconds, past its failover, then
   resumed (a stale primary, demoted);
3. every Redis process killed and away for `--outage` seconds, then back without
   persistence (the cluster's map of slots kept, its data lost: a new epoch);
4. one node killed with `kill -9` and started again a second later;
5. `CLUSTER FAILOVER` on the lobby's replica (a failover by hand).

After each Redis restart a probe client on every node says a line every 50 ms until its
own broadcast comes back: the time from Redis (or the restarted nodes) being back to each
node publishing again, reported as p50 and max.

Each member records every broadcast it got (`@<position> [lobby] <who>: <text>`), every
close code, and every "missed messages are gone (<reason>)" notice: the explicit
"cannot recover". Then, per member: within each stretch between explicit notices the
positions must follow one another exactly (one epoch, offset + 1): an epoch change or a
jump is a silent gap, a repeat a duplicate; each publisher's `n` must rise (a drop is a
reordering); and every member must end on the last broadcast. Across members, a position
must name one broadcast. Prints the counts per seed and writes bench/history_fault.md.
Needs redis-server and Python websockets (scripts/test.sh installs both). Loopback only.
`CARGO_TARGET_DIR` is honoured.
"""
import argparse
import asyncio
import os
import random
import re
import signal
import socket
import subprocess
import sys
import shutil
import statistics
import tempfile
import time
from collections import Counter

import websockets

sys.dont_write_bytecode = True  # importing the scripts beside it must not leave __pycache__ behind
from redis_sets import ClusterSet  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
BIN = os.path.join(TARGET, "release", "examples", "cluster_chat")
LINE = re.compile(r"^@(\S+) \[lobby\] (\S+): (.*)$", re.S)
GONE = re.compile(r"^\[lobby\] missed messages are gone \((.*)\); here are the latest$")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_position(p):
    epoch, offset = p.split(":")
    return int(epoch, 16), int(offset)


class Redis:
    def __init__(self, workdir):
        self.port, self.dir, self.proc = free_port(), workdir, None

    def start(self, persist):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", self.dir,
                "--appendonly", "yes" if persist else "no", "--appendfsync", "everysec"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.time() + 10
        while self.cli("PING") != "PONG":
            if time.time() > deadline:
                sys.exit("redis-server did not start")
            time.sleep(0.05)

    def cli(self, *args):
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True)
        return out.stdout.strip()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def aof_dir(self):
        return os.path.join(self.dir, "appendonlydir")

    def turn_aof_on(self):
        """Turns the append-only file on and waits for it to be written."""
        self.cli("CONFIG", "SET", "appendonly", "yes")
        deadline = time.time() + 30
        while "aof_rewrite_in_progress:0" not in self.cli("INFO", "persistence") or \
                "aof_enabled:1" not in self.cli("INFO", "persistence"):
            if time.time() > deadline:
                sys.exit("the append-only file was not written")
            time.sleep(0.05)

    def keep_aof(self):
        kept = os.path.join(self.dir, "kept")
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(self.aof_dir(), kept)

    def restore_aof(self):
        shutil.rmtree(self.aof_dir(), ignore_errors=True)
        shutil.copytree(os.path.join(self.dir, "kept"), self.aof_dir())

    def graceful_restart(self):
        self.cli("SHUTDOWN")
        self.proc.wait()
        self.start(persist=True)


def start_node(redis_url):
    proc = subprocess.Popen([BIN, "--redis", redis_url, "--addr", "127.0.0.1:0", "--nodes", "1", "--history", "20000",
                             "--heartbeat-ms", "200", "--node-timeout-ms", "1000"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    m = re.search(r"chat on http://([0-9.:]+)/", line)
    if not m:
        sys.exit(f"cluster_chat did not start: {line!r}")
    # Its later lines (cluster events) are read so that its pipe never fills.
    asyncio.get_running_loop().run_in_executor(None, lambda: [None for _ in proc.stdout])
    return proc, f"ws://{m.group(1)}/ws"


class Member:
    def __init__(self, name):
        self.name = name
        self.events = []  # ("msg", epoch, offset, who, text) | ("gone", reason) | ("closed", code)
        self.last = None  # position text
        self.sessions = 0


async def session(member, url, stop_at, hold):
    """One connection, until `hold` seconds pass, the node goes, or the run is over."""
    q = "?room=lobby" + (f"&since={member.last}" if member.last else "")
    member.sessions += 1
    try:
        async with websockets.connect(url + q, max_size=None, open_timeout=5) as ws:
            end = time.monotonic() + hold
            while time.monotonic() < end and not stop_at.is_set():
                try:
                    text = await asyncio.wait_for(ws.recv(), timeout=min(0.5, max(0.01, end - time.monotonic())))
                except asyncio.TimeoutError:
                    continue
                note(member, text)
    except websockets.exceptions.ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd else 1006
        member.events.append(("closed", code))
        # Closed by the server (1013 try again later, 1012, a node gone): back in half a
        # second, as the chat page does.
        await asyncio.sleep(random.uniform(0.25, 0.75))
    except (OSError, asyncio.TimeoutError, websockets.exceptions.InvalidStatus, websockets.exceptions.InvalidHandshake):
        await asyncio.sleep(0.1)  # the node is gone: another is picked next time


def note(member, text):
    m = LINE.match(text)
    if m:
        epoch, offset = parse_position(m.group(1))
        member.last = m.group(1)
        member.events.append(("msg", epoch, offset, m.group(2), m.group(3)))
        return
    g = GONE.match(text)
    if g:
        member.events.append(("gone", g.group(1)))


async def run_member(member, urls, stop_at, churn):
    while not stop_at.is_set():
        live = [u for u in urls if u is not None]
        if not live:
            await asyncio.sleep(0.1)
            continue
        hold = random.uniform(1, churn) if churn else 3600
        await session(member, random.choice(live), stop_at, hold)


async def publisher(j, urls, said, target, rate, stop_at):
    """Says `p<j> <n>` at `rate`; `said[0]` counts the lines of either publisher that came
    back as broadcasts (what was published, not what was sent while Redis was away)."""
    n = 0
    while said[0] < target and not stop_at.is_set():
        live = [u for u in urls if u is not None]
        if not live:
            await asyncio.sleep(0.1)
            continue
        try:
            async with websockets.connect(f"{random.choice(live)}?room=lobby&since=now", open_timeout=5) as ws:
                async def count_published():
                    try:
                        async for text in ws:
                            m = LINE.match(text)
                            if m and m.group(3).startswith(f"p{j} "):
                                said[0] += 1
                    except websockets.exceptions.ConnectionClosed:
                        pass
                reader = asyncio.ensure_future(count_published())
                while said[0] < target and not reader.done():
                    await ws.send(f"p{j} {n}")
                    n += 1
                    await asyncio.sleep(2 / rate)
                reader.cancel()
        except (websockets.exceptions.ConnectionClosed, OSError, asyncio.TimeoutError,
                websockets.exceptions.InvalidHandshake):
            await asyncio.sleep(0.1)


def check(member, last):
    """Silent gaps, duplicates, reorderings and explicit notices of one member."""
    out = Counter()
    prev = None
    publishers = {}
    for e in member.events:
        if e[0] == "gone":
            out["not recoverable: " + e[1]] += 1
            prev, publishers = None, {}
            continue
        if e[0] == "closed":
            out[f"closed {e[1]}"] += 1
            continue
        _, epoch, offset, who, text = e
        if prev is not None:
            if epoch != prev[0] or offset > prev[1] + 1:
                out["silent gap"] += 1
            elif offset <= prev[1]:
                out["duplicate"] += 1
        prev = (epoch, offset)
        m = re.match(r"^p(\d) (\d+)$", text)
        if m:
            j, n = m.group(1), int(m.group(2))
            if epoch == publishers.get(j, (None, -1))[0] and n <= publishers[j][1]:
                out["reordered"] += 1
            publishers[j] = (epoch, n)
    if prev != last:
        out["ended behind"] += 1
    return out


class Nodes:
    """The three nodes; `urls` is shared with the members and publishers (None: down)."""

    def __init__(self, redis_url, n=3):
        self.redis_url = redis_url
        self.procs, self.urls = [], []
        for _ in range(n):
            proc, url = start_node(redis_url)
            self.procs.append(proc)
            self.urls.append(url)

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()
        self.urls[i] = None

    def start(self, i):
        self.procs[i], self.urls[i] = start_node(self.redis_url)

    async def restart(self, i):
        """Node `i` killed -9, started again a second later."""
        self.kill(i)
        await asyncio.sleep(1)
        self.start(i)

    def kill_all(self):
        for i in range(len(self.procs)):
            self.kill(i)

    def start_all(self):
        for i in range(len(self.procs)):
            self.start(i)

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()


async def probe(url, deadline=20.0):
    """Seconds until a line said on the node at `url` comes back as a broadcast."""
    t0 = time.monotonic()
    k = 0
    while time.monotonic() - t0 < deadline:
        try:
            async with websockets.connect(f"{url}?room=lobby&since=now", open_timeout=2, max_size=None) as ws:
                while time.monotonic() - t0 < deadline:
                    k += 1
                    word = f"probe{random.randrange(1 << 30)}x{k}"
                    await ws.send(word)
                    end = time.monotonic() + 0.05
                    while time.monotonic() < end:
                        try:
                            text = await asyncio.wait_for(ws.recv(), timeout=max(0.001, end - time.monotonic()))
                        except asyncio.TimeoutError:
                            break
                        m = LINE.match(text)
                        if m and m.group(3) == word:
                            return time.monotonic() - t0
        except (websockets.exceptions.ConnectionClosed, OSError, asyncio.TimeoutError,
                websockets.exceptions.InvalidHandshake):
            await asyncio.sleep(0.02)
    return float("inf")


class Prober:
    """A process of its own that probes a node when told (`--prober`): the members' event
    loop, busy with a million messages, would otherwise delay the probe itself."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--prober"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    async def time(self, url):
        self.proc.stdin.write(url + "\n")
        self.proc.stdin.flush()
        line = await asyncio.get_running_loop().run_in_executor(None, self.proc.stdout.readline)
        return float(line)

    def stop(self):
        self.proc.kill()


def prober_main():
    for url in sys.stdin:
        print(asyncio.run(probe(url.strip())), flush=True)


async def probe_all(probers, nodes, label, back):
    live = [u for u in nodes.urls if u is not None]
    times = await asyncio.gather(*[p.time(u) for p, u in zip(probers, live)])
    back.extend((label, t) for t in times)


async def everything_killed(redis, nodes, persist):
    """Redis and every node killed together; Redis back from what it kept (its snapshot, or
    the older copy of its append-only file), the nodes started again."""
    redis.kill()
    nodes.kill_all()
    if persist:
        redis.restore_aof()
    redis.start(persist=persist)
    nodes.start_all()


async def run_seed(a, seed):
    random.seed(seed)
    tmp = tempfile.mkdtemp(prefix="amw-fault-")
    if a.topology == "cluster":
        redis = ClusterSet()
        nodes = Nodes(redis.url())
    else:
        redis = Redis(tmp)
        redis.start(persist=False)
        nodes = Nodes(f"redis://127.0.0.1:{redis.port}")
    urls = nodes.urls
    stop_at = asyncio.Event()
    members = [Member(f"m{i}") for i in range(a.members)]
    tasks = [asyncio.ensure_future(run_member(m, urls, stop_at, a.churn)) for m in members]
    await asyncio.sleep(2)  # everyone in the lobby before the first broadcast
    said = [0]
    pubs = [asyncio.ensure_future(publisher(j, urls, said, a.broadcasts, a.rate, stop_at)) for j in range(2)]
    log, back = [], []
    probers = [Prober() for _ in nodes.urls]
    t0 = time.monotonic()

    async def at(fraction, what):
        while said[0] < a.broadcasts * fraction:
            await asyncio.sleep(0.05)
        log.append(f"{time.monotonic() - t0:6.1f} s, after {said[0]} published: {what}")
        print(f"seed {seed}: {log[-1]}", flush=True)

    if a.topology == "cluster":
        await cluster_faults(a, redis, nodes, probers, at, back)
    else:
        await single_faults(a, redis, nodes, probers, at, back)

    await asyncio.gather(*pubs)
    if a.topology == "cluster":
        read_meta = lambda: redis.cli(redis.primary(), "HMGET", "amw:hm:{lobby}", "e", "o").split()  # noqa: E731
    else:
        read_meta = lambda: redis.cli("HMGET", "amw:hm:{lobby}", "e", "o").split()  # noqa: E731
    last, totals, caught_up = await settle(members, stop_at, tasks, read_meta)
    log.append(f"{time.monotonic() - t0:6.1f} s: {caught_up}")
    nodes.stop()
    for p in probers:
        p.stop()
    if a.topology == "cluster":
        redis.stop()
        shutil.rmtree(redis.dir, ignore_errors=True)
    else:
        redis.kill()
    shutil.rmtree(tmp, ignore_errors=True)
    totals["received"] = sum(1 for m in members for e in m.events if e[0] == "msg")
    totals["sessions"] = sum(m.sessions for m in members)
    return {"seed": seed, "said": said[0], "last": last, "log": log, "totals": totals, "back": back}


async def cluster_faults(a, cluster, nodes, probers, at, back):
    """Redis Cluster's faults, in turn (the module's docstring)."""
    await at(0.10, "the lobby's primary and every node killed -9; nodes started at once, the old primary a second later")
    old = cluster.primary()
    cluster.procs[old].kill()
    cluster.procs[old].wait()
    nodes.kill_all()
    nodes.start_all()
    await asyncio.sleep(1)
    cluster.start_server(old)
    await asyncio.get_running_loop().run_in_executor(None, cluster.await_replica)
    await probe_all(probers, nodes, "nodes restarted while the lobby's shard failed over", back)

    await at(0.30, f"the lobby's primary stopped (SIGSTOP) for {a.outage} s, then resumed")
    old = cluster.primary()
    cluster.procs[old].send_signal(signal.SIGSTOP)
    await asyncio.sleep(a.outage)
    cluster.procs[old].send_signal(signal.SIGCONT)
    await asyncio.get_running_loop().run_in_executor(None, cluster.await_replica)
    await probe_all(probers, nodes, "the stopped primary resumed", back)

    await at(0.50, f"every Redis process killed, away for {a.outage} s, back without persistence")
    for proc in cluster.procs.values():
        proc.kill()
        proc.wait()
    await asyncio.sleep(a.outage)
    for port in cluster.ports:
        cluster.start_server(port)
    await asyncio.get_running_loop().run_in_executor(None, cluster.await_replica)
    await probe_all(probers, nodes, "Redis Cluster back after an outage", back)

    await at(0.70, "a node killed -9, started again a second later")
    await nodes.restart(1)

    await at(0.85, "CLUSTER FAILOVER on the lobby's replica")
    old = cluster.primary()
    cluster.cli(cluster.replica_of(old), "CLUSTER", "FAILOVER")
    await probe_all(probers, nodes, "a failover by hand", back)


async def single_faults(a, redis, nodes, probers, at, back):
    """One redis-server's faults, in turn (the module's docstring)."""
    await at(0.10, f"Redis killed, away for {a.outage} s, back without persistence")
    redis.kill()
    await asyncio.sleep(a.outage)
    redis.start(persist=False)
    await probe_all(probers, nodes, "Redis back after an outage", back)

    await at(0.25, "snapshot taken (SAVE)")
    redis.cli("SAVE")
    await at(0.35, "Redis and every node killed -9; Redis back from the older snapshot, nodes started")
    await everything_killed(redis, nodes, persist=False)
    await probe_all(probers, nodes, "nodes restarted with Redis from a snapshot", back)

    await at(0.45, "appendonly yes (everysec) turned on")
    redis.turn_aof_on()
    await at(0.55, "append-only file copied")
    redis.keep_aof()
    await at(0.65, "Redis and every node killed -9; Redis back from the older append-only file, nodes started")
    await everything_killed(redis, nodes, persist=True)
    await probe_all(probers, nodes, "nodes restarted with Redis from an older AOF", back)

    await at(0.8, "a node killed -9, started again a second later")
    await nodes.restart(1)

    await at(0.9, "Redis restarted gracefully from its append-only file")
    redis.graceful_restart()
    await probe_all(probers, nodes, "Redis back after a graceful restart", back)


async def settle(members, stop_at, tasks, read_meta):
    """Waits until every member has the last broadcast, or nothing has moved for 20 s (the
    clients, in one Python process, read far slower than the nodes send), then stops them;
    the last position, the members' outcomes, and a line saying how it ended. The last
    position (`read_meta`: the lobby's epoch and offset in Redis) is read again each round:
    a publisher's last sends may still be on the way."""
    stalled_since, received, t0 = time.monotonic(), -1, time.monotonic()
    while time.monotonic() - stalled_since < 20:
        meta = read_meta()
        last = (int(meta[0]), int(meta[1]))
        behind = [m for m in members if not m.events or
                  next((e for e in reversed(m.events) if e[0] == "msg"), (None, None, None))[1:3] != last]
        if not behind:
            break
        now = sum(len(m.events) for m in members)
        if now != received:
            stalled_since, received = time.monotonic(), now
        await asyncio.sleep(0.5)
    said = (f"every member caught up within {time.monotonic() - t0:.1f} s" if not behind else
            f"{len(behind)} members still behind, nothing moving for 20 s")
    stop_at.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    totals = Counter()
    named = {}
    for m in members:
        totals += check(m, last)
        for e in m.events:
            if e[0] == "msg":
                if named.setdefault((e[1], e[2]), (e[3], e[4])) != (e[3], e[4]):
                    totals["position named twice"] += 1
    return last, totals, said


BAD = ["silent gap", "duplicate", "reordered", "position named twice", "ended behind"]


def report(a, runs):
    lines = [("On Redis Cluster (three primaries, three replicas). " if a.topology == "cluster" else "") +
             f"{a.members} members, {a.broadcasts} broadcasts published per run, said at {a.rate:g}/s, members reconnecting "
             f"within {a.churn:g} s, Redis away {a.outage:g} s in the outage; seeds {', '.join(str(r['seed']) for r in runs)}.",
             ""]
    for r in runs:
        lines.append(f"Seed {r['seed']}: last position offset {r['last'][1]}, "
                     f"{r['totals']['received']} broadcasts received in {r['totals']['sessions']} sessions.")
        lines += ["", "```", *r["log"], "```", ""]
    keys = BAD + sorted({k for r in runs for k in r["totals"] if k not in BAD and k not in ("received", "sessions")})
    lines += ["| outcome | " + " | ".join(f"seed {r['seed']}" for r in runs) + " |",
              "|---|" + "---:|" * len(runs)]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(str(r["totals"][k]) for r in runs) + " |")
    lines += ["", "Time from Redis (or the restarted nodes) back, and whole, to each node publishing again "
              "(a probe's own line coming back), all seeds:", "",
              "| after | probes | p50 | max |", "|---|---:|---:|---:|"]
    labels = []
    for r in runs:
        for label, _ in r["back"]:
            if label not in labels:
                labels.append(label)
    for label in labels:
        t = [x for r in runs for (l, x) in r["back"] if l == label]
        lines.append(f"| {label} | {len(t)} | {statistics.median(t) * 1000:.0f} ms | {max(t) * 1000:.0f} ms |")
    return "\n".join(lines)


def main():
    if sys.argv[1:] == ["--prober"]:
        return prober_main()
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="1,2,3", help="one run per seed, comma-separated")
    ap.add_argument("--members", type=int, default=200)
    ap.add_argument("--broadcasts", type=int, default=20000)
    ap.add_argument("--rate", type=float, default=1500, help="broadcasts per second, both publishers together")
    ap.add_argument("--churn", type=float, default=8.0, help="a member drops its connection within this many s")
    ap.add_argument("--outage", type=float, default=3.0, help="seconds Redis stays away in the outage")
    ap.add_argument("--topology", choices=["single", "cluster"], default="single")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--features", "cluster", "--example", "cluster_chat"],
                   cwd=ROOT, check=True)
    runs = [asyncio.run(run_seed(a, int(seed))) for seed in a.seeds.split(",")]
    text = report(a, runs)
    print(text)
    os.makedirs(os.path.join(ROOT, "bench"), exist_ok=True)
    name, flag = ("history_fault-cluster", " --topology cluster") if a.topology == "cluster" else ("history_fault", "")
    with open(os.path.join(ROOT, "bench", f"{name}.md"), "w") as f:
        f.write(f"# History fault run\n\nGenerated by `python3 scripts/history_fault.py{flag}`.\n\n" + text + "\n")
    bad = sum(r["totals"][k] for r in runs for k in BAD)
    slow = [x for r in runs for _, x in r["back"] if x > 1.0]
    sys.exit(1 if bad or slow else 0)


if __name__ == "__main__":
    main()
