#!/usr/bin/env python3
"""User-space instructions per echoed message (or per handshake), per server: a figure
that does not drift.

    python3 scripts/instructions.py [--secs 5] [--inflight 1] [--size 64] [--kind text]
    python3 scripts/instructions.py --handshakes [--conns 8]
    python3 scripts/instructions.py --only meta --rounds 3   (our server alone, three runs)
    python3 scripts/instructions.py --fanout 1000 --only meta  (per delivered broadcast)
    python3 scripts/instructions.py --only meta --against REV  (beside REV's bench_server, each mode)

CPU time per message on a shared 2-core VM moves by 30% between runs; the kernel's share
(one recv and one send per message at 1 in flight, the same for every server) also
hides what the server's own code costs. This runs each server of scripts/bench.py under
valgrind's cachegrind (instruction counts only), drives it with examples/loadgen for
--secs, and prints instructions per message and the ratio to the direct
actix-web-actors echo. Start-up and handshakes are included, a few percent of the total
at the default settings. With --handshakes the load is loadgen's connect-rate mode
(handshake, close, again) and the figure is instructions per cycle; with --fanout N, N
receivers of one publisher's broadcasts (bench_server --fanout, loadgen fanout) and the
figure is instructions per delivered message. --against REV builds REV's bench_server in
a git worktree and runs it beside this build's, as "REV". Needs valgrind
(apt-get install valgrind). Loopback only.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # importing bench.py must not leave __pycache__ behind
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import EX, ROOT, SERVERS, build_against, free_port  # noqa: E402


def wait_listening(port, proc, timeout=60.0):
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited early with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)  # polling a port that valgrind is still starting: no event to await
    sys.exit("server did not start listening")


def instructions(out_file):
    with open(out_file) as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
    sys.exit(f"no summary in {out_file}")


def run_one(sargs, a):
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cachegrind.out")
        server = subprocess.Popen(
            ["taskset", "-c", "0", "valgrind", "--tool=cachegrind", "--cache-sim=no",
             f"--cachegrind-out-file={out}", binary(sargs[0]), *sargs[1:], "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"ws://127.0.0.1:{port}/ws"
        if a.handshakes:
            cmd = ["connect-rate", "--url", url, "--conns", str(a.conns), "--secs", str(a.secs)]
        elif a.fanout:
            cmd = ["fanout", "--url", url, "--conns", str(a.fanout), "--inflight", "4", "--size", str(a.size),
                   "--kind", a.kind, "--secs", str(a.secs)]
        else:
            cmd = ["echo", "--url", url, "--conns", str(a.conns), "--inflight", str(a.inflight),
                   "--size", str(a.size), "--kind", a.kind, "--secs", str(a.secs)]
        try:
            wait_listening(port, server)
            load = subprocess.run(["taskset", "-c", "1", os.path.join(EX, "loadgen"), *cmd],
                                  capture_output=True, text=True, check=True)
        finally:
            server.send_signal(2)  # SIGINT: actix-web stops, valgrind writes its counts
            server.wait(timeout=120)
        report = json.loads(load.stdout.strip().splitlines()[-1])
        count = report["cycles"] if a.handshakes else report["delivered"] if a.fanout else report["msgs"]
        return instructions(out) / count, count


def binary(name):
    """An example's name, or a path to a binary."""
    return name if os.sep in name else os.path.join(EX, name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=float, default=5.0)
    ap.add_argument("--conns", type=int, default=None, help="50 for echo, 8 for --handshakes")
    ap.add_argument("--handshakes", action="store_true", help="handshake-and-close cycles instead of echo")
    ap.add_argument("--inflight", type=int, default=1)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--kind", default="text", choices=["text", "binary"])
    ap.add_argument("--only", metavar="TEXT", help="only the servers whose name contains TEXT (e.g. meta)")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each server, alternating")
    ap.add_argument("--fanout", type=int, metavar="N", help="N receivers of broadcasts instead of echo")
    ap.add_argument("--against", metavar="REV", help="also run REV's bench_server (built in a worktree)")
    ap.add_argument("--metrics", action="store_true",
                    help="also run bench_server built with the metrics feature, with a Prometheus recorder")
    a = ap.parse_args()
    if a.conns is None:
        a.conns = 8 if a.handshakes else 50
    subprocess.run(["cargo", "build", "--release", "--example", "loadgen", "--example", "bench_server",
                    "--example", "baseline_actors", "--example", "baseline_actix_ws", "--example", "baseline_tokio"],
                   cwd=ROOT, check=True)
    if a.handshakes:
        print(f"handshake + close cycles, {a.conns} at a time, {a.secs:g} s under cachegrind")
    elif a.fanout:
        print(f"{a.size} B {a.kind} broadcast to {a.fanout} receivers, 4 in flight, {a.secs:g} s under cachegrind")
    else:
        print(f"{a.size} B {a.kind}, {a.conns} conns, {a.inflight} in flight, {a.secs:g} s under cachegrind")
    unit = "cycle" if a.handshakes else "delivery" if a.fanout else "msg"
    servers = [(n, s) for n, s in SERVERS if a.only is None or a.only in n]
    if a.against:
        # REV's bench_server in each of our server modes selected, first, for a same-run ratio.
        rev = build_against(a.against)
        ours = [(n, s) for n, s in servers if s[0] == "bench_server"]
        for n, s in reversed(ours):
            servers.insert(0, (f"{a.against} {n.split(' on ')[-1]}", [rev] + s[1:]))
    if a.metrics:
        # The same server built with the feature (in a target directory of its own), with
        # a recorder installed, right after the build without it.
        tree = os.path.join(ROOT, "target", "metrics")
        subprocess.run(["cargo", "build", "--release", "--features", "metrics", "--example", "bench_server"],
                       cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": tree})
        with_metrics = os.path.join(tree, "release", "examples", "bench_server")
        at = next(i for i, (n, _) in enumerate(servers) if "meta" in n)
        name, sargs = servers[at]
        servers.insert(at + 1, (name.replace("actix-meta-websocket", "metrics + recorder"),
                                [with_metrics] + sargs[1:] + ["--metrics"]))
    if a.fanout:
        # Broadcasts through the crate's groups, two worker threads; the baselines that
        # cannot broadcast are left out.
        servers = [(n, s + ["--fanout", "--workers", "2"]) for n, s in servers if "meta" in n or n == a.against]
    for rnd in range(a.rounds):
        base = None
        for name, sargs in servers:
            per, count = run_one(sargs, a)
            base = base or per
            print(f"{name:34} {per:9,.0f} instructions/{unit}  {per / base:5.2f}x  ({count} {unit}s)", flush=True)


if __name__ == "__main__":
    main()
