#!/usr/bin/env python3
"""N Python `websockets` clients with their default permessage-deflate offer: each sends
one JSON message of --size bytes, reads the echo, and holds the connection. Prints READY
once every echo is back, then holds until stdin closes or --secs pass.

    python3 scripts/deflate_clients.py ws://127.0.0.1:9100/ws --conns 1000 --size 2048
"""
import argparse
import asyncio
import json
import random
import sys

from websockets.asyncio.client import connect


def realistic_json(size, rng):
    """A market-feed record list: the same keys, prices near each symbol's, round lots."""
    symbols = ["ACME", "GLOBEX", "INITECH", "UMBRELLA", "HOOLI", "STARK", "WAYNE", "TYRELL"]
    out, ts = [], 1764108000000
    while len(json.dumps(out)) < size:
        s = rng.randrange(len(symbols))
        bid = 100 + 25 * s + rng.randrange(-200, 200) / 100
        ts += rng.randrange(0, 40)
        out.append({"symbol": symbols[s], "bid": round(bid, 2), "ask": round(bid + rng.randrange(1, 6) / 100, 2),
                    "volume": 100 * rng.randrange(1, 50), "venue": rng.choice(["XNAS", "XNYS", "BATS", "ARCX"]), "ts": ts})
    text = json.dumps(out)
    return text[:size]


async def one(url, body, ready, hold, sem, expect_deflate):
    async with sem:  # the server's accept backlog is not the test
        ws = await connect(url, max_size=None, open_timeout=60)
        await ws.send(body)
        echo = await ws.recv()
    try:
        assert echo == body, "echo differs"
        assert bool(ws.protocol.extensions) == expect_deflate, f"permessage-deflate negotiated: {ws.protocol.extensions}"
        ready.append(1)
        await hold.wait()
    finally:
        await ws.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--secs", type=float, default=60)
    ap.add_argument("--expect-deflate", action="store_true", help="fail unless the server accepts compression")
    a = ap.parse_args()
    rng = random.Random(7)
    hold = asyncio.Event()
    ready = []
    sem = asyncio.Semaphore(200)
    tasks = [asyncio.create_task(one(a.url, realistic_json(a.size, rng), ready, hold, sem, a.expect_deflate)) for _ in range(a.conns)]
    while len(ready) < a.conns:
        done = [t for t in tasks if t.done() and t.exception()]
        if done:
            raise done[0].exception()
        await asyncio.sleep(0.05)
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait([stdin_closed, asyncio.ensure_future(asyncio.sleep(a.secs))], return_when=asyncio.FIRST_COMPLETED)
    hold.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"conns": a.conns, "size": a.size}), flush=True)


asyncio.run(main())
