#!/usr/bin/env python3
"""What a cluster of many nodes asks of Redis: the per-shard rates of the commands the
nodes run, measured on one redis-server core, and a capacity table computed from them.

    python3 scripts/capacity.py [--requests 400000]

Measures, with `redis-benchmark` (pipelined 64 deep, as a node's rounds are) against one
redis-server pinned to CPU 0, the benchmark on CPU 1:
- `PEXPIRE` and `SADD` on existing keys: a node's presence refresh, per group it has
  members of, one `PEXPIRE` at every heartbeat and, every `INDEX_EVERY`th heartbeat, a
  `SADD` and a `PEXPIRE` of the group's index of nodes (src/cluster/node/round.rs);
- `PUBLISH` of a 64 B frame to one subscriber: a broadcast or a send crossing nodes (per
  subscribing node, Redis writes it once more);
- `HSET` of one member: a join.

Then the table for a workload written out in the output: chat rooms of 100 members
spread at random over the nodes, one room per connection, heartbeat 1 s, and 1 message
per member per minute. Memory is 83 B per presence entry (scripts/bench_cluster.py) plus
the per-(room, node) keys, and 165 B per stored 64 B broadcast (scripts/bench_history.py)
for rooms that keep 100 broadcasts. Writes bench/capacity.md. Loopback only.
"""
import argparse
import math
import os
import re
import subprocess
import time

from bench import ROOT, free_port, write_block

ROOM = 100
HEARTBEAT_S = 1.0
INDEX_EVERY = 10  # heartbeats between two writes of a node's entry in a room's index (round.rs)
MSG_PER_MEMBER_S = 1 / 60
PRESENCE_B = 83
SMALL_KEY_B = 120  # a hash or set with one short field: key, object and dict overhead
STORED_B = 165
KEPT = 100


def bench(port, requests, *cmd):
    out = subprocess.run(["taskset", "-c", "1", "redis-benchmark", "-p", str(port), "-q", "-P", "64", "-c", "4",
                          "-n", str(requests), "-r", "100000", *cmd], capture_output=True, text=True).stdout
    m = re.findall(r"([0-9.]+) requests per second", out)
    if not m:
        raise RuntimeError(f"redis-benchmark said: {out!r}")
    return float(m[-1])


def measure(requests):
    port = free_port()
    server = subprocess.Popen(["taskset", "-c", "0", "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        cli = ["redis-cli", "-p", str(port)]
        while subprocess.run(cli + ["PING"], capture_output=True, text=True).stdout.strip() != "PONG":
            time.sleep(0.02)
        # Keys to refresh: what the refresh finds in a running cluster.
        bench(port, 100000, "HSET", "amw:m:{room-__rand_int__}:n", "1", "meta")
        bench(port, 100000, "SADD", "amw:gn:{room-__rand_int__}", "n")
        listener = subprocess.Popen(cli + ["SUBSCRIBE", "amw:g:{room}"], stdout=subprocess.DEVNULL)
        time.sleep(0.3)
        rates = {
            "PEXPIRE": bench(port, requests, "PEXPIRE", "amw:m:{room-__rand_int__}:n", "3000"),
            "SADD": bench(port, requests, "SADD", "amw:gn:{room-__rand_int__}", "n"),
            "HSET": bench(port, requests, "HSET", "amw:m:{room-__rand_int__}:n", "__rand_int__", "meta"),
            "PUBLISH": bench(port, requests, "PUBLISH", "amw:g:{room}", "x" * 64),
        }
        listener.kill()
        return rates
    finally:
        server.kill()
        server.wait()


def table(rates, shapes):
    # Core-seconds per (room, node) per heartbeat.
    refresh_cost = 1 / rates["PEXPIRE"] + (1 / rates["PEXPIRE"] + 1 / rates["SADD"]) / INDEX_EVERY
    publish_cost = 1 / rates["PUBLISH"]  # core-seconds per delivery to one subscribing node
    rows = []
    for nodes, per_node in shapes:
        members = nodes * per_node
        rooms = members // ROOM
        # Nodes a room of ROOM members spread at random over `nodes` has members on.
        spread = nodes * (1 - (1 - 1 / nodes) ** ROOM)
        pairs = rooms * spread
        refresh = pairs * refresh_cost / HEARTBEAT_S
        messages = members * MSG_PER_MEMBER_S
        publish = messages * spread * publish_cost
        # Every node's heartbeat reaches every node (each on one shard, spread over them).
        heartbeats = nodes * nodes * publish_cost / HEARTBEAT_S
        cores = refresh + publish + heartbeats
        memory = members * PRESENCE_B + pairs * 2 * SMALL_KEY_B
        history = rooms * KEPT * STORED_B
        rows.append((nodes, per_node, members, rooms, spread, pairs, refresh, publish, heartbeats, cores,
                     memory, history))
    return rows


def report(rates, rows):
    lines = ["Per-shard rates, one redis-server core (`redis-benchmark`, pipelined 64 deep):", "",
             "| command | per second |", "|---|---:|"]
    for k, v in rates.items():
        lines.append(f"| {k} | {v:,.0f} |")
    lines += ["", f"Workload: rooms of {ROOM} members spread at random over the nodes, one room per connection, "
              f"heartbeat {HEARTBEAT_S:g} s, one message per member per minute; rooms keep {KEPT} broadcasts.", "",
              "| nodes x connections | rooms | nodes per room | presence refresh | broadcasts | heartbeats | "
              "Redis cores | shards at half load | presence memory | history memory |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (nodes, per_node, members, rooms, spread, pairs, refresh, publish, heartbeats, cores, memory,
         history) in rows:
        lines.append(f"| {nodes} x {per_node:,} | {rooms:,} | {spread:.0f} | {refresh:.2f} cores | "
                     f"{publish:.2f} cores | {heartbeats:.3f} cores | **{cores:.1f}** | {math.ceil(cores / 0.5)} | "
                     f"{memory / 2**20:,.0f} MiB | "
                     f"{history / 2**20:,.0f} MiB |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=400000)
    a = ap.parse_args()
    rates = measure(a.requests)
    rows = table(rates, [(10, 100_000), (100, 100_000)])
    text = report(rates, rows)
    print(text)
    with open(os.path.join(ROOT, "bench", "capacity.md"), "w") as f:
        f.write("# Capacity on paper\n\nGenerated by `python3 scripts/capacity.py`.\n\n" + text + "\n")
    write_block("capacity", "Generated by `python3 scripts/capacity.py` (bench/capacity.md):\n\n" + text)


if __name__ == "__main__":
    main()
