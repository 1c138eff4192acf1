"""An independent echo client for benchmarks/ws_client_cost.py: the `websockets` library
used directly on uvloop, with none of the lab's code (no runner, histogram or window), in
its own process. N clients each send M text messages of S bytes, each after the echo of the
one before, timed from the first send to the last echo; one timeout bounds each client's
whole run (a timer per message would cost more client CPU than the messages). Prints one
JSON line: {ok, errors, wall_s, msgs_per_s, p50_ms, cpu_s}.

    python benchmarks/ws_echo_plain.py URL N M S
"""

import asyncio
import json
import sys
import time

import uvloop
from websockets.asyncio.client import ClientConnection, connect

TIMEOUT_S = 10.0


async def client(ws: ClientConnection, m: int, text: str, latencies: list[float]) -> int:
    errors = 0
    async with asyncio.timeout(TIMEOUT_S):
        for _ in range(m):
            start = time.perf_counter()
            await ws.send(text)
            if await ws.recv() != text:
                errors += 1
            latencies.append(time.perf_counter() - start)
    return errors


async def main(url: str, n: int, m: int, size: int) -> None:
    text = "x" * size
    sockets = await asyncio.gather(*(connect(url, compression=None, proxy=None,
                                             ping_interval=None) for _ in range(n)))
    latencies: list[float] = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    errors = sum(await asyncio.gather(*(client(ws, m, text, latencies) for ws in sockets)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await asyncio.gather(*(ws.close() for ws in sockets))
    latencies.sort()
    ok = len(latencies) - errors
    print(json.dumps({"ok": ok, "errors": errors, "wall_s": wall, "msgs_per_s": ok / wall,
                      "p50_ms": 1e3 * latencies[len(latencies) // 2], "cpu_s": cpu}))


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], *map(int, sys.argv[2:5])))
