"""The apps' contract with the lab, and the thin ASGI wrapper that fulfils it for any app.

Servers serve ``lab.servers.asgi_wrap:app``; the user's app (``LAB_APP = "module:attr"``, imported
from ``LAB_APP_DIR``) runs inside, untouched. The wrapper

- adds ``x-lab-worker: <pid>`` to every HTTP response, in place of any the app sent, so
  every engine (wrk's Lua script too) attributes each answer to the worker that gave it,
  whatever the body; a WebSocket client that asks (a request header ``x-lab-worker: ask``)
  gets a first text frame ``x-lab-worker <pid>`` after the app's accept;
- passes lifespan through, and writes the worker's ready marker (``LAB_READY_DIR/<pid>``)
  once the app's start-up has completed, so the lab waits for *every* worker;
- starts an app without lifespan support on every server: when the app raises or returns
  before completing start-up (a bare ASGI callable), the wrapper completes it for the
  server itself, as uvicorn's ``--lifespan auto`` would, and marks the worker ready; it
  also marks a worker at its first request (a server that runs no lifespan at all);
- counts the HTTP requests in flight in the worker (inside the app's call), their peak and
  the client connections they came on over the lab's measurement window, in the worker's
  meter file ``LAB_METER_DIR/<pid>``
  (``Meter``; the lab reads it with ``lab.load.inflight``), when the lab names that folder;
- with ``LAB_THREADS = "n"`` (the lab's ``threads`` axis), gives anyio's default thread
  limiter n tokens at the worker's first request (``lab.servers.threadpool``);
- with ``LAB_LOOP_METER = "1"``, times every synchronous step of each HTTP request on the
  worker's loop, per endpoint, samples where a long one blocked, what held the loop outside
  the requests and how they waited for threads, and writes the counts to
  ``LAB_METER_DIR/<pid>.loop.json`` (``lab.servers.loopwatch``; the format is
  ``lab.servers.loopmeter``).

One module that both sides import: the lab reads the header's name and the environment's
names from here, the servers the wrapper. It imports only the standard library at module
level, and the user's app only where ``LAB_APP`` is set (in the servers), so the lab can
import it for the names. It runs on any event loop (asyncio, uvloop, trio) and under
granian's Rust scheduler: it starts no tasks, only relays messages, and counts in plain
code around the app's call (no loop hook sees granian's requests, DESIGN.md).
"""

import importlib
import mmap
import os
import sys
import threading
import types
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from lab.servers import loopmeter, threadpool
from lab.servers.loopwatch import LoopMeter

WORKER_HEADER = "x-lab-worker"  # lower case: what every server sends and wrk's table holds
WS_ASK = "ask"  # a WebSocket handshake's x-lab-worker: the worker's pid in a first frame
APP_ENV = "LAB_APP"  # the user's app, "module:attr"
APP_DIR_ENV = "LAB_APP_DIR"  # the folder it is imported from (optional)
READY_DIR_ENV = "LAB_READY_DIR"  # one marker file per worker that finished start-up
METER_DIR_ENV = "LAB_METER_DIR"  # one meter file per worker, and the window's generation
LOOP_METER_ENV = "LAB_LOOP_METER"  # "1": meter the loop (LoopMeter)
LOOP_BLOCK_MS_ENV = "LAB_LOOP_BLOCK_MS"  # a step past this many ms is sampled for its site
LOOP_BLOCK_MS = 10.0
THREADS_ENV = "LAB_THREADS"  # tokens of anyio's default thread limiter (lab.threads), when set
SERVED = "lab.servers.asgi_wrap:app"  # what the servers are given when the lab wraps the app

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# The meter folder: ``generation`` (one u64, written by the lab only: the window's number)
# and one file per worker, named by its pid, written by that worker only: METER_SLOTS
# native u64, of which the first are METER_FIELDS. ``seq`` is odd while the worker writes.
GENERATION_FILE = "generation"
METER_FIELDS = ("seq", "generation", "peak", "current", "started", "total", "connections")
METER_SLOTS = 8  # 64 bytes: one cache line; the slots after the fields stay zero
SEQ, GENERATION, PEAK, CURRENT, STARTED, TOTAL, CONNECTIONS = range(len(METER_FIELDS))


def map_u64s(path: str, slots: int, write: bool) -> "memoryview[int]":
    """``slots`` native u64 of the file at ``path``, shared with every process that maps it;
    the file is created (zeros) or extended as needed, never truncated."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size < slots * 8:
            os.ftruncate(fd, slots * 8)  # grows with zeros; a writer's bytes are kept
        mapped = mmap.mmap(fd, slots * 8, access=mmap.ACCESS_WRITE if write else mmap.ACCESS_READ)
    finally:
        os.close(fd)  # the mapping keeps the file
    return memoryview(mapped).cast("Q")


class Meter:
    """This worker's requests in flight and their peak in the lab's current window, in its
    meter file. A few stores into shared memory per request: no system call, no task, no
    route in the app, nothing on the network.

    The window is the lab's ``generation``: the first request that starts after the lab
    bumps it resets ``peak`` to the requests then in flight (this one and those begun
    before the window) and stores the generation, so a worker's file carries the current
    generation exactly when it saw a request start in the window.

    ``connections`` counts the client connections that sent a request in the window, told
    apart by the scope's client address and port, so that a run which should open one per
    request can be checked from the server's side. A port the kernel gives a new
    connection again within the window counts once: Linux reuses a loopback port no sooner
    than a second after the connection that held it closed (``tcp_tw_reuse`` = 2), so only
    windows longer than that, at more connections a second than free ports, undercount.
    The lock keeps the
    counts whole if a server runs the app from several threads (granian's runtime threads);
    it is never held across an ``await``.
    """

    def __init__(self, folder: str) -> None:
        self._window = map_u64s(os.path.join(folder, GENERATION_FILE), 1, write=False)
        self._fields = map_u64s(os.path.join(folder, str(os.getpid())), METER_SLOTS, write=True)
        # zeros: a file left by an earlier process with this pid is not this worker's
        self._fields[:] = memoryview(bytes(METER_SLOTS * 8)).cast("Q")
        self._lock = threading.Lock()
        self._seq = self._generation = self._peak = self._current = 0
        self._started = self._total = 0
        self._clients: set[object] = set()  # the window's client (address, port) pairs

    def started(self, client: object) -> None:
        with self._lock:
            self._current += 1
            self._total += 1
            generation = self._window[0]
            if generation != self._generation:
                self._generation, self._peak, self._started = generation, self._current, 1
                self._clients = set()
            else:
                self._started += 1
                if self._current > self._peak:
                    self._peak = self._current
            self._clients.add(client)
            f = self._fields
            f[SEQ] = self._seq = self._seq + 1
            f[GENERATION], f[PEAK], f[CURRENT] = generation, self._peak, self._current
            f[STARTED], f[TOTAL] = self._started, self._total
            f[CONNECTIONS] = len(self._clients)
            f[SEQ] = self._seq = self._seq + 1

    def ended(self) -> None:
        with self._lock:
            self._current -= 1
            f = self._fields
            f[SEQ] = self._seq = self._seq + 1
            f[CURRENT] = self._current
            f[SEQ] = self._seq = self._seq + 1


def open_meter() -> Meter | None:
    """This worker's meter, when the lab names a meter folder and it can be written; a
    meter that cannot be opened is reported once and the app is served without it."""
    folder = os.environ.get(METER_DIR_ENV)
    if not folder:
        return None
    try:
        return Meter(folder)
    except (OSError, ValueError) as e:
        print(f"lab.servers.asgi_wrap: no in-flight meter in {folder} ({type(e).__name__}: {e})",
              file=sys.stderr, flush=True)
        return None


def open_loop_meter() -> LoopMeter | None:
    """This worker's loop meter, when the lab asks for one (``LAB_LOOP_METER = "1"`` and a
    meter folder); one that cannot be opened is reported once and the app served without."""
    folder = os.environ.get(METER_DIR_ENV)
    if os.environ.get(LOOP_METER_ENV) != "1" or not folder:
        return None
    try:
        block_ms = float(os.environ.get(LOOP_BLOCK_MS_ENV) or LOOP_BLOCK_MS)
        flush = map_u64s(os.path.join(folder, loopmeter.FLUSH_FILE), 1, write=False)
        roots = [d for d in (os.environ.get(APP_DIR_ENV), os.getcwd()) if d]
        return LoopMeter(folder, flush, block_ms / 1000, roots)
    except (OSError, ValueError) as e:
        print(f"lab.servers.asgi_wrap: no loop meter in {folder} ({type(e).__name__}: {e})",
              file=sys.stderr, flush=True)
        return None


def mark_ready() -> None:
    """This worker has started: its marker file, named by its pid."""
    ready_dir = os.environ.get(READY_DIR_ENV)
    if ready_dir:
        Path(ready_dir, str(os.getpid())).touch()


class Wrapped:
    """The user's app with the worker header, ready markers and in-flight meter."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._header: tuple[bytes, bytes] | None = None  # built in the worker, not at import
        self._marked = False
        self._meter: Meter | None = None  # opened in the worker, at its first request
        self._loop: LoopMeter | None = None  # the same

    def _mark(self) -> None:
        if not self._marked:
            self._marked = True
            mark_ready()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self._header is None:
                self._header = (WORKER_HEADER.encode(), str(os.getpid()).encode())
                self._mark()
                self._meter = open_meter()
                self._loop = open_loop_meter()
                if self._loop is not None or os.environ.get(THREADS_ENV):
                    limiter = threadpool.apply_tokens(THREADS_ENV)  # on this loop, first
                    if self._loop is not None:
                        self._loop.attach(limiter)
            header = self._header

            async def send_with_header(message: Message) -> None:
                if message["type"] == "http.response.start":
                    # The app's own x-lab-worker would be read first (aiohttp) or joined
                    # with ours (httpx): only the wrapper's names the worker.
                    headers = [h for h in message.get("headers", ())
                               if bytes(h[0]).lower() != header[0]]
                    message = {**message, "headers": [*headers, header]}
                await send(message)

            call: Awaitable[None] = self.app(scope, receive, send_with_header)
            if self._loop is not None:
                call = self._loop.drive(call if type(call) is types.CoroutineType
                                        else call.__await__(), scope)
            meter = self._meter
            if meter is None:
                await call
                return
            meter.started(scope.get("client"))
            try:
                await call
            finally:  # returned, raised, or cancelled (the client went away)
                meter.ended()
        elif scope["type"] == "websocket":
            asked = any(bytes(k).lower() == WORKER_HEADER.encode() and bytes(v) == WS_ASK.encode()
                        for k, v in scope.get("headers") or ())
            await self.app(scope, receive, self._worker_frame(send) if asked else send)
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    @staticmethod
    def _worker_frame(send: Send) -> Send:
        """The lab's WebSocket client asked which worker it reached: a text frame
        ``x-lab-worker <pid>`` follows the app's accept. A frame, not a header of the
        handshake's answer: granian drops those. Not metered: a socket held open for the
        whole window is no request in flight."""
        async def send_then_frame(message: Message) -> None:
            await send(message)
            if message["type"] == "websocket.accept":
                await send({"type": "websocket.send", "text": f"{WORKER_HEADER} {os.getpid()}"})

        return send_then_frame

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = {"received": False, "answered": False}

        async def relay_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                state["received"] = True
            elif message["type"] == "lifespan.shutdown" and self._loop is not None:
                self._loop.close()  # the last requests' counts, before the worker ends
            return message

        async def relay_send(message: Message) -> None:
            if message["type"] in ("lifespan.startup.complete", "lifespan.startup.failed"):
                state["answered"] = True
                if message["type"] == "lifespan.startup.complete":
                    self._mark()
            await send(message)

        try:
            await self.app(scope, relay_receive, relay_send)
        except Exception as e:
            if state["answered"]:
                raise  # failed start-up (already told) or a failure at shutdown: the app's
            print(f"lab.servers.asgi_wrap: the app does not support lifespan ({type(e).__name__}: "
                  f"{e}); starting without it", file=sys.stderr, flush=True)
        if state["answered"]:
            return
        # No lifespan support: the app raised or returned before start-up completed.
        if not state["received"]:
            await receive()  # lifespan.startup
        self._mark()
        await send({"type": "lifespan.startup.complete"})
        while (await receive())["type"] != "lifespan.shutdown":
            pass
        await send({"type": "lifespan.shutdown.complete"})


def load_app(spec: str, app_dir: str | None = None) -> Any:
    """The object ``spec`` ("module:attr") names, imported with ``app_dir`` first on the
    path. Raises ImportError or AttributeError as importing it would."""
    if app_dir and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    module, _, attr = spec.partition(":")
    loaded: Any = importlib.import_module(module)
    for part in attr.split("."):
        loaded = getattr(loaded, part)
    return loaded


async def _unset(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError(f"{SERVED} serves the app named by ${APP_ENV} (module:attr), which "
                       "is not set")


# Loaded at import in each server process, so a broken app fails the server's start as it
# would unwrapped (hypercorn looks `app` up in the module's namespace: it must be there).
# The lab itself imports this module without $LAB_APP, for the names above.
app = Wrapped(load_app(os.environ[APP_ENV], os.environ.get(APP_DIR_ENV))
              if os.environ.get(APP_ENV) else _unset)
