#!/usr/bin/env python3
"""What permessage-deflate costs, per setting, against an earlier build in the same run.

    python3 scripts/bench_deflate.py [--rounds 3] [--secs 4] [--against REV] [--only rss|wire|fanout]

Three measurements, each with the server (examples/bench_server) pinned to CPU 0 and its
clients to CPU 1, servers alternating order each round; medians are printed:

- rss: 1,000 Python `websockets` clients with their default offer, each sending one
  2 KiB JSON message and reading the echo, then idle: server RSS growth per connection.
- wire: 10 connections, 4 in flight, 2 KiB of market-feed JSON echoed (examples/loadgen
  echo): server CPU per message and bytes the server sent per payload byte.
- fanout: 1,000 receivers of a broadcast (loadgen fanout, bench_server --fanout), 2 KiB
  JSON: server CPU per delivered message.

--against REV builds that revision's bench_server in a git worktree (under target/) and
runs it as "REV" with its own `--compression`. Writes bench/deflate.md and the table in
the guide's operating chapter between the deflate markers.
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
from bench import EX, ROOT, build_against, cpu_seconds, free_port, publish, rss_kib, start_server  # noqa: E402

MODES = [
    # label, bench_server flags, loadgen offers deflate
    ("uncompressed", [], False),
    ("default", ["--compression", "default"], True),
    ("shared", ["--compression", "shared"], True),
    ("dedicated", ["--compression", "dedicated"], True),
    ("full windows, dedicated", ["--compression", "full"], True),
]


def start(binary, flags, port):
    return start_server([binary] + flags, port)


def rss_run(binary, flags, deflate, conns):
    port = free_port()
    srv = start(binary, flags, port)
    try:
        time.sleep(0.3)
        before = rss_kib(srv.pid)
        cli = subprocess.Popen(["taskset", "-c", "1", sys.executable, os.path.join(ROOT, "scripts", "deflate_clients.py"),
                                f"ws://127.0.0.1:{port}/ws", "--conns", str(conns), "--secs", "120"] + (["--expect-deflate"] if deflate else []),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = cli.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"clients: {line!r}")
        time.sleep(1.0)
        held = rss_kib(srv.pid)
        cli.stdin.close()
        cli.wait(timeout=60)
        return {"kib_per_conn": (held - before) / conns}
    finally:
        srv.kill()
        srv.wait()


def loadgen_run(binary, flags, mode, extra, secs):
    port = free_port()
    srv = start(binary, flags, port)
    try:
        time.sleep(0.3)
        cpu0 = cpu_seconds(srv.pid)
        cmd = ["taskset", "-c", "1", os.path.join(EX, "loadgen"), mode, "--url", f"ws://127.0.0.1:{port}/ws",
               "--secs", str(secs)] + extra
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=secs + 180, check=True).stdout
        cpu = cpu_seconds(srv.pid) - cpu0
        r = json.loads(out.strip().splitlines()[-1])
        if mode == "echo":
            r["cpu_us_per_msg"] = cpu * 1e6 / max(r["msgs"], 1)
            r["wire_per_payload"] = r["wire_bytes_in"] / max(r["msgs"] * r["size"], 1)
        else:
            r["cpu_us_per_msg"] = cpu * 1e6 / max(r["delivered"], 1)
            r["wire_per_payload"] = r["wire_bytes_in"] / max(r["delivered"] * r["size"], 1)
        return r
    finally:
        srv.kill()
        srv.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=float, default=4.0)
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--against", metavar="REV", help="an earlier revision to run beside this one")
    ap.add_argument("--only", choices=["rss", "wire", "fanout"])
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    subprocess.run(["cargo", "build", "--release", "--example", "loadgen", "--example", "bench_server"], cwd=ROOT, check=True)
    ours = os.path.join(EX, "bench_server")
    servers = [(label, ours, flags, deflate) for label, flags, deflate in MODES]
    if a.against:
        servers.insert(1, (f"{a.against} (before)", build_against(a.against), ["--compression"], True))
    fanout_servers = [s for s in servers if s[0] in ("uncompressed", "default", "shared")]
    tests = {
        "rss": (servers, lambda s: rss_run(s[1], s[2], s[3], a.conns)),
        "wire": (servers, lambda s: loadgen_run(s[1], s[2], "echo", ["--conns", "10", "--inflight", "4", "--size", "2048",
                                                                   "--kind", "text"] + (["--deflate"] if s[3] else []), a.secs)),
        "fanout": (fanout_servers, lambda s: loadgen_run(s[1], s[2] + ["--fanout", "--workers", "2"], "fanout",
                                                        ["--conns", str(a.conns), "--inflight", "4", "--size", "2048",
                                                         "--kind", "text"] + (["--deflate"] if s[3] else []), a.secs)),
    }
    results = {}
    for test, (group, run) in tests.items():
        if a.only and a.only != test:
            continue
        for rnd in range(a.rounds):
            for s in (group if rnd % 2 == 0 else list(reversed(group))):
                r = run(s)
                results.setdefault(test, {}).setdefault(s[0], []).append(r)
                print(f"[{test}] round {rnd + 1} {s[0]}: " + ", ".join(
                    f"{k}={r[k]:.3f}" for k in ("kib_per_conn", "cpu_us_per_msg", "wire_per_payload") if k in r), flush=True)
    report(a, results)


def med(runs, key):
    return statistics.median(r[key] for r in runs)


def report(a, results):
    cmd = f"python3 scripts/bench_deflate.py --rounds {a.rounds} --secs {a.secs:g}" + (f" --against {a.against}" if a.against else "")
    lines = [f"Generated by `{cmd}`: medians of {a.rounds} rounds, server pinned to CPU 0, clients to CPU 1 "
             "(2-core shared VM).", ""]
    if "rss" in results:
        base = med(results["rss"]["uncompressed"], "kib_per_conn")
        lines += [f"**Idle memory: {a.conns} Python `websockets` clients (default offer), one 2 KiB JSON message each way**", "",
                  "| server | RSS KiB per connection | vs uncompressed |", "|---|---:|---:|"]
        for label, runs in results["rss"].items():
            v = med(runs, "kib_per_conn")
            lines.append(f"| {label} | {v:.1f} | {v / base:.2f}x |")
        lines.append("")
    if "wire" in results:
        lines += ["**Echo of 2 KiB market-feed JSON, 10 connections, 4 in flight**", "",
                  "| server | server CPU µs/msg | bytes sent per payload byte | shrinks by |", "|---|---:|---:|---:|"]
        for label, runs in results["wire"].items():
            w = med(runs, "wire_per_payload")
            lines.append(f"| {label} | {med(runs, 'cpu_us_per_msg'):.1f} | {w:.3f} | {1 / w:.1f}x |")
        lines.append("")
    if "fanout" in results:
        f = results["fanout"]
        lines += [f"**Broadcast of 2 KiB JSON to {a.conns} connections (`PreparedMessage`), 2 worker threads**", "",
                  "| server | server CPU µs per delivered message | delivered/s | bytes per payload byte |",
                  "|---|---:|---:|---:|"]
        for label, runs in f.items():
            lines.append(f"| {label} | {med(runs, 'cpu_us_per_msg'):.2f} | {med(runs, 'delivered_per_s'):.0f} | "
                         f"{med(runs, 'wire_per_payload'):.3f} |")
        if "shared" in f and "default" in f:
            ratios = [d["cpu_us_per_msg"] / s["cpu_us_per_msg"] for d, s in zip(f["default"], f["shared"])]
            lines += ["", f"Shared mode is {statistics.median(ratios):.1f}x cheaper per delivery than per-connection "
                      f"compression (median of per-round ratios; {min(ratios):.1f}x to {max(ratios):.1f}x)."]
        lines.append("")
    table = "\n".join(lines)
    print(table)
    if a.only:
        return
    publish("deflate", results, table, "deflate")

if __name__ == "__main__":
    main()
