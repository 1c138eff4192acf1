"""The worker's side of the loop meter: how long each endpoint's requests held this worker's
event loop, where a long step blocked it, what held it outside any request, and how the
`def` endpoints queued for threads (``lab.servers.loopmeter`` has the snapshot's format).

The wrapper drives the app's coroutine itself (`LoopMeter.drive`): each ``send()``/``throw()``
into it is one synchronous step, timed in wall and thread CPU time, and whatever it yields
goes up to the server's loop unchanged. That sees every step on asyncio, uvloop and under
granian's Rust scheduler, which neither a task factory nor a loop hook does (DESIGN.md).
The request's path keeps its counts in locals and adds them to its endpoint's when it ends,
on the loop's thread, where they are warm in its cache: no lock (every server runs an ASGI
app's code on one thread per worker, granian too: since 2.0 it allows one blocking thread
for ASGI; the GIL keeps each snapshot whole).

One watchdog thread per worker does the rest, waking when a running step would pass the
threshold and at least every threshold:
- it samples the loop thread's stack once per step past the threshold (the step's *site*);
- it posts a heartbeat to the loop (``call_soon_threadsafe``) and times its lag; a beat late
  past the threshold while no request's step runs is a hold *outside* the requests — a task
  the app started, a ``BaseHTTPMiddleware`` downstream, the server's own work — sampled for
  its site the same way;
- it samples anyio's default thread limiter (tokens in use, tasks waiting), and the wrapper's
  ``anyio.to_thread.run_sync`` times each request's wait for a thread;
- it writes the snapshot.
Standard library only at import, as the wrapper.
"""

import asyncio
import json
import linecache
import os
import sys
import sysconfig
import threading
import time
import types
from collections.abc import Coroutine, Generator, MutableMapping
from typing import Any

from lab.servers import loopmeter, threadpool
from lab.servers.loopmeter import bucket_index

# The packages whose frames are not the app's, besides the standard library and whatever is
# installed in site-packages: the servers and frameworks where they are installed elsewhere
# (an editable install), and the lab itself.
NOT_APP = ("uvicorn", "hypercorn", "granian", "gunicorn", "uvicorn_worker", "starlette",
           "fastapi", "anyio", "h11", "httptools", "uvloop", "lab")
MAX_ENDPOINTS = 1000  # unrouted paths (a scan of 404s) beyond this many count as OTHER
OTHER = "(other paths)"
WAKE_LATE_S = 0.001  # the watchdog looks this long after a step would pass the threshold


class _Counts:
    """One endpoint's counts, as the request's path adds to them (``loopmeter.Endpoint`` is
    their snapshot); the ``longest`` histogram keyed by int, the snapshot's by str."""

    __slots__ = ("calls", "steps", "loop_s", "cpu_s", "max_step_s", "longest", "sites",
                 "thread_calls", "thread_wait_s")

    def __init__(self) -> None:
        self.calls = self.steps = self.thread_calls = 0
        self.loop_s = self.cpu_s = self.max_step_s = self.thread_wait_s = 0.0
        self.longest: dict[int, int] = {}
        self.sites: dict[str, list[float]] = {}  # site → [steps, seconds]

    def snapshot(self) -> loopmeter.Endpoint:
        return {"calls": self.calls, "steps": self.steps, "loop_s": self.loop_s,
                "cpu_s": self.cpu_s, "max_step_s": self.max_step_s,
                "longest": {str(k): n for k, n in self.longest.items()},
                "sites": {k: list(v) for k, v in self.sites.items()},
                "thread_calls": self.thread_calls, "thread_wait_s": self.thread_wait_s}


def _add(sites: dict[str, list[float]], site: str, seconds: float) -> None:
    hit = sites.setdefault(site, [0, 0.0])
    hit[0] += 1
    hit[1] += seconds


def _str_keys(table: dict[int, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in table.items()}


class LoopMeter:
    """This worker's loop meter: `drive` on the loop, `attach` at the first request (on the
    loop), the watchdog in its own thread."""

    def __init__(self, folder: str, flush: "memoryview[int]", block_s: float, roots: list[str]
                 ) -> None:
        self._path = os.path.join(folder, f"{os.getpid()}{loopmeter.SUFFIX}")
        self._flush = flush  # the folder's loop.flush, mapped
        self._block_s = block_s
        self._endpoints: dict[str, _Counts] = {}
        self._busy_s = 0.0
        self._calls = 0  # all calls that ended: the watchdog writes when it grew
        self._running: dict[int, float] = {}  # thread → its running step's start
        self._found: dict[int, tuple[float, str]] = {}  # thread → (a step's start, its site)
        self._waits: dict[int, list[float]] = {}  # thread → its running request's thread wait
        # the loop, its thread and that thread's CPU clock: set by attach
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._loop_clock: int | None = None
        # the heartbeat: lags by bucket, holds outside the requests and their sites
        self._lags: dict[int, int] = {}
        self._held_s = 0.0
        self._held_sites: dict[str, list[float]] = {}
        self._posted: float | None = None  # the pending beat's time
        self._landed: tuple[float, float] | None = None  # (posted, ran): set on the loop
        self._free_since: float | None = None  # the pending beat saw no request step since
        self._held_site: str | None = None  # the pending beat's hold, sampled
        # the default thread limiter: seconds at each count in use / waiting, and the
        # requests' runs in its threads by their wait (bucket → runs)
        self._limiter: Any = None
        self._tokens = 0
        self._in_use_s: dict[int, float] = {}
        self._waiting_s: dict[int, float] = {}
        self._thread_waits: dict[int, int] = {}
        # filename → the file as a site names it; None: not the app's
        self._app_file: dict[str, str | None] = {}
        paths = sysconfig.get_paths()
        self._not_app = tuple({os.path.join(os.path.realpath(paths[k]), "")
                               for k in ("stdlib", "platstdlib", "purelib", "platlib")}
                              | {os.path.join(os.path.dirname(os.path.realpath(f)), "")
                                 for name in NOT_APP
                                 if (f := getattr(sys.modules.get(name), "__file__", None))})
        self._roots = [os.path.join(os.path.realpath(d), "") for d in roots]
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="lab-loop-meter",
                                          daemon=True)
        self._watchdog.start()

    def attach(self, limiter: Any) -> None:
        """On the loop, at the worker's first request: the loop to beat on, its thread's
        CPU clock, and the default thread limiter (None: the app does not use anyio)."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # trio: no heartbeat
            self._loop = None
        self._loop_thread = threading.get_ident()
        try:
            self._loop_clock = time.pthread_getcpuclockid(self._loop_thread)
        except (AttributeError, OSError):
            self._loop_clock = None
        if limiter is not None:
            self._tokens = int(limiter.total_tokens)
            self._meter_threads(limiter)
            self._limiter = limiter

    @types.coroutine
    def drive(self, coro: Coroutine[Any, Any, Any] | Generator[Any, Any, Any],
              scope: MutableMapping[str, Any]) -> Generator[Any, Any, None]:
        """Run ``coro`` (the app's call) step by step, timing each step."""
        perf, cpu, ident = time.perf_counter, time.thread_time, threading.get_ident
        running, found, waits, block_s = self._running, self._found, self._waits, self._block_s
        steps, loop_s, cpu_s, longest = 0, 0.0, 0.0, 0.0
        waited = [0.0, 0]  # its waits for a thread: seconds, calls (the run_sync wrapper's)
        sites: list[tuple[str, float]] | None = None  # most calls have none
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                thread = ident()  # a server may resume a request on another thread
                waits[thread] = waited
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
            self._ended(scope, steps, loop_s, cpu_s, longest, sites, waited)

    def _ended(self, scope: MutableMapping[str, Any], steps: int, loop_s: float, cpu_s: float,
               longest: float, sites: list[tuple[str, float]] | None, waited: list[float]
               ) -> None:
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
        key = bucket_index(longest)
        e.longest[key] = e.longest.get(key, 0) + 1
        for site, seconds in sites or ():
            _add(e.sites, site, seconds)
        if waited[1]:
            e.thread_wait_s += waited[0]
            e.thread_calls += int(waited[1])
        self._busy_s += loop_s
        self._calls += 1

    def _meter_threads(self, limiter: Any) -> None:
        """Time each request's wait for a thread of the default limiter: the wrapper of
        ``anyio.to_thread.run_sync`` (Starlette looks it up at each call) notes when it was
        asked and, in the thread, when the function began. The count of who waited as it
        asked would say nothing: anyio yields once before it takes a token, so a burst's
        requests all ask before any has one."""
        import anyio.to_thread

        original = anyio.to_thread.run_sync
        perf, ident = time.perf_counter, threading.get_ident
        running, waits, hist = self._running, self._waits, self._thread_waits

        async def run_sync(func: Any, *args: Any, **kwargs: Any) -> Any:
            thread = ident()
            waited = waits.get(thread) if thread in running else None  # a request's step
            if waited is None or kwargs.get("limiter") not in (None, limiter):
                return await original(func, *args, **kwargs)
            t0, began = perf(), []

            def timed(*a: Any) -> Any:
                began.append(perf())
                return func(*a)

            try:
                return await original(timed, *args, **kwargs)
            finally:  # on the loop
                wait = (began[0] if began else perf()) - t0
                waited[0] += wait
                waited[1] += 1
                key = bucket_index(wait)
                hist[key] = hist.get(key, 0) + 1

        anyio.to_thread.run_sync = run_sync  # type: ignore[assignment]

    def write(self) -> None:
        """The snapshot, whole (a temporary file, then ``os.replace``). Only one thread writes
        at a time: the watchdog, or close once it has stopped."""
        flush = self._flush[0]
        loop_cpu = (time.clock_gettime(self._loop_clock) if self._loop_clock is not None
                    else None)
        threads: loopmeter.Threads | None = None
        if self._limiter is not None:
            threads = {"tokens": self._tokens, "in_use_s": _str_keys(self._in_use_s),
                       "waiting_s": _str_keys(self._waiting_s),
                       "waits": _str_keys(self._thread_waits)}
        snapshot: loopmeter.Snapshot = {
            "v": loopmeter.VERSION, "pid": os.getpid(), "flush": flush, "busy_s": self._busy_s,
            "loop_cpu_s": loop_cpu,
            "beats": {"lag": _str_keys(self._lags), "held_s": self._held_s,
                      "sites": {k: list(v) for k, v in list(self._held_sites.items())}},
            "threads": threads,
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
        pause, last = block_s, time.perf_counter()
        while not self._stop.wait(pause):
            now = time.perf_counter()
            # Wake when the running step would pass the threshold, not on a fixed short tick:
            # each wake takes the GIL from the loop it watches.
            pause = block_s
            on_loop = False  # a request's step runs on the loop's thread
            for thread, t0 in self._running.copy().items():
                on_loop = on_loop or thread == self._loop_thread
                if now - t0 <= block_s:
                    pause = min(pause, block_s - (now - t0) + WAKE_LATE_S)
                elif (hit := self._found.get(thread)) is None or hit[0] is not t0:
                    frame = sys._current_frames().get(thread)
                    site = self._site(frame) if frame is not None else None
                    if site is not None and self._running.get(thread) is t0:
                        self._found[thread] = (t0, site)  # the frames were taken in the step
            self._sample_threads(now - last)
            last = now
            self._beat_check(now, on_loop)
            try:
                if self._flush[0] != flushed or (self._calls != written and now >= due):
                    flushed, written, due = self._flush[0], self._calls, now + loopmeter.WRITE_S
                    self.write()
            except OSError as e:  # the run folder is gone (the lab has ended): stop writing
                _stopped(e)
                return

    def _sample_threads(self, seconds: float) -> None:
        """The limiter as the watchdog finds it, counted for the time since its last look."""
        limiter = self._limiter
        if limiter is None:
            return
        in_use, waiting = limiter.borrowed_tokens, threadpool.waiting(limiter)
        self._in_use_s[in_use] = self._in_use_s.get(in_use, 0.0) + seconds
        self._waiting_s[waiting] = self._waiting_s.get(waiting, 0.0) + seconds

    def _beat(self, posted: float) -> None:  # on the loop
        self._landed = (posted, time.perf_counter())

    def _beat_check(self, now: float, on_loop: bool) -> None:
        """Count the beat that landed, post the next one, or watch the pending one: late past
        the threshold with no request's step on the loop, the loop is held outside them."""
        loop = self._loop
        if loop is None:
            return
        landed = self._landed
        if self._posted is not None and landed is not None and landed[0] == self._posted:
            posted, ran = landed
            key = bucket_index(ran - posted)
            self._lags[key] = self._lags.get(key, 0) + 1
            held = ran - max(posted, self._free_since or ran)
            # a beat late mostly behind requests' steps, outside them only briefly, is theirs
            if self._held_site is not None and held >= self._block_s / 2:
                self._held_s += held
                _add(self._held_sites, self._held_site, held)
            self._posted = self._free_since = self._held_site = None
        if self._posted is None:
            self._posted, self._free_since = now, (None if on_loop else now)
            try:
                loop.call_soon_threadsafe(self._beat, now)
            except RuntimeError:  # the loop has closed (the worker is ending)
                self._loop = None
            return
        if on_loop:
            self._free_since = None  # what holds the loop now is a request's: not residual
            return
        if self._free_since is None:
            self._free_since = now
        if self._held_site is None and now - self._posted > self._block_s:
            frame = sys._current_frames().get(self._loop_thread)
            if frame is not None and self._loop_thread not in self._running:
                self._held_site = self._site(frame)

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
    print(f"lab.servers.loopwatch: loop meter stopped ({type(e).__name__}: {e})",
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
