#!/usr/bin/env python3
"""What owning the socket buys: WsServer against actix-web's HttpServer, the direct
actix-web-actors echo, the actix-ws echo and a bare tokio echo (the floor), same rounds.

    python3 scripts/bench_owned.py [--rounds 3] [--secs 5] [--quick] [--only TEXT]

Each server runs pinned to CPU 0 with one worker thread; examples/loadgen drives it from
CPU 1 over loopback. Per round and scenario every server runs once, in an order that
alternates between rounds. Measured:

- idle RSS per connection at 10,000 connections and at 19,000 (this machine's limit is
  20,000 descriptors per process), plain, and over TLS for WsServer (a self-signed
  certificate from examples/self_signed_cert; RSA 2048, TLS 1.3);
- server CPU per echoed message, 64 B at 1 and at 32 in flight (50 connections), and
  64 KiB (10 connections, 4 in flight); here actix-web-actors also runs with each
  message going to one of a pool of 4 actors and back, the shape this crate's contract
  gives every connection (its target is an actor of the user's pool);
- server CPU per handshake + close cycle (8 loops).

Prints medians, the ratio to the floor, to actix-web-actors and to actix-ws (per round, then the
median), and what 100,000 and 1,000,000 idle connections would hold at the measured
per-connection figure; writes bench/owned.json and bench/owned.md. RSS is the server
process's own memory: the kernel's socket buffers are not in it.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # importing bench.py must not leave __pycache__ behind
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import EX, ROOT, cpu_seconds, end_to_end_args, free_port, rss_kib, start_server  # noqa: E402

FLOOR = "bare tokio echo (floor)"
ACTORS = "actix-web-actors direct"
ACTIX_WS = "actix-ws"
POOL = "actix-web-actors through a pool of 4 actors"
OWNED = "actix-meta-websocket on WsServer"
HTTP = "actix-meta-websocket on HttpServer"
OWNED_TLS = "actix-meta-websocket on WsServer, TLS"

PLAIN = [
    (FLOOR, ["baseline_tokio"]),
    (ACTORS, ["baseline_actors", "--mode", "direct"]),
    (ACTIX_WS, ["baseline_actix_ws"]),
    (OWNED, ["bench_server", "--owned"]),
    (HTTP, ["bench_server"]),
]

# (name, loadgen mode, loadgen arguments, servers: PLAIN, or PLAIN with the TLS server)
SCENARIOS = [
    ("idle RSS, 10,000 connections", "hold", ["--conns", "10000", "--sources", "8"], True),
    ("idle RSS, 19,000 connections", "hold", ["--conns", "19000", "--sources", "8"], True),
    ("echo 64 B, 50 conns, 1 in flight", "echo", ["--conns", "50", "--inflight", "1", "--size", "64"], False),
    ("echo 64 B, 50 conns, 32 in flight", "echo", ["--conns", "50", "--inflight", "32", "--size", "64"], False),
    ("echo 64 KiB, 10 conns, 4 in flight", "echo",
     ["--conns", "10", "--inflight", "4", "--size", "65536", "--kind", "binary"], False),
    ("handshake + close cycles", "connect-rate", ["--conns", "8"], True),
]

UNITS = {"hold": ("kib_per_conn", "KiB/conn"), "echo": ("cpu_us_per_msg", "µs/msg"),
         "connect-rate": ("cpu_us_per_cycle", "µs/cycle")}


def run(server_args, mode, extra, secs, tls):
    """One server, one load; the figure for the scenario and loadgen's report."""
    port = free_port()
    srv = start_server(server_args, port)
    try:
        time.sleep(0.3)
        base = rss_kib(srv.pid)
        cpu0 = cpu_seconds(srv.pid)
        url = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/ws"
        cmd = ["taskset", "-c", "1", os.path.join(EX, "loadgen"), mode, "--url", url, "--secs", str(secs), *extra]
        if tls:
            cmd += ["--ca", tls[0]]
        lg = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        held = None
        if mode == "hold":
            line = lg.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"hold: {line!r}")
            time.sleep(1.0)
            held = rss_kib(srv.pid)
        out, _ = lg.communicate(timeout=secs + 300)
        if lg.returncode != 0:
            raise RuntimeError(f"loadgen exited with {lg.returncode}")
        cpu = cpu_seconds(srv.pid) - cpu0
        report = json.loads(out.strip().splitlines()[-1])
        if mode == "hold":
            conns = int(extra[extra.index("--conns") + 1])
            report["base_kib"] = base
            return (held - base) / conns, report
        count = report["msgs"] if mode == "echo" else report["cycles"]
        return cpu * 1e6 / max(count, 1), report
    finally:
        srv.kill()
        srv.wait()


def certificate(tmp):
    subprocess.run([os.path.join(EX, "self_signed_cert"), tmp], check=True, stdout=subprocess.DEVNULL)
    return os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")


def servers_for(mode, with_tls, cert):
    servers = [(n, a, None) for n, a in PLAIN]
    if mode == "echo":
        # The shape this crate gives every connection (a hop to a pool actor and back),
        # written by hand on actix-web-actors: what that hop costs there.
        servers.insert(2, (POOL, ["baseline_actors", "--mode", "pool"], None))
    if with_tls:
        servers.append((OWNED_TLS, ["bench_server", "--owned", "--tls", *cert], cert))
    return servers


def measure(a, cert):
    results = {}
    for name, mode, extra, with_tls in SCENARIOS:
        if a.only and a.only not in name:
            continue
        servers = servers_for(mode, with_tls, cert)
        rows = {n: [] for n, _, _ in servers}
        extras = {n: [] for n, _, _ in servers}
        for r in range(a.rounds):
            order = servers if r % 2 == 0 else list(reversed(servers))
            for n, args, tls in order:
                value, report = run(args, mode, extra, a.secs, tls)
                rows[n].append(value)
                extras[n].append(report)
                print(f"  {name} | {n}: {value:.2f} {UNITS[mode][1]}", flush=True)
        results[name] = {"mode": mode, "unit": UNITS[mode][1], "rounds": rows, "reports": extras}
    return results


def ratio(rows, name, base):
    """The median of the per-round ratios of `name` to `base`."""
    pairs = [x / y for x, y in zip(rows[name], rows[base]) if y > 0]
    return statistics.median(pairs) if pairs else float("nan")


def table(results):
    lines = ["| scenario | server | median | × floor | × actix-web-actors | × actix-ws |",
             "|---|---|---:|---:|---:|---:|"]
    for name, res in results.items():
        rows = res["rounds"]
        for n, values in rows.items():
            med = statistics.median(values)
            lines.append(f"| {name} | {n} | {med:.2f} {res['unit']} | {ratio(rows, n, FLOOR):.2f} | "
                         f"{ratio(rows, n, ACTORS):.2f} | {ratio(rows, n, ACTIX_WS):.2f} |")
    return "\n".join(lines)


def extrapolation(results):
    lines = ["| server | KiB/conn at 19,000 | 100,000 idle | 1,000,000 idle |", "|---|---:|---:|---:|"]
    res = results.get("idle RSS, 19,000 connections") or results.get("idle RSS, 10,000 connections")
    if not res:
        return ""
    for n, values in res["rounds"].items():
        kib = statistics.median(values)
        base = statistics.median(r["base_kib"] for r in res["reports"][n])
        gib = lambda conns: (base + kib * conns) / 1024 / 1024  # noqa: E731
        lines.append(f"| {n} | {kib:.2f} | {gib(100_000):.2f} GiB | {gib(1_000_000):.2f} GiB |")
    return "\n".join(lines)


def main():
    a = end_to_end_args()
    subprocess.run(["cargo", "build", "--release", "--example", "loadgen", "--example", "bench_server",
                    "--example", "baseline_actors", "--example", "baseline_actix_ws", "--example", "baseline_tokio", "--example", "self_signed_cert"],
                   cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(a, certificate(tmp))
    text = (f"Server pinned to one CPU, one worker; loadgen on the other; {a.rounds} rounds of {a.secs:g} s; "
            f"medians, and medians of per-round ratios.\n\n{table(results)}\n\n"
            f"What the idle figure implies (the process's base RSS included; kernel socket buffers not):\n\n"
            f"{extrapolation(results)}\n")
    print()
    print(text)
    if a.only or a.quick:
        return
    os.makedirs(os.path.join(ROOT, "bench"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "owned.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(ROOT, "bench", "owned.md"), "w") as f:
        f.write("# WsServer: owning the socket\n\nGenerated by `python3 scripts/bench_owned.py`.\n\n" + text)


if __name__ == "__main__":
    main()
