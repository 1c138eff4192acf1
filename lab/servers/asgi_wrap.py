"""The apps' contract with the lab, and the thin ASGI wrapper that fulfils it for any app.

Servers serve ``lab.servers.asgi_wrap:app``; the user's app (``LAB_APP = "module:attr"``, imported
from ``LAB_APP_DIR``) runs inside, untouched. The wrapper

- adds ``x-lab-worker: <pid>`` to every HTTP response, in place of any the app sent, so
  every engine (wrk's Lua script too) attributes each answer to the worker that gave it,
  whatever the body;
- passes lifespan through, and writes the worker's ready marker (``LAB_READY_DIR/<pid>``)
  once the app's start-up has completed, so the lab waits for *every* worker;
- starts an app without lifespan support on every server: when the app raises or returns
  before completing start-up (a bare ASGI callable), the wrapper completes it for the
  server itself, as uvicorn's ``--lifespan auto`` would, and marks the worker ready; it
  also marks a worker at its first request (a server that runs no lifespan at all);
- counts the HTTP requests in flight in the worker (inside the app's call) and their peak
  over the lab's measurement window, in the worker's meter file ``LAB_METER_DIR/<pid>``
  (``Meter``; the lab reads it with ``lab.load.inflight``), when the lab names that folder;
- with ``LAB_LOOP_METER = "1"``, times every synchronous step of each HTTP request on the
  worker's loop, per endpoint, samples where a long one blocked, and writes the counts to
  ``LAB_METER_DIR/<pid>.loop.json`` (``LoopMeter``; the format is ``lab.servers.loopmeter``).

One module that both sides import: the lab reads the header's name and the environment's
names from here, the servers the wrapper. It imports only the standard library at module
level, and the user's app only where ``LAB_APP`` is set (in the servers), so the lab can
import it for the names. It runs on any event loop (asyncio, uvloop, trio) and under
granian's Rust scheduler: it starts no tasks, only relays messages, and counts in plain
code around the app's call (no loop hook sees granian's requests, DESIGN.md).
"""

import importlib
import json
import linecache
import mmap
import os
import sys
import sysconfig
import threading
import time
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, MutableMapping
from pathlib import Path
from typing import Any

from lab.servers import loopmeter

WORKER_HEADER = "x-lab-worker"  # lower case: what every server sends and wrk's table holds
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
METER_FIELDS = ("seq", "generation", "peak", "current", "started", "total")
METER_SLOTS = 8  # 64 bytes: one cache line; the slots after the fields stay zero
SEQ, GENERATION, PEAK, CURRENT, STARTED, TOTAL = range(len(METER_FIELDS))


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
    generation exactly when it saw a request start in the window. The lock keeps the
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

    def started(self) -> None:
        with self._lock:
            self._current += 1
            self._total += 1
            generation = self._window[0]
            if generation != self._generation:
                self._generation, self._peak, self._started = generation, self._current, 1
            else:
                self._started += 1
                if self._current > self._peak:
                    self._peak = self._current
            f = self._fields
            f[SEQ] = self._seq = self._seq + 1
            f[GENERATION], f[PEAK], f[CURRENT] = generation, self._peak, self._current
            f[STARTED], f[TOTAL] = self._started, self._total
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


# The packages whose frames are not the app's, besides the standard library and whatever is
# installed in site-packages: the servers and frameworks where they are installed elsewhere
# (an editable install), and the lab itself.
NOT_APP = ("uvicorn", "hypercorn", "granian", "starlette", "fastapi", "anyio", "h11",
           "httptools", "uvloop", "lab")
MAX_ENDPOINTS = 1000  # unrouted paths (a scan of 404s) beyond this many count as OTHER
OTHER = "(other paths)"
WAKE_LATE_S = 0.001  # the watchdog looks this long after a step would pass the threshold


class _Counts:
    """One endpoint's counts, as the request's path adds to them (``loopmeter.Endpoint`` is
    their snapshot); the ``longest`` histogram keyed by int, the snapshot's by str."""

    __slots__ = ("calls", "steps", "loop_s", "cpu_s", "max_step_s", "longest", "sites")

    def __init__(self) -> None:
        self.calls = self.steps = 0
        self.loop_s = self.cpu_s = self.max_step_s = 0.0
        self.longest: dict[int, int] = {}
        self.sites: dict[str, list[float]] = {}  # site → [steps, seconds]

    def snapshot(self) -> loopmeter.Endpoint:
        return {"calls": self.calls, "steps": self.steps, "loop_s": self.loop_s,
                "cpu_s": self.cpu_s, "max_step_s": self.max_step_s,
                "longest": {str(k): n for k, n in self.longest.items()},
                "sites": {k: list(v) for k, v in self.sites.items()}}


class LoopMeter:
    """How long each endpoint's requests held this worker's event loop, and where a long
    step blocked it (``lab.servers.loopmeter`` has the format).

    The wrapper drives the app's coroutine itself (`drive`): each ``send()``/``throw()`` into
    it is one synchronous step, timed in wall and thread CPU time, and whatever it yields
    goes up to the server's loop unchanged. That sees every step on asyncio, uvloop and
    under granian's Rust scheduler, which neither a task factory nor a loop hook does
    (DESIGN.md). The request's path keeps its counts in locals and adds them to its
    endpoint's when it ends, on the loop's thread, where they are warm in its cache: no
    lock (every server runs an ASGI app's code on one thread per worker, granian too: since
    2.0 it allows one blocking thread for ASGI; the GIL keeps each snapshot whole). The watchdog thread finds the steps that run past the threshold
    and samples the loop thread's stack once per step, and writes the snapshot."""

    def __init__(self, folder: str, block_s: float) -> None:
        self._path = os.path.join(folder, f"{os.getpid()}{loopmeter.SUFFIX}")
        self._flush = map_u64s(os.path.join(folder, loopmeter.FLUSH_FILE), 1, write=False)
        self._block_s = block_s
        self._endpoints: dict[str, _Counts] = {}
        self._busy_s = 0.0
        self._calls = 0  # all calls that ended: the watchdog writes when it grew
        self._running: dict[int, float] = {}  # thread → its running step's start
        self._found: dict[int, tuple[float, str]] = {}  # thread → (a step's start, its site)
        # filename → the file as a site names it; None: not the app's
        self._app_file: dict[str, str | None] = {}
        paths = sysconfig.get_paths()
        self._not_app = tuple({os.path.join(os.path.realpath(paths[k]), "")
                               for k in ("stdlib", "platstdlib", "purelib", "platlib")}
                              | {os.path.join(os.path.dirname(os.path.realpath(f)), "")
                                 for name in NOT_APP
                                 if (f := getattr(sys.modules.get(name), "__file__", None))})
        self._roots = [os.path.join(os.path.realpath(d), "")
                       for d in (os.environ.get(APP_DIR_ENV), os.getcwd()) if d]
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="lab-loop-meter",
                                          daemon=True)
        self._watchdog.start()

    @types.coroutine
    def drive(self, coro: Coroutine[Any, Any, Any] | Generator[Any, Any, Any], scope: Scope
              ) -> Generator[Any, Any, None]:
        """Run ``coro`` (the app's call) step by step, timing each step."""
        perf, cpu, ident = time.perf_counter, time.thread_time, threading.get_ident
        running, found, block_s = self._running, self._found, self._block_s
        steps, loop_s, cpu_s, longest = 0, 0.0, 0.0, 0.0
        sites: list[tuple[str, float]] | None = None  # most calls have none
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                thread = ident()  # a server may resume a request on another thread
                running[thread] = t0 = perf()  # this float, by identity, is the step
                c0 = cpu()
                try:
                    if error is None:
                        yielded = coro.send(value)
                    else:
                        yielded, error = coro.throw(error), None
                except StopIteration:
                    return
                finally:
                    wall, spent = perf() - t0, cpu() - c0
                    del running[thread]
                    steps += 1
                    loop_s += wall
                    cpu_s += spent
                    if wall > longest:
                        longest = wall
                    # only a step past the threshold can have been sampled; a site found for
                    # an earlier step of this thread is not this one's
                    if wall > block_s and (hit := found.pop(thread, None)) and hit[0] is t0:
                        sites = [*(sites or ()), (hit[1], wall)]
                try:
                    value = yield yielded
                except GeneratorExit:  # the server dropped the request's coroutine
                    coro.close()
                    raise
                except BaseException as e:  # cancelled (the client went away), or thrown in
                    value, error = None, e
        finally:
            self._ended(scope, steps, loop_s, cpu_s, longest, sites)

    def _ended(self, scope: Scope, steps: int, loop_s: float, cpu_s: float, longest: float,
               sites: list[tuple[str, float]] | None) -> None:
        # Starlette and FastAPI set the route while routing: read it once the call is over.
        name = getattr(scope.get("route"), "path", None) or str(scope.get("path"))
        e = self._endpoints.get(name)
        if e is None:
            if len(self._endpoints) >= MAX_ENDPOINTS:
                name = OTHER
            e = self._endpoints.setdefault(name, _Counts())
        e.calls += 1
        e.steps += steps
        e.loop_s += loop_s
        e.cpu_s += cpu_s
        if longest > e.max_step_s:
            e.max_step_s = longest
        key = loopmeter.bucket_index(longest)
        e.longest[key] = e.longest.get(key, 0) + 1
        for site, seconds in sites or ():
            hit = e.sites.setdefault(site, [0, 0.0])
            hit[0] += 1
            hit[1] += seconds
        self._busy_s += loop_s
        self._calls += 1

    def write(self) -> None:
        """The snapshot, whole (a temporary file, then ``os.replace``). Only one thread writes
        at a time: the watchdog, or close once it has stopped."""
        flush = self._flush[0]
        snapshot: loopmeter.Snapshot = {
            "v": loopmeter.VERSION, "pid": os.getpid(), "flush": flush, "busy_s": self._busy_s,
            "endpoints": {k: e.snapshot() for k, e in list(self._endpoints.items())}}
        text = json.dumps(snapshot, separators=(",", ":"))
        tmp = f"{self._path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, self._path)

    def close(self) -> None:
        """Stop the watchdog, and write the last counts (the worker's lifespan shutdown)."""
        self._stop.set()
        self._watchdog.join()
        try:
            self.write()
        except OSError as e:
            _stopped(e)

    def _watch(self) -> None:
        flushed, written, due, block_s = -1, -1, 0.0, self._block_s
        pause = block_s
        while not self._stop.wait(pause):
            now = time.perf_counter()
            # Wake when the running step would pass the threshold, not on a fixed short tick:
            # each wake takes the GIL from the loop it watches.
            pause = block_s
            for thread, t0 in self._running.copy().items():
                if now - t0 <= block_s:
                    pause = min(pause, block_s - (now - t0) + WAKE_LATE_S)
                elif (hit := self._found.get(thread)) is None or hit[0] is not t0:
                    frame = sys._current_frames().get(thread)
                    site = self._site(frame) if frame is not None else None
                    if site is not None and self._running.get(thread) is t0:
                        self._found[thread] = (t0, site)  # the frames were taken in the step
            try:
                if self._flush[0] != flushed or (self._calls != written and now >= due):
                    flushed, written, due = self._flush[0], self._calls, now + loopmeter.WRITE_S
                    self.write()
            except OSError as e:  # the run folder is gone (the lab has ended): stop writing
                _stopped(e)
                return

    def _site(self, frame: types.FrameType) -> str:
        """``time.sleep at app.py:12 in slow``: the innermost frame of the app, led by what
        it was calling, or by the innermost frame's function when that is a library's."""
        f: types.FrameType | None = frame
        while f is not None and self._app_name(f.f_code.co_filename) is None:
            f = f.f_back
        if f is None:
            return f"{_function(frame)} (no frame of the app)"
        where = f"{self._app_name(f.f_code.co_filename)}:{f.f_lineno} in {f.f_code.co_name}"
        callee = _callee(f) if f is frame else _function(frame)
        return f"{callee} at {where}" if callee else where

    def _app_name(self, filename: str) -> str | None:
        """The file as a site names it (relative to the app's folder or the cwd), or None
        when it is not the app's."""
        if filename not in self._app_file:
            path = os.path.realpath(filename)
            name: str | None = None
            if not filename.startswith("<") and not path.startswith(self._not_app):
                root = next((r for r in self._roots if path.startswith(r)), "")
                name = path[len(root):]
            self._app_file[filename] = name
        return self._app_file[filename]


def _stopped(e: OSError) -> None:
    print(f"lab.servers.asgi_wrap: loop meter stopped ({type(e).__name__}: {e})",
          file=sys.stderr, flush=True)


def _function(frame: types.FrameType) -> str:
    return f"{frame.f_globals.get('__name__', '?')}.{frame.f_code.co_qualname}"


def _callee(frame: types.FrameType) -> str | None:
    """What ``frame`` is calling now (``time.sleep``), from the source of its call
    instruction; None when it is not in a call (pure Python work of its own)."""
    import dis  # the watchdog's, once a step blocked: not the loop's start-up

    code, at = frame.f_code, frame.f_lasti
    if not dis.opname[code.co_code[at]].startswith(("CALL", "PRECALL")):
        return None
    line, end_line, col, end_col = list(code.co_positions())[at // 2]
    if line is None or col is None:
        return None
    text = linecache.getline(code.co_filename, line).encode()
    expr = text[col:end_col if end_line == line else None].decode(errors="replace")
    name = expr.split("(", 1)[0].strip()
    return name if name and all(p.isidentifier() for p in name.split(".")) else None


def open_loop_meter() -> LoopMeter | None:
    """This worker's loop meter, when the lab asks for one (``LAB_LOOP_METER = "1"`` and a
    meter folder); one that cannot be opened is reported once and the app served without."""
    folder = os.environ.get(METER_DIR_ENV)
    if os.environ.get(LOOP_METER_ENV) != "1" or not folder:
        return None
    try:
        block_ms = float(os.environ.get(LOOP_BLOCK_MS_ENV) or LOOP_BLOCK_MS)
        return LoopMeter(folder, block_ms / 1000)
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
            meter.started()
            try:
                await call
            finally:  # returned, raised, or cancelled (the client went away)
                meter.ended()
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

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
