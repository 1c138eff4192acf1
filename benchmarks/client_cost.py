"""Which load client costs the lab least? Against one real server on loopback, measure each
candidate HTTP client's own CPU per request, the req/s it reaches, and how far apart it
writes the requests of a burst.

    .venv/bin/python benchmarks/client_cost.py [--server uvicorn] [--seconds 2]
        [--bursts 3] [--rounds 2] [--candidate NAME ...] [--json PATH]

The server is started with the lab's supervisor (``lab.supervise.process.running``), 1 worker,
``apps.article:app`` unwrapped, on uvloop (and httptools for uvicorn). For every candidate
client, on asyncio and on uvloop where it runs on an event loop:

* closed loop on ``/hello`` at 1, 64 and 512 connections for ``--seconds`` each (after a
  short warm-up): every user sends, waits for the answer, sends again. Client CPU per
  request = ``time.process_time()`` of this process over the window ÷ successful
  requests (the server is another process, so it is not in it); req/s = successes ÷ wall.
* warm burst of N = 1, 64, 512 GETs of ``/non-blocking?delay=0.05``: N connections opened
  and each checked with one request first, then N requests at once. Send spread = last
  request written − first written; wall = first written → last response read. Each burst
  is repeated ``--bursts`` times on the same connections.

The whole set runs ``--rounds`` times (default 2), interleaved: every candidate at one load,
then the next load, the order rotating each round, so drift of the shared machine falls on
all of them alike; the table shows medians over rounds (over all bursts for the bursts).

Candidates: ``rawhttp`` (the lab's own asyncio Protocol on httptools), ``aiohttp`` and
``httpx`` (the lab's engines, ``lab.load.engines.ENGINES``), ``h11`` (a minimal client on
asyncio streams with the h11 parser, one connection per user, written here), and pycurl's
multi interface (libcurl's own perform/select loop, no asyncio, written here). httpx is
measured as ONE shared client with c connections; the lab's closed loops give each httpx
user a client of its own instead, so its closed-loop figure here is the pooled one.
pycurl's send time is taken from libcurl's debug callback (``CURLOPT_DEBUGFUNCTION``, type
``HEADER_OUT``, called as the request head is sent; it needs ``VERBOSE``, on for bursts
only). ``CURLINFO_PRETRANSFER_TIME_T`` cannot place the sends on one clock: it counts from
when libcurl starts the handle inside ``perform`` (20–30 µs for each of 512 handles, while
their heads went out over 15–30 ms), not from when it was added.

It also prints wrk's p50 latency at one connection on ``/hello`` and the lab's warm idle
probe (200 sequential ``/hello`` on one pre-connected rawhttp client), and their ratio:
the lab's probe should be within 2x of wrk's p50.

Every measurement is bounded (per-request timeout plus a deadline per window); a failing
measurement is reported as such and the benchmark goes on. The garbage collector is held
off during each window (``lab.load.window.quiet_gc``), as the lab does. The machine is
shared and noisy: compare rows of one run, not figures across runs.
"""

import argparse
import asyncio
import io
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, TypeVar

import h11
import uvloop
from tabulate import tabulate

from lab.load.engines import ENGINES
from lab.load.samples import Sample
from lab.load.window import quiet_gc
from lab.matrix.config import LabSettings
from lab.matrix.endpoint import Endpoint
from lab.servers import ADAPTERS
from lab.supervise.process import Readiness, running

T = TypeVar("T")

APP = "apps.article:app"
PROJECT = Path(__file__).resolve().parents[1]
HELLO = Endpoint("/hello")
NON_BLOCKING = Endpoint("/non-blocking")
DELAY_S = 0.05
CONNECTIONS = (1, 64, 512)
TIMEOUT_S = 10.0  # per request
SERVER_OPTIONS: dict[str, dict[str, str]] = {
    "uvicorn": {"loop": "uvloop", "http": "httptools"},
    "hypercorn": {"worker_class": "uvloop"},
    "granian": {"loop": "uvloop"},
}
LOOPS = ("asyncio", "uvloop")


# ---------------------------------------------------------------------------- results


@dataclass
class Closed:
    connections: int
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    failure: str | None = None

    @property
    def us_per_request(self) -> float | None:
        return 1e6 * self.cpu_s / self.ok if self.ok else None

    @property
    def rps(self) -> float | None:
        return self.ok / self.wall_s if self.wall_s > 0 and self.ok else None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "us_per_request": self.us_per_request, "rps": self.rps,
                "client_cpu_pct": 100 * self.cpu_s / self.wall_s if self.wall_s else None}


@dataclass
class Burst:
    n: int
    spreads_ms: list[float] = field(default_factory=list)
    walls_ms: list[float] = field(default_factory=list)
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    sent_known: bool = True  # every request's write time was reported by the client
    failure: str | None = None

    @property
    def spread_ms(self) -> float | None:
        return statistics.median(self.spreads_ms) if self.spreads_ms else None

    @property
    def wall_ms(self) -> float | None:
        return statistics.median(self.walls_ms) if self.walls_ms else None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "spread_ms": self.spread_ms, "wall_ms": self.wall_ms}


@dataclass
class Row:
    """One candidate on one loop: its measurements of every round, by load."""

    candidate: str
    loop: str
    closed: dict[int, list[Closed]] = field(default_factory=dict)
    bursts: dict[int, list[Burst]] = field(default_factory=dict)
    failure: str | None = None

    def parts(self) -> list[Closed | Burst]:
        return [*(m for ms in self.closed.values() for m in ms),
                *(b for bs in self.bursts.values() for b in bs)]

    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for part in self.parts():
            total.update(part.errors)
        return total

    def failures(self) -> list[str]:
        return sorted({f"{'c' if isinstance(p, Closed) else 'N'}="
                       f"{p.connections if isinstance(p, Closed) else p.n}: {p.failure}"
                       for p in self.parts() if p.failure})

    def us_per_request(self, c: int) -> float | None:
        got = [m.us_per_request for m in self.closed.get(c, []) if not m.failure]
        values = [x for x in got if x is not None]
        return statistics.median(values) if values else None

    def rps(self, c: int) -> float | None:
        got = [m.rps for m in self.closed.get(c, []) if not m.failure]
        values = [x for x in got if x is not None]
        return statistics.median(values) if values else None

    def burst(self, n: int, what: str) -> str:
        bs = [b for b in self.bursts.get(n, []) if not b.failure]
        if not bs:
            return "fail" if self.bursts.get(n) else "–"
        if what == "spread" and not all(b.sent_known for b in bs):
            return "n/a"
        values = [v for b in bs for v in (b.spreads_ms if what == "spread" else b.walls_ms)]
        return _num(statistics.median(values), 2 if what == "spread" else 1) \
            if values else "–"

    def as_json(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "loop": self.loop, "failure": self.failure,
                "closed": {c: [m.as_json() for m in ms] for c, ms in self.closed.items()},
                "bursts": {n: [b.as_json() for b in bs] for n, bs in self.bursts.items()},
                "median_us_per_request": {c: self.us_per_request(c) for c in self.closed},
                "median_rps": {c: self.rps(c) for c in self.closed},
                "errors": dict(self.errors()), "failures": self.failures()}


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:200] if str(e) else type(e).__name__


def _burst_times(samples: list[Sample]) -> tuple[float, float, bool]:
    """(spread ms, wall ms, whether every write time was known); an unknown write time
    counts from when the request was asked for."""
    sent = [s.sent if s.sent is not None else s.start for s in samples]
    last = max(s.start + s.latency_s for s in samples)
    return (1e3 * (max(sent) - min(sent)), 1e3 * (last - min(sent)),
            all(s.sent is not None for s in samples))


# ------------------------------------------------------------------ asyncio candidates


class _Users:
    """What a closed loop needs from an asyncio client: warm c connections, then c users
    that each send and wait, and the same for a burst."""

    async def open(self, connections: int) -> None:
        raise NotImplementedError

    async def user(self, deadline: float, ok: list[int], errors: Counter[str]) -> None:
        raise NotImplementedError

    async def burst(self, n: int) -> list[Sample]:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class _EngineUsers(_Users):
    """A lab engine (rawhttp, aiohttp, httpx): one client with ``connections`` connections,
    shared by every user."""

    def __init__(self, engine: str, base_url: str, params: dict[str, float]) -> None:
        self._engine, self._base, self._params = engine, base_url, params

    async def open(self, connections: int) -> None:
        self._client = ENGINES[self._engine].client(self._base, self._params, connections,
                                                    TIMEOUT_S)
        await self._client.connect(connections, HELLO)

    async def user(self, deadline: float, ok: list[int], errors: Counter[str]) -> None:
        send = self._client.send
        while time.perf_counter() < deadline:
            try:
                s = await send(HELLO)
            except Exception as e:  # an engine that raised instead of reporting
                errors[type(e).__name__] += 1
                continue
            if s.error is None:
                ok[0] += 1
            else:
                errors[s.error] += 1

    async def burst(self, n: int) -> list[Sample]:
        return await self._client.burst(NON_BLOCKING, n)

    async def aclose(self) -> None:
        if hasattr(self, "_client"):
            await self._client.aclose()


class _H11Connection:
    """One keep-alive connection: asyncio streams, h11 for the protocol."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host
        self.conn = h11.Connection(our_role=h11.CLIENT)

    def write(self, target: str) -> float:
        """Write the request now; perf_counter() when written."""
        data = self.conn.send(h11.Request(method="GET", target=target,
                                          headers=[("Host", self.host)]))
        data = (data or b"") + (self.conn.send(h11.EndOfMessage()) or b"")
        sent = time.perf_counter()
        self.writer.write(data)
        return sent

    async def read(self) -> int:
        """The response's status, its body read and dropped; ready for the next one."""
        status = 0
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("closed by the server")
        self.conn.start_next_cycle()
        return status

    async def request(self, target: str) -> tuple[float, int]:
        sent = self.write(target)
        return sent, await self.read()

    def close(self) -> None:
        self.writer.close()


class _H11Users(_Users):
    """One connection per user, each used by its user only."""

    def __init__(self, host: str, port: int, query: str) -> None:
        self._host, self._port = host, port
        self._hello = "/hello" + query
        self._target = "/non-blocking" + query
        self._conns: list[_H11Connection] = []
        self._free: list[_H11Connection] = []

    async def _connect(self) -> _H11Connection:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        return _H11Connection(reader, writer, f"{self._host}:{self._port}")

    async def open(self, connections: int) -> None:
        async with asyncio.timeout(TIMEOUT_S):
            opened = await asyncio.gather(*(self._connect() for _ in range(connections)),
                                          return_exceptions=True)
        self._conns = [c for c in opened if isinstance(c, _H11Connection)]
        if len(self._conns) < connections:
            raise RuntimeError(f"{connections - len(self._conns)} of {connections} "
                               f"connections failed to open")
        async with asyncio.timeout(TIMEOUT_S):
            answers = await asyncio.gather(*(c.request(self._hello) for c in self._conns))
        bad = sum(status != 200 for _, status in answers)
        if bad:
            raise RuntimeError(f"warm-up: {bad} of {connections} answers were not 200")
        self._free = list(self._conns)

    async def user(self, deadline: float, ok: list[int], errors: Counter[str]) -> None:
        if not self._free:  # a connection lost in an earlier phase
            errors["no_connection"] += 1
            return
        conn = self._free.pop()
        while time.perf_counter() < deadline:
            try:
                async with asyncio.timeout(TIMEOUT_S):
                    _, status = await conn.request(self._hello)
            except (OSError, TimeoutError, h11.ProtocolError) as e:
                errors[type(e).__name__] += 1
                return  # the connection is no longer usable
            if status == 200:
                ok[0] += 1
            else:
                errors[f"http_{status}"] += 1
        self._free.append(conn)

    async def burst(self, n: int) -> list[Sample]:
        conns = self._conns[:n]
        starts = [time.perf_counter() for _ in conns]
        sent = [c.write(self._target) for c in conns]  # one loop turn, no await between

        async def answer(i: int, c: _H11Connection) -> Sample:
            try:
                status = await c.read()
            except (OSError, h11.ProtocolError) as e:
                return Sample(starts[i], time.perf_counter() - starts[i], type(e).__name__,
                              None, sent[i])
            return Sample(starts[i], time.perf_counter() - starts[i],
                          None if status == 200 else f"http_{status}", None, sent[i])

        async with asyncio.timeout(TIMEOUT_S):
            return list(await asyncio.gather(*(answer(i, c) for i, c in enumerate(conns))))

    async def aclose(self) -> None:
        for c in self._conns:
            c.close()
        await asyncio.sleep(0)


Factory = Callable[[dict[str, float]], _Users]  # params -> a fresh client


async def _closed(make: Factory, connections: int, seconds: float, warmup_s: float
                  ) -> Closed:
    users = make({})
    result = Closed(connections)
    try:
        await users.open(connections)
        bound = seconds + warmup_s + TIMEOUT_S + 5.0
        async with asyncio.timeout(bound):
            if warmup_s > 0:
                deadline = time.perf_counter() + warmup_s
                await asyncio.gather(*(users.user(deadline, [0], Counter())
                                       for _ in range(connections)))
            ok, errors = [0], Counter[str]()
            with quiet_gc():
                cpu0, t0 = time.process_time(), time.perf_counter()
                deadline = t0 + seconds
                await asyncio.gather(*(users.user(deadline, ok, errors)
                                       for _ in range(connections)))
                result.wall_s = time.perf_counter() - t0
                result.cpu_s = time.process_time() - cpu0
        result.ok, result.errors = ok[0], dict(errors)
    except Exception as e:
        result.failure = _why(e)
    finally:
        try:
            await users.aclose()
        except Exception as e:
            result.failure = result.failure or f"close: {_why(e)}"
    return result


async def _burst(make: Factory, n: int, repeats: int) -> Burst:
    users = make({"delay": DELAY_S})
    result = Burst(n)
    errors: Counter[str] = Counter()
    try:
        await users.open(n)
        for _ in range(repeats):
            with quiet_gc():
                samples = await asyncio.wait_for(users.burst(n), TIMEOUT_S + 5.0)
            good = [s for s in samples if s.error is None]
            errors.update(s.error for s in samples if s.error is not None)
            result.ok += len(good)
            spread, wall, known = _burst_times(samples)
            result.spreads_ms.append(spread)
            result.walls_ms.append(wall)
            result.sent_known = result.sent_known and known
            await asyncio.sleep(0.05)
    except Exception as e:
        result.failure = _why(e)
    finally:
        result.errors = dict(errors)
        try:
            await users.aclose()
        except Exception as e:
            result.failure = result.failure or f"close: {_why(e)}"
    return result


def _on(loop: str, coro: Coroutine[Any, Any, T]) -> T:
    factory = uvloop.new_event_loop if loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


@dataclass
class Candidate:
    """How to take one closed-loop window and one set of bursts with a candidate."""

    row: Row
    closed: Callable[[int], Closed]  # connections -> a window
    burst: Callable[[int], Burst]  # N -> the bursts of one round


def _asyncio_candidate(name: str, loop: str, make: Factory, args: argparse.Namespace
                       ) -> Candidate:
    warmup = min(0.5, args.seconds / 4)
    return Candidate(Row(name, loop),
                     lambda c: _on(loop, _closed(make, c, args.seconds, warmup)),
                     lambda n: _on(loop, _burst(make, n, args.bursts)))


# ---------------------------------------------------------------------------- pycurl


class _Curl:
    """libcurl's multi interface driven by its own perform/select loop: ``n`` easy
    handles on one multi handle, whose connection cache keeps ``n`` connections alive."""

    def __init__(self, pycurl: Any, n: int) -> None:
        self.pc = pycurl
        self.multi = pycurl.CurlMulti()
        self.multi.setopt(pycurl.M_MAXCONNECTS, n)
        self.multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, n)
        self.handles: list[Any] = []
        self.buffers: dict[int, io.BytesIO] = {}
        self.sent: dict[int, float] = {}
        for _ in range(n):
            h = pycurl.Curl()
            buf = io.BytesIO()
            h.setopt(pycurl.WRITEFUNCTION, buf.write)
            h.setopt(pycurl.NOSIGNAL, 1)
            h.setopt(pycurl.PROXY, "")
            h.setopt(pycurl.TIMEOUT_MS, int(TIMEOUT_S * 1000))
            h.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
            h.setopt(pycurl.TCP_NODELAY, 1)
            self.buffers[id(h)] = buf
            self.handles.append(h)

    def set_url(self, url: str) -> None:
        for h in self.handles:
            h.setopt(self.pc.URL, url)

    def trace_sends(self, on: bool) -> None:
        """Record when each request head is sent (debug callback; needs VERBOSE)."""
        for h in self.handles:
            if on:
                h.setopt(self.pc.VERBOSE, 1)
                h.setopt(self.pc.DEBUGFUNCTION, self._debug(id(h)))
            else:
                h.setopt(self.pc.VERBOSE, 0)

    def _debug(self, key: int) -> Callable[[int, bytes], None]:
        header_out = self.pc.INFOTYPE_HEADER_OUT

        def debug(kind: int, _: bytes) -> None:
            if kind == header_out and key not in self.sent:
                self.sent[key] = time.perf_counter()
        return debug

    def _add(self, h: Any) -> None:
        buf = self.buffers[id(h)]
        buf.seek(0)
        buf.truncate()
        self.multi.add_handle(h)

    def run(self, handles: list[Any], again: Callable[[], bool], hard_deadline: float,
            ok: list[int], errors: Counter[str], done: dict[int, float] | None = None
            ) -> None:
        """Start ``handles``; each finished one is started again while ``again()``.
        Returns when none is running, or at ``hard_deadline`` (the rest count as
        ``timeout``)."""
        pc, multi = self.pc, self.multi
        for h in handles:
            self._add(h)
        active = len(handles)
        restarted = True
        while active:
            if not restarted:
                wait = multi.timeout()
                multi.select(0.01 if wait < 0 else min(wait / 1000, 0.01))
            restarted = False
            while multi.perform()[0] == pc.E_CALL_MULTI_PERFORM:
                pass
            while True:
                queued, good, bad = multi.info_read()
                finished = [(h, None) for h in good] + [(h, f"curl_{e}") for h, e, _ in bad]
                for h, error in finished:
                    if done is not None:
                        done[id(h)] = time.perf_counter()
                    if error is None:
                        status = h.getinfo(pc.RESPONSE_CODE)
                        error = None if status == 200 else f"http_{status}"
                    if error is None:
                        ok[0] += 1
                    else:
                        errors[error] += 1
                    multi.remove_handle(h)
                    if again():
                        self._add(h)
                        restarted = True
                    else:
                        active -= 1
                if not queued:
                    break
            if time.perf_counter() > hard_deadline:
                for h in self.handles:
                    try:
                        multi.remove_handle(h)
                    except pc.error:
                        pass
                errors["timeout"] += active
                return

    def close(self) -> None:
        for h in self.handles:
            try:
                self.multi.remove_handle(h)
            except self.pc.error:
                pass
            h.close()
        self.multi.close()


def _curl_closed(pycurl: Any, base: str, c: int, seconds: float, warmup_s: float) -> Closed:
    result = Closed(c)
    curl = _Curl(pycurl, c)
    try:
        curl.set_url(base + "/hello")
        ok, errors = [0], Counter[str]()
        curl.run(curl.handles, lambda: False, time.perf_counter() + TIMEOUT_S, ok, errors)
        if errors:
            raise RuntimeError(f"warm-up: {sum(errors.values())} of {c} failed "
                               f"({', '.join(sorted(errors))})")
        end = time.perf_counter() + warmup_s
        curl.run(curl.handles, lambda: time.perf_counter() < end, end + TIMEOUT_S + 5.0,
                 [0], Counter())
        ok, errors = [0], Counter()
        with quiet_gc():
            cpu0, t0 = time.process_time(), time.perf_counter()
            deadline = t0 + seconds
            curl.run(curl.handles, lambda: time.perf_counter() < deadline,
                     deadline + TIMEOUT_S + 5.0, ok, errors)
            result.wall_s = time.perf_counter() - t0
            result.cpu_s = time.process_time() - cpu0
        result.ok, result.errors = ok[0], dict(errors)
    except Exception as e:
        result.failure = _why(e)
    finally:
        curl.close()
    return result


def _curl_burst(pycurl: Any, base: str, n: int, repeats: int) -> Burst:
    result = Burst(n)
    curl = _Curl(pycurl, n)
    errors: Counter[str] = Counter()
    try:
        query = f"?delay={DELAY_S}"
        curl.set_url(base + "/hello" + query)
        warm_errors: Counter[str] = Counter()
        curl.run(curl.handles, lambda: False, time.perf_counter() + TIMEOUT_S, [0],
                 warm_errors)
        if warm_errors:
            raise RuntimeError(f"warm-up: {sum(warm_errors.values())} of {n} failed")
        curl.set_url(base + "/non-blocking" + query)
        curl.trace_sends(True)
        for _ in range(repeats):
            curl.sent.clear()
            done: dict[int, float] = {}
            ok = [0]
            with quiet_gc():
                curl.run(curl.handles, lambda: False, time.perf_counter() + TIMEOUT_S + 5.0,
                         ok, errors, done)
            result.ok += ok[0]
            keys = [id(h) for h in curl.handles]
            sent = [curl.sent[k] for k in keys if k in curl.sent]
            result.sent_known = result.sent_known and len(sent) == n
            if sent and done:
                result.spreads_ms.append(1e3 * (max(sent) - min(sent)))
                result.walls_ms.append(1e3 * (max(done.values()) - min(sent)))
            time.sleep(0.05)
    except Exception as e:
        result.failure = _why(e)
    finally:
        result.errors = dict(errors)
        curl.close()
    return result


def _curl_candidate(base: str, args: argparse.Namespace) -> Candidate:
    row = Row("pycurl", "own loop")
    try:
        import pycurl
    except ImportError as e:
        row.failure = f"not installed ({e}); pip install 'asgi-lab[bench]'"
        pycurl = None
    warmup = min(0.5, args.seconds / 4)
    return Candidate(row, lambda c: _curl_closed(pycurl, base, c, args.seconds, warmup),
                     lambda n: _curl_burst(pycurl, base, n, args.bursts))


# ------------------------------------------------------------------------ wrk, probe


def wrk_p50_ms(url: str, seconds: float) -> tuple[float | None, str]:
    """wrk's p50 latency at one connection (ms), and what it printed or why not."""
    binary = shutil.which("wrk")
    if binary is None:
        return None, "wrk is not installed (apt-get install wrk)"
    try:
        out = subprocess.run([binary, "-t1", "-c1", f"-d{max(1, round(seconds))}s",
                              "--latency", url], capture_output=True, text=True,
                             timeout=seconds + 15, check=False).stdout
    except subprocess.TimeoutExpired:
        return None, "wrk did not finish"
    m = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if m is None:
        return None, out.strip()[-300:] or "no output"
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)], out


async def probe_p50_ms(base: str, n: int = 200) -> tuple[float | None, int]:
    """The lab's warm idle probe: n sequential /hello on one pre-connected rawhttp
    client; (p50 ms of the successes, errors)."""
    client = ENGINES["rawhttp"].client(base, {}, 1, TIMEOUT_S)
    try:
        await client.connect(1, HELLO)
        samples = []
        with quiet_gc():
            async with asyncio.timeout(n * TIMEOUT_S):
                for _ in range(n):
                    samples.append(await client.send(HELLO))
    finally:
        await client.aclose()
    good = [1e3 * s.latency_s for s in samples if s.error is None]
    return (statistics.median(good) if good else None), n - len(good)


# ------------------------------------------------------------------------------ main


def _progress(what: str, part: Closed | Burst) -> None:
    if part.failure:
        detail = f"FAILED {part.failure}"
    elif isinstance(part, Closed):
        detail = f"{part.ok} ok, {_num(part.us_per_request)} µs/req, {_num(part.rps)} req/s"
    else:
        detail = f"spread {_num(part.spread_ms, 2)} ms, wall {_num(part.wall_ms, 1)} ms"
    errors = f", errors {part.errors}" if part.errors else ""
    print(f"  {what}: {detail}{errors}", file=sys.stderr, flush=True)


def _num(x: float | None, digits: int = 0) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _raise_nofile(needed: int) -> str:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return f"open files: {soft} (enough)"
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    note = "" if target >= needed else f" (hard limit {hard}: 512 connections may fail)"
    return f"open files: soft limit raised {soft} -> {target}{note}"


def table(rows: list[Row]) -> str:
    out = []
    for r in rows:
        if r.failure:
            out.append([r.candidate, r.loop, f"FAILED: {r.failure}"] + [""] * 10)
            continue
        errors = ", ".join([*(f"{k} {v}" for k, v in sorted(r.errors().items())),
                            *r.failures()])
        out.append([r.candidate, r.loop,
                    *(_num(r.us_per_request(c)) for c in CONNECTIONS),
                    *(_num(r.rps(c)) for c in CONNECTIONS),
                    *(r.burst(n, "spread") for n in CONNECTIONS[1:]),
                    *(r.burst(n, "wall") for n in CONNECTIONS[1:]),
                    errors or "0"])
    head = ["client", "loop", *(f"µs/req c={c}" for c in CONNECTIONS),
            *(f"req/s c={c}" for c in CONNECTIONS),
            *(f"spread ms N={n}" for n in CONNECTIONS[1:]),
            *(f"wall ms N={n}" for n in CONNECTIONS[1:]), "errors"]
    return tabulate(out, headers=head, tablefmt="github", disable_numparse=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/client_cost.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default="uvicorn", choices=sorted(SERVER_OPTIONS))
    p.add_argument("--seconds", type=float, default=2.0, help="seconds per closed loop")
    p.add_argument("--bursts", type=int, default=3, help="bursts per N and round")
    p.add_argument("--rounds", type=int, default=2,
                   help="interleaved rounds over all candidates (medians shown)")
    p.add_argument("--candidate", action="append",
                   choices=["rawhttp", "aiohttp", "httpx", "h11", "pycurl"],
                   help="only these (repeatable); default: all")
    p.add_argument("--json", type=Path, help="write every figure here")
    args = p.parse_args(argv)
    adapter = ADAPTERS[args.server]
    if not adapter.installed():
        print(f"error: {args.server} is not installed", file=sys.stderr)
        return 2
    print(_raise_nofile(2 * max(CONNECTIONS) + 256), file=sys.stderr)
    lab = LabSettings()
    chosen = args.candidate or ["rawhttp", "aiohttp", "httpx", "h11", "pycurl"]
    options = SERVER_OPTIONS[args.server]
    report: dict[str, Any] = {"server": args.server, "server_options": options, "app": APP,
                              "workers": 1, "seconds": args.seconds, "bursts": args.bursts,
                              "rounds": args.rounds,
                              "delay_s": DELAY_S}
    with TemporaryDirectory(prefix="client-cost-") as tmp, running(
            lambda port: adapter.argv(sys.executable, APP, lab.host, port, 1, options),
            lab.host, 1, Path(tmp, f"{args.server}.log"), lab.start_timeout_s,
            lab.stop_grace_s, readiness=Readiness(lab.ready_path, lab.ready_status),
            app_dir=str(PROJECT)) as server:
        base = server.base_url
        print(f"{args.server} ready at {base}", file=sys.stderr, flush=True)
        host, port = lab.host, server.port
        candidates: list[Candidate] = []
        for name in chosen:
            if name == "pycurl":
                candidates.append(_curl_candidate(base, args))
                continue
            for loop in LOOPS:
                def make(params: dict[str, float], name: str = name) -> _Users:
                    if name == "h11":
                        query = "".join(f"?{k}={v}" for k, v in params.items())
                        return _H11Users(host, port, query)
                    return _EngineUsers(name, base, params)
                candidates.append(_asyncio_candidate(name, loop, make, args))
        live = [c for c in candidates if c.row.failure is None]
        wrk_ms: list[float] = []
        wrk_note = ""
        probes: dict[str, list[float]] = {loop: [] for loop in LOOPS}
        probe_errors: Counter[str] = Counter()
        for r in range(args.rounds):
            # Interleaved: every candidate at one load, then the next load, so drift on
            # the shared machine falls on all of them; the order rotates every round.
            order = live[r % len(live):] + live[:r % len(live)] if live else []
            for c in CONNECTIONS:
                for cand in order:
                    m = cand.closed(c)
                    cand.row.closed.setdefault(c, []).append(m)
                    _progress(f"round {r + 1} {cand.row.candidate}/{cand.row.loop} "
                              f"closed c={c}", m)
            for n in CONNECTIONS:
                for cand in order:
                    b = cand.burst(n)
                    cand.row.bursts.setdefault(n, []).append(b)
                    _progress(f"round {r + 1} {cand.row.candidate}/{cand.row.loop} "
                              f"burst N={n}", b)
            ms, out = wrk_p50_ms(base + "/hello", 2.0)
            if ms is None:
                wrk_note = out
            else:
                wrk_ms.append(ms)
            for loop in LOOPS:
                try:
                    p50, errors = _on(loop, probe_p50_ms(base))
                    probe_errors[loop] += errors
                    if p50 is not None:
                        probes[loop].append(p50)
                except Exception as e:
                    probe_errors[f"{loop}: {_why(e)}"] += 1
            print(f"round {r + 1}: wrk p50 {_num(ms, 3)} ms, probe p50 "
                  + ", ".join(f"{lp} {_num(v[-1] if v else None, 3)} ms"
                              for lp, v in probes.items()), file=sys.stderr, flush=True)
    rows = [c.row for c in candidates]
    print(f"\n{args.server}, 1 worker, {APP}, options {options}; closed loop on /hello "
          f"{args.seconds:g} s per window; bursts on /non-blocking?delay={DELAY_S}, "
          f"{args.bursts} per round; {args.rounds} round(s), medians shown; client CPU = "
          f"process_time of this process; httpx = one shared client (the lab gives each "
          f"closed-loop user its own)\n")
    print(table(rows))
    print()
    wrk_p50 = statistics.median(wrk_ms) if wrk_ms else None
    print(f"wrk -t1 -c1 -d2s p50 /hello: {_num(wrk_p50, 3)} ms "
          f"(rounds: {', '.join(f'{x:.3f}' for x in wrk_ms)})"
          + ("" if wrk_p50 is not None else f" ({wrk_note})"))
    report["wrk_p50_ms"] = {"median": wrk_p50, "rounds": wrk_ms}
    report["probe"] = {}
    for loop, values in probes.items():
        p50 = statistics.median(values) if values else None
        ratio = p50 / wrk_p50 if p50 is not None and wrk_p50 else None
        verdict = "" if ratio is None else (" (within 2x)" if ratio <= 2 else " (NOT within 2x)")
        print(f"lab probe p50 /hello (rawhttp on {loop}, 200 sequential, warm): "
              f"{_num(p50, 3)} ms (rounds: {', '.join(f'{x:.3f}' for x in values)}), "
              f"errors {probe_errors[loop]}; lab ÷ wrk = {_num(ratio, 2)}{verdict}")
        report["probe"][loop] = {"p50_ms": p50, "rounds": values,
                                 "errors": probe_errors[loop], "ratio_to_wrk": ratio}
    failed = [k for k in probe_errors if ":" in k]
    if failed:
        print("probe failures: " + "; ".join(failed))
    report["rows"] = [r.as_json() for r in rows]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
