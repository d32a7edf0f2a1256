#!/usr/bin/env python3
"""Fan-out benchmark: the crate's groups against the rooms actix users write today.

    python3 scripts/bench_groups.py [--rounds 3] [--secs 4] [--only TEXT]

Servers, each with 2 actix-web worker threads, pinned together to CPU 0:
- actix-web-actors room: one room actor holding every session's `Addr` and sending each
  a text message (actix's chat example); the baseline of every ratio;
- actix-meta-websocket groups: `Groups::broadcast_except` from a worker on each thread;
- actix-meta-websocket hub: one hub actor calling `send_prepared` for each member (this
  crate before groups);
- actix-ws room: one task holding every `Session`, awaiting `text` for each member.

examples/loadgen (fanout mode, pinned to CPU 1) opens R receivers and one publisher whose
messages the server broadcasts to the receivers; the publisher keeps 4 broadcasts in
flight, or publishes at a fixed rate. The server's CPU time is read from /proc once the
connections are open (handshakes are left out) and at the end. Rounds alternate the order
of the servers; ratios are medians of per-round ratios against the actix-web-actors room.

Also measured: join + leave of 10,000 members (loadgen churn), server CPU.

Writes bench/groups.{json,md}, bench/groups.png and the guide's groups chapter between the groups markers.
Loopback only; every run is bounded by --secs.
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
from bench import CLK, EX, ROOT, bar_chart, free_port, publish, start_server  # noqa: E402

SERVERS = [
    ("actix-web-actors room", ["baseline_actors", "--mode", "room"]),
    ("actix-meta-websocket groups", ["bench_server", "--fanout", "groups"]),
    ("actix-meta-websocket hub", ["bench_server", "--fanout", "hub"]),
    ("actix-ws room", ["baseline_actix_ws", "--room"]),
]
BASE = SERVERS[0][0]
OURS = SERVERS[1][0]

SCENARIOS = [
    ("64 B to 1,000 members", ["--conns", "1000", "--size", "64"]),
    ("64 B to 10,000 members", ["--conns", "10000", "--size", "64", "--sources", "8"]),
    ("4 KiB to 1,000 members", ["--conns", "1000", "--size", "4096"]),
    ("64 B to 1,000 members, 20/s", ["--conns", "1000", "--size", "64", "--rate", "20"]),
    ("64 B to 10,000 members, 2/s", ["--conns", "10000", "--size", "64", "--rate", "2", "--sources", "8"]),
]

METRICS = [
    ("delivered_per_s", "delivered/s", True),
    ("cpu_us", "server CPU µs/delivery", False),
    ("p50_us", "p50 µs", False),
    ("p99_us", "p99 µs", False),
]


def cpu(pid):
    """User and system CPU seconds of `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK, int(fields[12]) / CLK


def run(server, mode, extra, secs):
    port = free_port()
    srv = start_server(server + ["--workers", "2"], port)
    try:
        cmd = ["taskset", "-c", "1", os.path.join(EX, "loadgen"), mode, "--url", f"ws://127.0.0.1:{port}/ws",
               "--secs", str(secs), "--inflight", "4", "--kind", "text"] + extra
        lg = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = lg.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"{mode}: {line!r}")
        u0, s0 = cpu(srv.pid)
        # Read at the results line: the load generator closes its connections after it.
        line = lg.stdout.readline()
        u1, s1 = cpu(srv.pid)
        lg.communicate(timeout=secs + 180)
        r = json.loads(line)
        r["user_s"], r["sys_s"] = u1 - u0, s1 - s0
        if mode == "fanout":
            n = max(r["delivered"], 1)
            r["cpu_us"] = (r["user_s"] + r["sys_s"]) * 1e6 / n
            r["user_us"], r["sys_us"] = r["user_s"] * 1e6 / n, r["sys_s"] * 1e6 / n
        return r
    finally:
        srv.kill()
        srv.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=float, default=4.0)
    ap.add_argument("--only", metavar="TEXT", help="only scenarios whose name contains TEXT; prints, writes nothing")
    ap.add_argument("--update", action="store_true",
                    help="with --only: put the new runs into bench/groups.json's and write the report again")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    subprocess.run(["cargo", "build", "--release", "--example", "loadgen", "--example", "bench_server",
                    "--example", "baseline_actors", "--example", "baseline_actix_ws"], cwd=ROOT, check=True)
    results = {}
    for name, extra in SCENARIOS:
        if a.only and a.only not in name:
            continue
        for rnd in range(a.rounds):
            for label, server in (SERVERS if rnd % 2 == 0 else list(reversed(SERVERS))):
                r = run(server, "fanout", extra, a.secs)
                results.setdefault(name, {}).setdefault(label, []).append(r)
                print(f"[{name}] round {rnd + 1} {label}: {r['delivered_per_s']:.0f}/s, {r['cpu_us']:.2f} µs "
                      f"(user {r['user_us']:.2f}, sys {r['sys_us']:.2f}), p50 {r['p50_us']} p99 {r['p99_us']}", flush=True)
    churn = []
    if not a.only or a.only in "churn":
        for rnd in range(a.rounds):
            r = run(SERVERS[1][1], "churn", ["--conns", "9999", "--sources", "8"], a.secs)
            churn.append(r)
            print(f"[churn] round {rnd + 1}: {r['members']} members, {r['user_s'] + r['sys_s']:.3f} s CPU, "
                  f"{r['secs']:.3f} s wall", flush=True)
    if a.only and not a.update:
        return
    if a.update:
        with open(os.path.join(ROOT, "bench", "groups.json")) as f:
            old = json.load(f)
        kept = {name: old["runs"][name] for name, _ in SCENARIOS if name in old["runs"] and name not in results}
        results = {name: results.get(name) or kept[name] for name, _ in SCENARIOS if name in results or name in kept}
        churn = churn or old["churn"]
    report(a, results, churn)


def med(runs, key):
    return statistics.median(r[key] for r in runs)


def ratio(runs, base_runs, key):
    """Median of per-round ratios: rounds run minutes apart on a VM whose speed drifts."""
    return statistics.median(r[key] / max(b[key], 1e-9) for r, b in zip(runs, base_runs))


def report(a, results, churn):
    rows = ["| scenario | server | delivered/s | server CPU µs/delivery (user + sys) | vs room | p50 ms | p99 ms |",
            "|---|---|---:|---:|---:|---:|---:|"]
    summary = {}
    for name, by_server in results.items():
        base = by_server[BASE]
        for label, _ in SERVERS:
            runs = by_server[label]
            s = {k: med(runs, k) for k in ("delivered_per_s", "cpu_us", "user_us", "sys_us", "p50_us", "p99_us")}
            s["cpu_ratio"] = ratio(runs, base, "cpu_us")
            s["p99_ratio"] = ratio(runs, base, "p99_us")
            summary.setdefault(name, {})[label] = s
            bold = "**" if label == OURS else ""
            rows.append(f"| {name} | {bold}{label}{bold} | {s['delivered_per_s']:,.0f} | "
                        f"{bold}{s['cpu_us']:.2f}{bold} ({s['user_us']:.2f} + {s['sys_us']:.2f}) | "
                        f"{s['cpu_ratio']:.2f}x | {s['p50_us'] / 1000:.1f} | {s['p99_us'] / 1000:.1f} |")
    churn_cpu = [r["user_s"] + r["sys_s"] for r in churn]
    text = "\n".join(rows)
    if churn_cpu:
        text += (f"\n\nJoin + leave of {churn[0]['members']:,} members (each joins a group, then leaves it): "
                 f"**{statistics.median(churn_cpu):.3f} s** of server CPU (median of {len(churn_cpu)}; "
                 f"rounds: {', '.join(f'{c:.3f}' for c in churn_cpu)}).")
    text += (f"\n\n{a.rounds} rounds of {a.secs:g} s, 2 worker threads, server on CPU 0, load generator on CPU 1; "
             "`python3 scripts/bench_groups.py`.")
    publish("groups", {"summary": summary, "runs": results, "churn": churn, "when": time.strftime("%Y-%m-%d")},
            text, "groups", md="# Fan-out: groups against hand-written rooms\n\n" + text + "\n")
    print(text)
    chart(summary)


def chart(summary):
    names = list(summary)
    bar_chart(names, [s for s, _ in SERVERS], lambda i, server: summary[names[i]][server]["cpu_us"],
              os.path.join(ROOT, "bench", "groups.png"), "server CPU µs per delivered message (lower is better)",
              "Broadcast fan-out, 2 worker threads, loopback")

if __name__ == "__main__":
    main()
