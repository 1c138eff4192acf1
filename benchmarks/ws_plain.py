"""Independent WebSocket clients for benchmarks/ws_client_cost.py: the `websockets` library
used directly on uvloop, with none of the lab's code (no runner, histogram or window), in
its own process. Prints one JSON line.

    python benchmarks/ws_plain.py echo URL N M S       # ok, errors, msgs_per_s, p50_ms, cpu_s
    python benchmarks/ws_plain.py broadcast URL N R S  # missed, last_p50_ms, last_max_ms

echo: N clients each send M text messages of S bytes, each after the echo of the one before,
timed from the first send to the last echo; one timeout bounds each client's whole run.
broadcast: R times, the first client sends a message and all N (the sender too) wait for
it; a round's last-client latency is its slowest copy, timed from the send. One worker only:
every client is in the sender's group.
"""

import asyncio
import json
import statistics
import sys
import time

import uvloop
from websockets.asyncio.client import ClientConnection, connect

TIMEOUT_S = 10.0


async def opened(url: str, n: int) -> list[ClientConnection]:
    return list(await asyncio.gather(*(connect(url, compression=None, proxy=None,
                                               ping_interval=None) for _ in range(n))))


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


async def echo(url: str, n: int, m: int, size: int) -> dict[str, float]:
    text = "x" * size
    sockets = await opened(url, n)
    latencies: list[float] = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    errors = sum(await asyncio.gather(*(client(ws, m, text, latencies) for ws in sockets)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await asyncio.gather(*(ws.close() for ws in sockets))
    latencies.sort()
    ok = len(latencies) - errors
    return {"ok": ok, "errors": errors, "wall_s": wall, "msgs_per_s": ok / wall,
            "p50_ms": 1e3 * latencies[len(latencies) // 2], "cpu_s": cpu}


async def copy(ws: ClientConnection, text: str) -> float:
    """When this client got ``text`` (an older round's late copy skipped)."""
    while await ws.recv() != text:
        pass
    return time.perf_counter()


async def broadcast(url: str, n: int, rounds: int, size: int) -> dict[str, float | None]:
    sockets = await opened(url, n)
    last: list[float] = []
    missed = 0
    for r in range(rounds):
        text = (f"{r}:" + "x" * size)[:max(size, len(f"{r}:"))]

        waits = [asyncio.ensure_future(copy(ws, text)) for ws in sockets]
        sent = time.perf_counter()
        await sockets[0].send(text)
        done, late = await asyncio.wait(waits, timeout=TIMEOUT_S)
        for task in late:
            task.cancel()
        missed += len(late)
        if done:
            last.append(max(t.result() for t in done) - sent)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return {"rounds": rounds, "missed": missed,
            "last_p50_ms": 1e3 * statistics.median(last) if last else None,
            "last_max_ms": 1e3 * max(last) if last else None}


if __name__ == "__main__":
    mode, url, *numbers = sys.argv[1:]
    n, k, size = map(int, numbers)
    run = echo if mode == "echo" else broadcast
    print(json.dumps(uvloop.run(run(url, n, k, size))))
