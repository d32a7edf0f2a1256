#!/usr/bin/env python3
"""Fault run of group history and recovery across nodes: is anything ever lost silently,
doubled, or reordered?

    python3 scripts/history_fault.py [--members 200] [--broadcasts 20000] [--rate 1500]

Starts a redis-server and three `cluster_chat` nodes (each its own process, every room
keeping 20,000 messages), then `--members` WebSocket clients (Python `websockets`) in the
lobby, spread over the nodes, and two publishers that say `p<j> <n>` for n = 0, 1, ...
until `--broadcasts` in all have been said. Meanwhile:

- members drop their connection at random and come back since the last position they
  saw, to a node picked at random (a page that reconnects);
- Redis is restarted once without persistence (history lost: a new epoch), and once with
  persistence (`appendonly yes`, enabled at run time, then a graceful restart);
- one node is killed with `kill -9`; its clients come back on the others.

Each member records every broadcast it got (`@<position> [lobby] <who>: <text>`), every
close code, and every "missed messages are gone (<reason>)" notice: the explicit
"cannot recover". Then, per member: within each stretch between explicit notices the
positions must follow one another exactly (one epoch, offset + 1): an epoch change or a
jump is a silent gap, a repeat a duplicate; each publisher's `n` must rise (a drop is a
reordering); and every member must end on the last broadcast. Prints the counts and the
reasons, and writes bench/history_fault.md. Needs redis-server and Python websockets
(scripts/test.sh installs both). Loopback only.
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
import tempfile
import time
from collections import Counter

import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "examples", "cluster_chat")
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
                "--appendonly", "yes" if persist else "no"]
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

    def persist_and_restart(self):
        """Turns the append-only file on, waits for it to be written, shuts down gracefully
        (everything flushed) and starts again from it."""
        self.cli("CONFIG", "SET", "appendonly", "yes")
        deadline = time.time() + 30
        while "aof_rewrite_in_progress:0" not in self.cli("INFO", "persistence") or \
                "aof_enabled:1" not in self.cli("INFO", "persistence"):
            if time.time() > deadline:
                sys.exit("the append-only file was not written")
            time.sleep(0.05)
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
        hold = random.uniform(1, churn) if churn else 3600
        await session(member, random.choice(live), stop_at, hold)


async def publisher(j, urls, said, target, rate, stop_at):
    n = 0
    while said[0] < target and not stop_at.is_set():
        live = [u for u in urls if u is not None]
        try:
            async with websockets.connect(f"{random.choice(live)}?room=lobby&since=now", open_timeout=5) as ws:
                async def drain():
                    try:
                        async for _ in ws:
                            pass
                    except websockets.exceptions.ConnectionClosed:
                        pass
                reader = asyncio.ensure_future(drain())
                while said[0] < target:
                    await ws.send(f"p{j} {n}")
                    n += 1
                    said[0] += 1
                    await asyncio.sleep(1 / rate)
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


async def main_async(a):
    tmp = tempfile.mkdtemp(prefix="amw-fault-")
    redis = Redis(tmp)
    redis.start(persist=False)
    url = f"redis://127.0.0.1:{redis.port}"
    nodes = [start_node(url) for _ in range(3)]
    urls = [u for _, u in nodes]
    stop_at = asyncio.Event()
    members = [Member(f"m{i}") for i in range(a.members)]
    tasks = [asyncio.ensure_future(run_member(m, urls, stop_at, a.churn)) for m in members]
    await asyncio.sleep(2)  # everyone in the lobby before the first broadcast
    said = [0]
    pubs = [asyncio.ensure_future(publisher(j, urls, said, a.broadcasts, a.rate / 2, stop_at)) for j in range(2)]
    log = []
    t0 = time.monotonic()

    async def at(fraction, what, action):
        while said[0] < a.broadcasts * fraction:
            await asyncio.sleep(0.05)
        log.append(f"{time.monotonic() - t0:6.1f} s, after {said[0]} said: {what}")
        print(log[-1], flush=True)
        action()

    def kill_node():
        proc, _ = nodes[1]
        proc.send_signal(signal.SIGKILL)
        urls[1] = None

    await at(0.2, "Redis restarted without persistence", lambda: (redis.kill(), redis.start(persist=False)))
    await at(0.45, "Redis restarted with persistence (appendonly yes)", redis.persist_and_restart)
    await at(0.7, "a node killed with kill -9", kill_node)
    await asyncio.gather(*pubs)
    # Until every member has the last broadcast, or nothing has moved for 20 s (the
    # clients, in one Python process, read far slower than the nodes send). The last
    # position is read again each round: a publisher's last sends may still be on the way.
    stalled_since, received = time.monotonic(), -1
    while time.monotonic() - stalled_since < 20:
        meta = redis.cli("HMGET", "amw:hm:lobby", "e", "o").split()
        last = (int(meta[0]), int(meta[1]))
        behind = [m for m in members if not m.events or
                  next((e for e in reversed(m.events) if e[0] == "msg"), (None, None, None))[1:3] != last]
        if not behind:
            break
        now = sum(len(m.events) for m in members)
        if now != received:
            stalled_since, received = time.monotonic(), now
        await asyncio.sleep(0.5)
    log.append(f"{time.monotonic() - t0:6.1f} s: every member caught up" if not behind else
               f"{time.monotonic() - t0:6.1f} s: {len(behind)} members still behind, nothing moving for 20 s")
    stop_at.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for proc, _ in nodes:
        if proc.poll() is None:
            proc.kill()
    redis.kill()
    totals = Counter()
    received = 0
    for m in members:
        totals += check(m, last)
        received += sum(1 for e in m.events if e[0] == "msg")
    sessions = sum(m.sessions for m in members)
    bad = totals["silent gap"] + totals["duplicate"] + totals["reordered"] + totals["ended behind"]
    lines = [f"members: {len(members)}, broadcasts said: {said[0]}, last position offset {last[1]}, "
             f"broadcasts received in all: {received}, sessions: {sessions}",
             *log,
             "",
             "| outcome | count |", "|---|---:|"]
    for k in ["silent gap", "duplicate", "reordered", "ended behind"]:
        lines.append(f"| {k} | {totals[k]} |")
    for k, v in sorted(totals.items()):
        if k not in ("silent gap", "duplicate", "reordered", "ended behind"):
            lines.append(f"| {k} | {v} |")
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.join(ROOT, "bench"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "history_fault.md"), "w") as f:
        f.write("# History fault run\n\nGenerated by `python3 scripts/history_fault.py`.\n\n" + text + "\n")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=200)
    ap.add_argument("--broadcasts", type=int, default=20000)
    ap.add_argument("--rate", type=float, default=1500, help="broadcasts per second, both publishers together")
    ap.add_argument("--churn", type=float, default=8.0, help="a member drops its connection within this many s")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--features", "cluster", "--example", "cluster_chat"],
                   cwd=ROOT, check=True)
    sys.exit(asyncio.run(main_async(a)))


if __name__ == "__main__":
    main()
