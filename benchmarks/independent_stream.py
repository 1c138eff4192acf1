"""An independent check of the stream kind's TTFB and TTLB: no lab code at all.

Starts each server by hand on apps.article (or ``--app``), waits for /health, and runs N
readers on raw asyncio streams, each reading R responses of ``--path`` on its keep-alive
connection. Each socket read is timed; the body's end is found here, by hand (not by
httptools, as rawhttp does). TTFB = request written → the read that brought the first body
bytes; TTLB → the read that brought the terminating chunk. Prints p50 of each per server,
to set beside a lab report of the same hour.

    python -m benchmarks.independent_stream --readers 1 50 --path "/sse?chunks=10&..."
"""

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

from benchmarks.independent_wrk import free_port, stop, wait_up  # no lab code there either

APP = "apps.article:app"
SERVERS = {
    "uvicorn": lambda app, port: ["-m", "uvicorn", app, "--port", str(port),
                                  "--no-access-log"],
    "hypercorn": lambda app, port: ["-m", "hypercorn", app, "--bind", f"127.0.0.1:{port}"],
    "granian": lambda app, port: ["-m", "granian", "--interface", "asgi", "--port", str(port),
                                  "--no-access-log", app],
    "gunicorn": lambda app, port: ["-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}",
                                   "-k", "uvicorn_worker.UvicornWorker"],
}


def body_complete(head: bytes, body: bytes) -> bool:
    """A body of a Content-Length is complete at that length (a server may send a body that
    came as one ASGI message so); a chunked one ends with its zero-size chunk."""
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    at = 0
    while True:
        end = body.find(b"\r\n", at)
        if end < 0:
            return False
        size = int(body[at:end].split(b";")[0], 16)
        if size == 0:
            return body.endswith(b"\r\n\r\n", end)
        at = end + 2 + size + 2
        if at > len(body):
            return False


async def response(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   request: bytes) -> tuple[float, float]:
    """(TTFB s, TTLB s) of one response."""
    t0 = time.perf_counter()
    writer.write(request)
    data, first = b"", None
    while True:
        chunk = await reader.read(1 << 16)
        now = time.perf_counter()
        if not chunk:
            raise ConnectionError("closed mid-response")
        data += chunk
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            continue
        body = data[head_end + 4:]
        if first is None and body:
            first = now
        if first is not None and body_complete(data[:head_end], body):
            return first - t0, now - t0


async def readers(port: int, path: str, n: int, responses: int) -> list[tuple[float, float]]:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()

    async def one() -> list[tuple[float, float]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return [await response(reader, writer, request) for _ in range(responses)]
        finally:
            writer.close()

    return [t for r in await asyncio.gather(*(one() for _ in range(n))) for t in r]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", default=APP)
    ap.add_argument("--path", default="/stream?chunks=10&size=1024&interval=0.01")
    ap.add_argument("--readers", type=int, nargs="+", default=[1, 50])
    ap.add_argument("--responses", type=int, default=10)
    ap.add_argument("--servers", nargs="+", default=list(SERVERS))
    args = ap.parse_args()
    for name in args.servers:
        port = free_port()
        proc = subprocess.Popen([sys.executable, *SERVERS[name](args.app, port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            wait_up(f"http://127.0.0.1:{port}/health")
            for n in args.readers:
                asyncio.run(readers(port, args.path, n, 1))  # warm the server once
                times = asyncio.run(readers(port, args.path, n, args.responses))
                ttfb = 1e3 * statistics.median(t for t, _ in times)
                ttlb = 1e3 * statistics.median(t for _, t in times)
                print(f"{name:10} N={n:<3} {args.path}: TTFB p50 {ttfb:.2f} ms, TTLB p50 "
                      f"{ttlb:.1f} ms ({len(times)} responses)", flush=True)
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
