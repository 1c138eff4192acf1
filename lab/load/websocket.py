"""The websocket kinds' runners: N clients connect before the window (their handshakes are
timed, and a refused one is an error of its status, ``handshake_http_404``), then

- echo (``websocket``): each client sends ``messages`` text messages of ``message_bytes``,
  each when the echo of the one before came back; a sample is one round trip;
- broadcast (``ws_broadcast``): ``rounds`` times, one client of each worker's group sends
  one message and every client of that group (the sender too) waits for it; a sample is one
  delivery, timed from the send, and the round's slowest one is its last-client latency.

A broadcast reaches the clients of one worker (a process's set: across workers needs a shared
bus), so the clients are grouped by the worker the wrapper names in each socket's first
frame (asked for in the handshake); without the wrapper (``lab.wrap = false``) the worker is
unknown and all clients are one group. A delivery is timed when the client's task sees it:
at N = 100 the client's own wake-ups are part of the last one.
"""

import asyncio
import statistics
import time
from collections.abc import Awaitable
from dataclasses import replace
from urllib.parse import urlsplit

from lab.load.histogram import Histogram, latency_figures
from lab.load.monitor import Window
from lab.load.params import request_target
from lab.load.samples import Measurement, Sample
from lab.load.wsclient import WS_ENGINES, Closed, Conn, Refused
from lab.matrix.config import Experiment
from lab.matrix.endpoint import Endpoint
from lab.servers.asgi_wrap import WORKER_HEADER, WS_ASK
from lab.store.schema import KindFigures, WebSocketFigures


def payload(size: int, tag: str = "") -> str:
    """A text message of ``size`` bytes (ASCII) that starts with ``tag``."""
    return (tag + "x" * size)[:size] if size >= len(tag) else tag


def _pid(frame: str) -> int | None:
    """The worker's pid from the wrapper's first frame (``x-lab-worker 1234``)."""
    name, _, pid = frame.partition(" ")
    return int(pid) if name == WORKER_HEADER and pid.isdigit() else None


async def _opened(coro: Awaitable[Conn], ask: bool, timeout_s: float
                  ) -> tuple[Conn | None, str | None, float]:
    """(connection, None, seconds) or (None, error kind, seconds). ``ask``: the wrapper
    names the worker in a first frame, read here (its time is the handshake's)."""
    start = time.perf_counter()
    conn = None
    try:
        conn = await coro
        if ask:
            async with asyncio.timeout(timeout_s):
                conn.pid = _pid(await conn.recv())
        return conn, None, time.perf_counter() - start
    except Refused as e:
        error = f"handshake_http_{e.status}"
    except TimeoutError:
        error = "timeout"
    except Closed:
        error = "closed"
    except OSError:
        error = "connect"
    if conn is not None:  # open, but its first frame never came
        conn.abort()
    return None, error, time.perf_counter() - start


async def open_all(base_url: str, exp: Experiment, endpoint: Endpoint, n: int
                   ) -> tuple[list[Conn], list[Sample], Histogram]:
    """N connections opened at once: those open, a sample per refused one, and the
    handshakes' times."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    connect = WS_ENGINES[exp.engine]
    target = request_target(exp.params, endpoint)
    headers = {WORKER_HEADER: WS_ASK} if exp.wrapped else {}
    opened = await asyncio.gather(*(
        _opened(connect(host, port, target, exp.timeout_s, headers), exp.wrapped,
                exp.timeout_s) for _ in range(n)))
    handshakes = Histogram()
    for conn, _, seconds in opened:
        if conn is not None:
            handshakes.record(seconds)
    refused = [Sample(0.0, s, error, None) for conn, error, s in opened if conn is None]
    return [c for c, _, _ in opened if c is not None], refused, handshakes


async def close_all(conns: list[Conn]) -> None:
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


class _Watchdog:
    """Fails a client that made no progress for ``timeout_s`` by dropping its connection:
    one timer per ``timeout_s``, not one per message (a timer per message cost the client a
    third of its CPU: rawws 41 → 28 µs per message, ``benchmarks/ws_client_cost.py``). A
    stalled message is failed between ``timeout_s`` and twice that after it was sent."""

    def __init__(self, conn: Conn, timeout_s: float) -> None:
        self.progress, self.fired = 0, False
        self._seen, self._conn, self._timeout_s = -1, conn, timeout_s
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(timeout_s, self._check)

    def _check(self) -> None:
        if self.progress == self._seen:
            self.fired = True
            self._conn.abort()
        else:
            self._seen = self.progress
            self._handle = self._loop.call_later(self._timeout_s, self._check)

    def cancel(self) -> None:
        self._handle.cancel()


async def _echo(conn: Conn, messages: int, text: str, timeout_s: float) -> list[Sample]:
    """One client's messages, each after the one before came back. After a timeout or a
    close the rest fail with it, counted, not dropped."""
    out: list[Sample] = []
    watch = _Watchdog(conn, timeout_s)
    try:
        for i in range(messages):
            start = time.perf_counter()
            error = None
            try:
                await conn.send(text)
                if await conn.recv() != text:
                    error = "bad_echo"
            except Closed:
                error = "timeout" if watch.fired else "closed"
            watch.progress += 1
            out.append(Sample(start, time.perf_counter() - start, error, conn.pid, start))
            if error in ("timeout", "closed"):
                out += [Sample(start, 0.0, error, conn.pid) for _ in range(messages - i - 1)]
                break
    finally:
        watch.cancel()
    return out


def _figures(exp: Experiment, n: int, conns: list[Conn], handshakes: Histogram
             ) -> WebSocketFigures:
    shake = latency_figures(handshakes)
    return WebSocketFigures(ws_clients=n, ws_connected=len(conns),
                            ws_message_bytes=exp.message_bytes,
                            ws_handshake_ms={"p50": shake["p50"], "max": shake["max"]})


async def run_echo(base_url: str, exp: Experiment, endpoint: Endpoint, n: int,
                   window: Window) -> Measurement:
    conns, refused, handshakes = await open_all(base_url, exp, endpoint, n)
    text = payload(exp.message_bytes)
    try:
        window.start()
        each = await asyncio.gather(*(_echo(c, exp.messages, text, exp.timeout_s)
                                      for c in conns))
        usage = window.end()
    finally:
        await close_all(conns)
    samples = refused + [s for client in each for s in client]
    return Measurement(samples, usage, KindFigures(websocket=replace(
        _figures(exp, n, conns, handshakes), ws_messages=exp.messages)))


async def _delivery(conn: Conn, text: str, sent: list[float]) -> Sample:
    """This client's copy of the round's message; an older round's late copy is skipped."""
    error = None
    try:
        while await conn.recv() != text:
            pass
    except Closed:
        error = "closed"
    start = sent[0] if sent else time.perf_counter()
    return Sample(start, time.perf_counter() - start, error, conn.pid, start)


async def _round(groups: list[list[Conn]], text: str, timeout_s: float) -> list[Sample]:
    """One message sent by the first client of each group, awaited by all of its clients
    for at most ``timeout_s`` (one timer for the round): a copy that did not come is
    missed."""
    sent: list[list[float]] = [[] for _ in groups]
    waits = {asyncio.ensure_future(_delivery(c, text, sent[i])): (c, sent[i])
             for i, group in enumerate(groups) for c in group}
    for i, group in enumerate(groups):
        sent[i].append(time.perf_counter())
        try:
            await group[0].send(text)
        except Closed:
            pass  # its group's clients miss it, and say so
    _, late = await asyncio.wait(waits, timeout=timeout_s)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    missed = [Sample(at[0] if at else 0.0, timeout_s, "missed", c.pid)
              for task, (c, at) in waits.items() if task in late]
    return [t.result() for t in waits if t not in late] + missed


async def run_broadcast(base_url: str, exp: Experiment, endpoint: Endpoint, n: int,
                        window: Window) -> Measurement:
    conns, refused, handshakes = await open_all(base_url, exp, endpoint, n)
    by_worker: dict[int | None, list[Conn]] = {}
    for c in conns:
        by_worker.setdefault(c.pid, []).append(c)
    groups = list(by_worker.values())
    rounds: list[list[Sample]] = []
    try:
        window.start()
        for r in range(exp.rounds):
            rounds.append(await _round(groups, payload(exp.message_bytes, f"{r}:"),
                                       exp.timeout_s) if groups else [])
        usage = window.end()
    finally:
        await close_all(conns)
    last = [max(s.latency_s for s in got) for r in rounds
            if (got := [s for s in r if s.error is None])]
    samples = refused + [s for r in rounds for s in r]
    return Measurement(samples, usage, KindFigures(websocket=replace(
        _figures(exp, n, conns, handshakes), ws_rounds=exp.rounds, ws_groups=len(groups),
        ws_last_p50_ms=1e3 * statistics.median(last) if last else None,
        ws_last_max_ms=1e3 * max(last) if last else None,
        ws_missed=sum(s.error == "missed" for s in samples))))
