#!/usr/bin/env python3
"""End-to-end benchmark: our bench_server against the actix baselines, same run.

    python3 scripts/bench.py [--rounds 3] [--secs 5] [--quick]

Builds the release examples, then for each scenario and round starts every server in
turn pinned to CPU 0 (taskset), drives it with examples/loadgen pinned to CPU 1, and
reads the server's CPU time and RSS from /proc. Prints medians and ratios against the
direct actix-web-actors echo, writes bench/results.json and bench/results.md, puts the
table into the guide's performance chapter between the bench markers, and draws bench/chart.png.
Loopback only; every run is bounded by --secs.
"""
import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EX = os.path.join(ROOT, "target", "release", "examples")
CLK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

# Ours runs next to the baseline in every round (forward and reversed order), so the
# per-round ratio compares runs minutes apart at most: this shared VM's speed drifts by
# 30% over a run, which medians of separate series do not cancel.
SERVERS = [
    ("actix-web-actors direct", ["baseline_actors", "--mode", "direct"]),
    ("actix-meta-websocket on WsServer (pool of 4)", ["bench_server", "--owned"]),
    ("actix-meta-websocket on HttpServer (pool of 4)", ["bench_server"]),
    ("actix-web-actors + pool of 4", ["baseline_actors", "--mode", "pool"]),
    ("actix-ws", ["baseline_actix_ws"]),
    ("bare tokio echo (floor)", ["baseline_tokio"]),
]
BASE = SERVERS[0][0]

SCENARIOS = [
    ("64 B text, 50 conns, 1 in flight", "echo", ["--conns", "50", "--inflight", "1", "--size", "64", "--kind", "text"]),
    ("64 B text, 50 conns, 32 in flight", "echo", ["--conns", "50", "--inflight", "32", "--size", "64", "--kind", "text"]),
    ("64 KiB binary, 10 conns, 4 in flight", "echo", ["--conns", "10", "--inflight", "4", "--size", "65536", "--kind", "binary"]),
    ("10,000 idle connections", "hold", ["--conns", "10000", "--sources", "8"]),
    ("handshake + close cycles", "connect-rate", ["--conns", "8"]),
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def rss_kib(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_KIB


def start_server(args, port):
    """Starts `args[0]` (an example's name, or a path to a binary) pinned to CPU 0 and
    waits until it accepts connections."""
    binary = args[0] if os.sep in args[0] else os.path.join(EX, args[0])
    cmd = ["taskset", "-c", "0", binary] + args[1:] + ["--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{args[0]} did not start")


def build_against(rev):
    """Builds revision `rev`'s bench_server in a git worktree under target/; its path."""
    tree = os.path.join(ROOT, "target", f"against-{rev}")
    if not os.path.isdir(tree):
        subprocess.run(["git", "worktree", "add", "--detach", tree, rev], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--example", "bench_server"], cwd=tree, check=True)
    return os.path.join(tree, "target", "release", "examples", "bench_server")


def loadgen(mode, extra, port, secs):
    cmd = ["taskset", "-c", "1", os.path.join(EX, "loadgen"), mode, "--url", f"ws://127.0.0.1:{port}/ws", "--secs", str(secs)] + extra
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def run_one(server_args, mode, extra, secs):
    port = free_port()
    srv = start_server(server_args, port)
    try:
        time.sleep(0.3)
        base_rss = rss_kib(srv.pid)
        cpu0 = cpu_seconds(srv.pid)
        lg = loadgen(mode, extra, port, secs)
        result = {}
        if mode == "hold":
            line = lg.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"hold: {line!r}")
            time.sleep(1.0)
            held = rss_kib(srv.pid)
            conns = int(extra[extra.index("--conns") + 1])
            result["kib_per_conn"] = (held - base_rss) / conns
            result["rss_base_kib"] = base_rss
            result["rss_held_kib"] = held
        out, _ = lg.communicate(timeout=secs + 120)
        cpu = cpu_seconds(srv.pid) - cpu0
        last = json.loads(out.strip().splitlines()[-1])
        result.update(last)
        if mode == "echo":
            result["cpu_us_per_msg"] = cpu * 1e6 / max(last["msgs"], 1)
        if mode == "connect-rate":
            result["cpu_us_per_cycle"] = cpu * 1e6 / max(last["cycles"], 1)
        result["server_cpu_s"] = cpu
        return result
    finally:
        srv.kill()
        srv.wait()


def metric_names(mode):
    return {
        "echo": [("msgs_per_s", "msgs/s", True), ("cpu_us_per_msg", "server CPU µs/msg", False), ("p50_us", "p50 µs", False), ("p99_us", "p99 µs", False)],
        "hold": [("kib_per_conn", "KiB RSS/conn", False)],
        "connect-rate": [("cycles_per_s", "cycles/s", True), ("cpu_us_per_cycle", "server CPU µs/cycle", False)],
    }[mode]


def end_to_end_args():
    """The options of the end-to-end benchmarks (rounds, seconds, --quick, --only), with
    the descriptor limit raised: 10,000 connections need that many on each side."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=float, default=5.0)
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s, for a smoke check")
    ap.add_argument("--only", metavar="TEXT", help="run only scenarios whose name contains TEXT; prints, writes nothing")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.secs = 1, 2.0
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return a


def main():
    a = end_to_end_args()
    subprocess.run(["cargo", "build", "--release", "--example", "loadgen", "--example", "bench_server",
                    "--example", "baseline_actors", "--example", "baseline_actix_ws", "--example", "baseline_tokio"],
                   cwd=ROOT, check=True)
    results = {}
    for name, mode, extra in SCENARIOS:
        if a.only and a.only not in name:
            continue
        for rnd in range(a.rounds):
            # Alternate the order each round so drift on a shared machine hits everyone.
            order = SERVERS if rnd % 2 == 0 else list(reversed(SERVERS))
            for sname, sargs in order:
                r = run_one(sargs, mode, extra, a.secs)
                results.setdefault(name, {}).setdefault(sname, []).append(r)
                print(f"[{name}] round {rnd + 1} {sname}: " + ", ".join(f"{k}={r[k]:.2f}" for k, _, _ in metric_names(mode) if k in r), flush=True)
    if a.only:
        for name, mode, _ in SCENARIOS:
            if name in results:
                key = metric_names(mode)[1 if mode != "hold" else 0][0]
                for sname, _ in SERVERS:
                    runs = results[name][sname]
                    med = statistics.median(r[key] for r in runs)
                    ratio = statistics.median(r[key] / b[key] for r, b in zip(runs, results[name][BASE]))
                    print(f"{name} | {sname}: {key} {med:.2f} ({ratio:.2f}x, per-round median)")
        return

    lines = [f"Generated by `python3 scripts/bench.py --rounds {a.rounds} --secs {a.secs:g}`: medians of {a.rounds} rounds, "
             "server pinned to CPU 0 and load generator to CPU 1 (2-core shared VM). The ratio is the median over "
             "rounds of each server's figure divided by the direct actix-web-actors echo's in the same round "
             "(for CPU and memory, lower is better); the spread is the lowest and highest of those per-round ratios.", ""]
    summary = {}
    for name, mode, _ in SCENARIOS:
        metrics = metric_names(mode)
        lines.append(f"**{name}**")
        lines.append("")
        lines.append("| server | " + " | ".join(m[1] for m in metrics) + " | ratio | spread |")
        lines.append("|---|" + "---:|" * (len(metrics) + 2))
        key = metrics[1][0] if len(metrics) > 1 and mode != "hold" else metrics[0][0]
        for sname, _ in SERVERS:
            runs = results[name][sname]
            med = {k: statistics.median(r[k] for r in runs) for k, _, _ in metrics}
            per_round = [r[key] / b[key] for r, b in zip(runs, results[name][BASE]) if b[key]]
            ratio = statistics.median(per_round) if per_round else float("nan")
            summary.setdefault(name, {})[sname] = {**med, "ratio": ratio, "ratio_of": key,
                                                   "ratio_min": min(per_round), "ratio_max": max(per_round)}
            lines.append(f"| {sname} | " + " | ".join(f"{med[k]:.2f}" if med[k] < 100 else f"{med[k]:.0f}" for k, _, _ in metrics)
                         + f" | {ratio:.2f}x {dict((m[0], m[1]) for m in metrics)[key]} | {min(per_round):.2f}-{max(per_round):.2f} |")
        lines.append("")
    lines.append("permessage-deflate has its own benchmark: `scripts/bench_deflate.py` (the guide's operating chapter, Compression and memory).")
    table = "\n".join(lines) + "\n"
    publish("results", {"results": results, "summary": summary}, table, "bench")
    print(table)
    chart(summary)


def chart(summary):
    names = [n for n, _, _ in SCENARIOS]
    servers = [s for s, _ in SERVERS]
    bar_chart([n.replace(", ", "\n", 1) for n in names], servers,
              lambda i, s: summary[names[i]][s]["ratio"], os.path.join(ROOT, "bench", "chart.png"),
              "ratio to actix-web-actors direct\n(CPU per message / cycle, RSS per conn; lower is better)",
              "actix-meta-websocket end-to-end benchmark", baseline=1.0)


def publish(name, data, text, marker, md=None):
    """Writes bench/<name>.json (`data`), bench/<name>.md (`md`, or `text`) and `text`
    between the `<!-- <marker>:start -->` and `<!-- <marker>:end -->` lines of whichever
    page holds them: README.md or a chapter of the guide (src/guide/*.md)."""
    os.makedirs(os.path.join(ROOT, "bench"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", f"{name}.json"), "w") as f:
        json.dump(data, f, indent=1)
    with open(os.path.join(ROOT, "bench", f"{name}.md"), "w") as f:
        f.write(text if md is None else md)
    write_block(marker, text)


def write_block(marker, text):
    """Puts `text` between the marker lines, in README.md or the guide page that has them."""
    guide = os.path.join(ROOT, "src", "guide")
    pages = [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(guide, f) for f in os.listdir(guide) if f.endswith(".md"))
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    for page in pages:
        with open(page) as f:
            body = f.read()
        if start in body and end in body:
            head, rest = body.split(start, 1)
            tail = rest.split(end, 1)[1]
            with open(page, "w") as f:
                f.write(head + start + "\n" + text + ("" if text.endswith("\n") else "\n") + end + tail)
            return
    sys.exit(f"no page holds the {marker} markers")


def bar_chart(labels, series, value, path, ylabel, title, baseline=None):
    """Grouped bars: for each label, one bar per series, `value(label_index, series)`
    high; installs matplotlib if it is missing."""
    try:
        import matplotlib
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=False)
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(series)
    for i, s in enumerate(series):
        ax.bar([x + i * width for x in range(len(labels))], [value(n, s) for n in range(len(labels))], width, label=s)
    if baseline is not None:
        ax.axhline(baseline, color="black", linewidth=0.8)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))])
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)

if __name__ == "__main__":
    main()
