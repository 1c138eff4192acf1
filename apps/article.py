"""The app of the article "FastAPI: async vs blocking I/O", plus what it should have had.

Every sleeping endpoint takes ``?delay=`` in seconds (default 5, as in the article) and
every response is JSON naming the endpoint and the worker process (``pid``) that served it,
so the lab can check bodies and count distinct workers.
"""

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from lab.servers.asgi_wrap import mark_ready

DEFAULT_DELAY_S = 5.0


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    # One marker per worker that finished start-up, as lab.servers.asgi_wrap writes for any app:
    # served unwrapped (wrap = false), the lab still waits for *every* worker.
    mark_ready()
    yield


app = FastAPI(title="article", lifespan=lifespan)
Delay = Query(DEFAULT_DELAY_S, ge=0, le=60, description="sleep in seconds")


def _body(endpoint: str, **extra: object) -> dict[str, object]:
    return {"endpoint": endpoint, "pid": os.getpid(), **extra}


@app.get("/health")
async def health() -> dict[str, object]:
    return _body("/health")


@app.get("/hello")
async def hello() -> dict[str, object]:
    return _body("/hello")


@app.get("/blocking")
def blocking(delay: float = Delay) -> dict[str, object]:
    """The article's: ``def`` + ``time.sleep``. FastAPI runs it in a thread pool."""
    time.sleep(delay)
    return _body("/blocking", delay=delay)


@app.get("/non-blocking")
async def non_blocking(delay: float = Delay) -> dict[str, object]:
    """The article's: ``async def`` + ``await asyncio.sleep``."""
    await asyncio.sleep(delay)
    return _body("/non-blocking", delay=delay)


@app.get("/compare")
async def compare(delay: float = Delay) -> dict[str, object]:
    """The article's: two non-blocking sleeps gathered, ~1x the delay."""
    await asyncio.gather(*(asyncio.sleep(delay) for _ in range(2)))
    return _body("/compare", delay=delay, tasks=2)


@app.get("/benchmark")
async def benchmark(delay: float = Delay) -> dict[str, object]:
    """The article's: ten non-blocking sleeps gathered, still ~1x the delay."""
    await asyncio.gather(*(asyncio.sleep(delay) for _ in range(10)))
    return _body("/benchmark", delay=delay, tasks=10)


@app.get("/async-blocking")
async def async_blocking(delay: float = Delay) -> dict[str, object]:
    """The trap the article misses: ``async def`` + ``time.sleep`` blocks the event loop."""
    time.sleep(delay)  # deliberately blocking: this is what the lab measures
    return _body("/async-blocking", delay=delay)


@app.get("/cpu")
def cpu(n: int = Query(100_000, ge=1, le=50_000_000)) -> dict[str, object]:
    """Pure-Python CPU work in a ``def`` endpoint: the GIL serialises it across threads."""
    total = 0
    for i in range(n):
        total += i * i
    return _body("/cpu", n=n, total=total)


@app.get("/crash")
async def crash() -> dict[str, object]:
    """Kills the worker that serves it, for testing how the lab records a crashed cell."""
    os._exit(3)


# ---- WebSockets ------------------------------------------------------------------------
# The lab's `websocket` and `ws_broadcast` kinds. The worker's pid reaches the client in
# the handshake's x-lab-worker header (lab.servers.asgi_wrap), as for HTTP.

@app.websocket("/ws/echo")
async def ws_echo(ws: WebSocket) -> None:
    """Each message back to its sender, text as text and bytes as bytes."""
    await ws.accept()
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await ws.send_text(message["text"])
        else:
            await ws.send_bytes(message.get("bytes") or b"")


# The clients of this worker: a broadcast reaches only them. Clients connected to another
# worker (another process) would need a shared bus (Redis pub/sub, a broker) to be reached.
_group: set[WebSocket] = set()


@app.websocket("/ws/broadcast")
async def ws_broadcast(ws: WebSocket) -> None:
    """A message from any client goes to every client connected to this worker, the
    sender too."""
    await ws.accept()
    _group.add(ws)
    try:
        while True:
            text = await ws.receive_text()
            # at once, not in turn: one slow client does not delay the others' copies
            await asyncio.gather(*(c.send_text(text) for c in list(_group)),
                                 return_exceptions=True)
    except WebSocketDisconnect:
        pass
    finally:
        _group.discard(ws)


# Streaming: K chunks of S bytes, the first at once and each next one ``interval`` later, so
# a client that gets the first only with the last knows something on the way buffered.
Chunks = Query(10, ge=1, le=10_000, description="chunks in the body")
Size = Query(1024, ge=8, le=1 << 20, description="bytes per chunk (an SSE event: all of it)")
Interval = Query(0.01, ge=0, le=10, description="seconds between chunks")


async def _paced(chunk: bytes, chunks: int, interval: float) -> AsyncIterator[bytes]:
    for i in range(chunks):
        if i:
            await asyncio.sleep(interval)
        yield chunk


@app.get("/stream")
async def stream(chunks: int = Chunks, size: int = Size,
                 interval: float = Interval) -> StreamingResponse:
    return StreamingResponse(_paced(b"x" * (size - 1) + b"\n", chunks, interval),
                             media_type="application/octet-stream")


@app.get("/sse")
async def sse(chunks: int = Chunks, size: int = Size,
              interval: float = Interval) -> StreamingResponse:
    """Server-sent events of ``size`` bytes each: ``data: xx…\\n\\n``."""
    event = b"data: " + b"x" * (size - 8) + b"\n\n"
    return StreamingResponse(_paced(event, chunks, interval), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})
