#!/usr/bin/env python3
"""What a target that keeps `MessageConnect::headers` costs per connection.

    python3 scripts/bench_headers.py --against REV [--rounds 3] [--conns 10000]

examples/bench_server with `--keep-headers` (its workers keep every connection's headers)
holds --conns connections from examples/loadgen, idle after each has echoed one message
of --size bytes; the server's RSS growth per connection is read from /proc. Run beside REV's bench_server with the same flag (built in
a git worktree under target/) and beside this build without the flag, in alternating
order each round; prints medians.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import EX, ROOT, build_against, run_one  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--against", metavar="REV", required=True, help="the revision before the change")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--size", type=int, default=20000, help="bytes of the one message each connection echoes first")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    subprocess.run(["cargo", "build", "--release", "--example", "loadgen", "--example", "bench_server"], cwd=ROOT, check=True)
    ours = os.path.join(EX, "bench_server")
    servers = [
        (f"{a.against}, headers kept", [build_against(a.against), "--keep-headers"]),
        ("this build, headers kept", [ours, "--keep-headers"]),
        ("this build, headers dropped", [ours]),
    ]
    # Each connection first echoes a message larger than the 8 KiB read buffer its headers
    # were parsed in, so the buffer moves on: what still points into the old one keeps it.
    hold = ["--conns", str(a.conns), "--sources", "8", "--first-message", "--size", str(a.size)]
    runs = {label: [] for label, _ in servers}
    for rnd in range(a.rounds):
        for label, args in servers if rnd % 2 == 0 else list(reversed(servers)):
            r = run_one(args, "hold", hold, 3)
            runs[label].append(r["kib_per_conn"])
            print(f"round {rnd + 1} {label}: {r['kib_per_conn']:.2f} KiB/conn", flush=True)
    print(f"\nidle RSS per connection, {a.conns} connections, medians of {a.rounds} rounds:")
    for label, _ in servers:
        print(f"| {label} | {statistics.median(runs[label]):.2f} KiB |")


if __name__ == "__main__":
    main()
