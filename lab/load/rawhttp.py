"""rawhttp: the lab's own HTTP/1.1 client, one asyncio Protocol per connection on httptools.

A burst, a probe and an open-model schedule must be timed at the server's speed, not the
client's. httpx and aiohttp spend 100–300 µs of Python per request in pools, tasks and
header objects (measured by ``benchmarks/client_cost.py``); here a request is one
``transport.write`` of bytes built once per endpoint, its answer is parsed in C by
httptools (llhttp, the parser uvicorn uses), and only the status, the worker header and —
when the endpoint checks it — the body are kept. It runs on whatever loop it is given
(the lab runs uvloop). It never follows a redirect: a 302 is an ``http_302``, as in every
engine.

Connections are opened on demand up to the client's cap and kept alive; ``connect`` opens
them ahead and checks each with one request, so a burst's window holds only requests. A
request sent with ``Connection: close`` has its connection closed by the client once its
answer is read, whatever the server answered, and the next request opens a new one.
"""

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

import httptools

from lab.load.params import Params, request_target
from lab.load.samples import BodyTiming, Sample, check
from lab.matrix.endpoint import Endpoint
from lab.servers.asgi_wrap import WORKER_HEADER

_WORKER = WORKER_HEADER.encode()


def request_bytes(host: str, params: Params, endpoint: Endpoint) -> bytes:
    """The whole HTTP/1.1 request, as written: the path percent-encoded as the other
    engines send it, the experiment's params with the endpoint's own query."""
    head = [f"{endpoint.method} {request_target(params, endpoint)} HTTP/1.1"]
    # The endpoint's own Host replaces the lab's, as in the other engines (two are a 400).
    if not any(name.lower() == "host" for name, _ in endpoint.headers):
        head.append(f"Host: {host}")
    head += [f"{name}: {value}" for name, value in endpoint.headers]
    body = endpoint.body or b""
    if endpoint.body is not None or endpoint.method in ("POST", "PUT", "PATCH"):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


Done = Callable[[Sample], None]


def _resolver(future: "asyncio.Future[Sample]") -> Done:
    """A callback that answers ``future`` unless it was cancelled (an interrupted cell)."""
    def done(sample: Sample) -> None:
        if not future.done():
            future.set_result(sample)
    return done


class _Exchange:
    """One request on one connection, until its answer is complete."""

    __slots__ = ("endpoint", "start", "sent", "done", "timer", "status", "worker", "body",
                 "timing")

    def __init__(self, endpoint: Endpoint, start: float, done: Done, timed: bool) -> None:
        self.endpoint, self.start, self.done = endpoint, start, done
        self.sent = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.status = 0
        self.worker: str | None = None
        self.body: list[bytes] | None = (
            [] if endpoint.contains is not None or endpoint.json_subset is not None else None)
        self.timing = BodyTiming() if timed else None


class _Connection(asyncio.Protocol):
    def __init__(self, client: "RawClient") -> None:
        self._client = client
        self._parser = httptools.HttpResponseParser(self)
        self._exchange: _Exchange | None = None
        self._head_done = False
        self._read_at = 0.0  # a timed exchange: when this read arrived, and whether a body
        self._fresh = False  # callback has counted it yet
        self.transport: asyncio.Transport | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._exchange is not None and self._exchange.timing is not None:
            self._read_at, self._fresh = time.perf_counter(), True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail("transport")
            if self.transport is not None:
                self.transport.abort()
            return
        if self._head_done and self._exchange is not None:  # a HEAD: no body follows
            self._parser = httptools.HttpResponseParser(self)
            self.on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail("disconnected")
        self._client._lost(self)

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        if self._exchange is not None:
            self._exchange.status = self._parser.get_status_code()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._exchange is not None and name.lower() == _WORKER:
            self._exchange.worker = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        ex = self._exchange
        if ex is not None and ex.endpoint.method == "HEAD":
            self._head_done = True

    def on_body(self, body: bytes) -> None:
        ex = self._exchange
        if ex is None:
            return
        if ex.body is not None:
            ex.body.append(body)
        if (t := ex.timing) is not None:
            if self._fresh:  # one read may hold several HTTP chunks: they arrived together
                t.reads, self._fresh = t.reads + 1, False
                if t.reads == 1:
                    t.first = self._read_at
            t.nbytes += len(body)

    def on_message_complete(self) -> None:
        ex, self._exchange, self._head_done = self._exchange, None, False
        if ex is None:
            return
        end = time.perf_counter()
        if ex.timer is not None:
            ex.timer.cancel()
        error, pid = check(ex.status, ex.worker, b"".join(ex.body or ()), ex.endpoint)
        timing = ex.timing if ex.timing is not None and ex.timing.reads else None
        ex.done(Sample(ex.start, end - ex.start, error, pid, ex.sent, timing))
        if not ex.endpoint.closes and self._parser.should_keep_alive():
            self._client._release(self)
        elif self.transport is not None:
            self.transport.close()  # connection_lost gives the slot back

    # the client's side
    @property
    def busy(self) -> bool:
        return self._exchange is not None

    def exchange(self, request: bytes, ex: _Exchange, timeout_s: float) -> None:
        assert self.transport is not None and self._exchange is None
        self._exchange = ex
        ex.timer = self._client.loop.call_later(
            max(0.0, ex.start + timeout_s - time.perf_counter()), self._timeout)
        ex.sent = time.perf_counter()
        self.transport.write(request)

    def _timeout(self) -> None:
        self._fail("timeout")
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, kind: str) -> None:
        ex, self._exchange = self._exchange, None
        if ex is None:
            return
        if ex.timer is not None:
            ex.timer.cancel()
        ex.done(Sample(ex.start, time.perf_counter() - ex.start, kind, None, ex.sent or None))


class RawClient:
    """Keep-alive connections to one server, at most ``connections`` at once; a request
    with no idle connection waits in line for the next one (a new one while under the cap).
    """

    def __init__(self, base_url: str, params: Params, connections: int, timeout_s: float):
        url = urlsplit(base_url)
        self._host, self._port = url.hostname or "127.0.0.1", url.port or 80
        self._host_header = url.netloc
        self._params, self._limit, self._timeout_s = params, connections, timeout_s
        self._requests: dict[Endpoint, bytes] = {}
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._queue: deque[_Exchange] = deque()
        self._open = 0  # connections open or opening
        self._opening = 0
        self._openers: set[asyncio.Task[None]] = set()
        self._closing = False
        self.loop = asyncio.get_running_loop()

    def _request(self, endpoint: Endpoint) -> bytes:
        request = self._requests.get(endpoint)
        if request is None:
            request = self._requests[endpoint] = request_bytes(self._host_header,
                                                               self._params, endpoint)
        return request

    def submit(self, endpoint: Endpoint, start: float, done: Done, timed: bool = False
               ) -> None:
        """Send now on an idle connection, or queue; ``done`` gets the sample. No task per
        request: the open model submits thousands a second. ``timed``: the sample says when
        its body arrived (`BodyTiming`)."""
        ex = _Exchange(endpoint, start, done, timed)
        if self._idle:
            self._idle.pop().exchange(self._request(endpoint), ex, self._timeout_s)
            return
        self._queue.append(ex)
        self._grow()

    async def send(self, endpoint: Endpoint, start: float | None = None, timed: bool = False
                   ) -> Sample:
        future: asyncio.Future[Sample] = self.loop.create_future()
        self.submit(endpoint, time.perf_counter() if start is None else start,
                    _resolver(future), timed)
        return await future

    async def burst(self, endpoint: Endpoint, n: int) -> list[Sample]:
        """``n`` requests written in one loop turn, each on a connection of its own where
        ``connect`` opened them (else opened here, inside the burst)."""
        futures = [self.loop.create_future() for _ in range(n)]
        for future in futures:
            self.submit(endpoint, time.perf_counter(), _resolver(future))
        return list(await asyncio.gather(*futures))

    async def connect(self, n: int, probe: Endpoint) -> None:
        """Open ``n`` connections and send ``probe`` once on each, all at once: the server
        has accepted and answered on every one before a window starts."""
        opened = await asyncio.gather(*(self._connect() for _ in range(n - len(self._all))),
                                      return_exceptions=True)
        failed = [type(c).__name__ for c in opened if not isinstance(c, _Connection)]
        self._idle.extend(c for c in opened if isinstance(c, _Connection))
        samples = await self.burst(probe, len(self._idle))
        failed += [s.error for s in samples if s.error is not None]
        if failed:
            raise RuntimeError(f"warm-up: {len(failed)} of {n} connections failed to open or "
                               f"to answer {probe.label} ({', '.join(sorted(set(failed)))})")

    async def _connect(self) -> _Connection:
        self._open += 1
        try:
            async with asyncio.timeout(self._timeout_s):
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self), self._host, self._port)
        except BaseException:
            self._open -= 1
            raise
        self._all.add(conn)
        return conn

    def _grow(self) -> None:
        """Open connections for queued requests while under the cap."""
        while len(self._queue) > self._opening and self._open < self._limit \
                and not self._closing:
            self._opening += 1
            task = self.loop.create_task(self._open_for_queue())
            self._openers.add(task)
            task.add_done_callback(self._openers.discard)

    async def _open_for_queue(self) -> None:
        try:
            conn = await self._connect()
        except (OSError, TimeoutError) as e:
            if self._queue:
                ex = self._queue.popleft()
                kind = "timeout" if isinstance(e, TimeoutError) else "connect"
                ex.done(Sample(ex.start, time.perf_counter() - ex.start, kind, None))
            return
        finally:
            self._opening -= 1
        self._release(conn)

    def _release(self, conn: _Connection) -> None:
        """An idle connection takes the next queued request that has not yet timed out."""
        now = time.perf_counter()
        while self._queue:
            ex = self._queue.popleft()
            if now - ex.start >= self._timeout_s:
                ex.done(Sample(ex.start, now - ex.start, "timeout", None))
                continue
            conn.exchange(self._request(ex.endpoint), ex, self._timeout_s)
            return
        self._idle.append(conn)

    def _lost(self, conn: _Connection) -> None:
        if conn in self._idle:
            self._idle.remove(conn)
        if conn in self._all:
            self._all.discard(conn)
            self._open -= 1
        self._grow()

    async def aclose(self) -> None:
        self._closing = True
        for task in list(self._openers):
            task.cancel()
        for conn in list(self._all):
            if conn.transport is None:
                continue
            if conn.busy:
                conn.transport.abort()  # a request still out (it timed out) is not waited for
            else:
                conn.transport.close()
        for ex in self._queue:
            ex.done(Sample(ex.start, time.perf_counter() - ex.start, "timeout", None))
        self._queue.clear()
        self._idle = []
        await asyncio.sleep(0)  # let connection_lost run
