"""Python `websockets` as an independent peer for the interop tests.

    python3 py_peer.py server [deflate|none]        echo server on 127.0.0.1, prints its port
    python3 py_peer.py client URL [deflate|none]    runs the exchange against an echo server

The client exchange: text, binary, 1 MiB binary, a text message sent in three
fragments, 100 small messages, then a close with 4001 "done". Exit 0 when every echo
matches and the close was answered with 4001.
"""
import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


def compression(arg):
    return "deflate" if arg == "deflate" else None


async def echo(ws):
    try:
        async for m in ws:
            await ws.send(m)
    except ConnectionClosed:
        # The exchange ends with close code 4001, which `websockets` reports as an error;
        # the close itself was answered, which is all an echo server owes.
        pass


async def server(mode):
    async with serve(echo, "127.0.0.1", 0, max_size=None, compression=compression(mode)) as s:
        print(s.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


async def client(url, mode):
    async with connect(url, max_size=None, compression=compression(mode)) as ws:
        big = bytes(i * 7 % 251 for i in range(1 << 20))
        cases = ["héllo wörld", b"\x00\x01\xff", big]
        for m in cases:
            await ws.send(m)
            got = await ws.recv()
            assert got == m, f"echo mismatch for {type(m).__name__} of {len(m)}"
        await ws.send(["frag", "ment", "ed"])
        assert await ws.recv() == "fragmented", "fragmented echo"
        for i in range(100):
            await ws.send(f"msg {i}")
        for i in range(100):
            assert await ws.recv() == f"msg {i}", f"message {i} out of order"
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        await ws.close(4001, "done")
        assert ws.close_code == 4001, f"close answered with {ws.close_code}"
        print(f"ok extensions={negotiated!r}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(server(sys.argv[2] if len(sys.argv) > 2 else "none"))
    else:
        asyncio.run(client(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "none"))
