"""Load engines: the HTTP clients experiments send requests with.

``rawhttp`` (the lab's own protocol client on httptools) is the default of bursts, probes
and the open model: its cost per request is a fraction of the others'
(``benchmarks/client_cost.py``). httpx and aiohttp stay selectable; httpx's pool costs
client CPU that grows with connections × requests, so closed loops give each httpx user a
client of its own. No engine follows redirects: a 302 is an ``http_302`` in each.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol

import aiohttp
import httpx

from lab.load.params import Params, request_query
from lab.load.rawhttp import Done, RawClient
from lab.load.samples import Sample, check
from lab.matrix.endpoint import Endpoint
from lab.servers.asgi_wrap import WORKER_HEADER


class Client(Protocol):
    async def send(self, endpoint: Endpoint, start: float | None = None) -> Sample: ...

    def submit(self, endpoint: Endpoint, start: float, done: Done) -> None:
        """Send without waiting; ``done`` gets the sample (the open model's way)."""

    async def burst(self, endpoint: Endpoint, n: int) -> list[Sample]: ...

    async def connect(self, n: int, probe: Endpoint) -> None: ...

    async def aclose(self) -> None: ...


class _Pooled:
    """What the library-pooled engines share: the queries they send, a burst as N sends at
    once, and connections warmed by N requests of ``probe`` at once (the pool keeps them)."""

    def __init__(self, params: Params) -> None:
        self._params = params
        self._queries: dict[Endpoint, dict[str, str]] = {}
        self._tasks: set[asyncio.Task[Sample]] = set()  # submitted, kept from the GC

    def _query(self, endpoint: Endpoint) -> dict[str, str]:
        query = self._queries.get(endpoint)
        if query is None:
            query = self._queries[endpoint] = request_query(self._params, endpoint)
        return query

    async def send(self, endpoint: Endpoint, start: float | None = None) -> Sample:
        raise NotImplementedError

    def submit(self, endpoint: Endpoint, start: float, done: Done) -> None:
        task = asyncio.ensure_future(self.send(endpoint, start))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: None if t.cancelled() else done(t.result()))

    async def burst(self, endpoint: Endpoint, n: int) -> list[Sample]:
        return list(await asyncio.gather(*(self.send(endpoint) for _ in range(n))))

    async def connect(self, n: int, probe: Endpoint) -> None:
        samples = await asyncio.gather(*(self.send(probe) for _ in range(n)))
        failed = sorted({s.error for s in samples if s.error is not None})
        if failed:
            raise RuntimeError(f"warm-up: {sum(s.error is not None for s in samples)} of {n} "
                               f"requests of {probe.label} failed ({', '.join(failed)})")


class HttpxClient(_Pooled):
    def __init__(self, base_url: str, params: Params, connections: int, timeout_s: float):
        super().__init__(params)
        self._client = httpx.AsyncClient(
            base_url=base_url, trust_env=False, follow_redirects=False,
            limits=httpx.Limits(max_connections=connections,
                                max_keepalive_connections=connections),
            timeout=httpx.Timeout(timeout_s, pool=timeout_s),
        )

    async def send(self, endpoint: Endpoint, start: float | None = None) -> Sample:
        start = time.perf_counter() if start is None else start
        sent: list[float] = []

        async def trace(event: str, _: dict[str, Any]) -> None:
            if event == "http11.send_request_headers.started":
                sent.append(time.perf_counter())

        try:
            response = await self._client.request(
                endpoint.method, endpoint.path, params=self._query(endpoint),
                headers=dict(endpoint.headers), content=endpoint.body,
                extensions={"trace": trace})
            error, pid = check(response.status_code, response.headers.get(WORKER_HEADER),
                               response.content, endpoint)
        except httpx.TimeoutException:
            error, pid = "timeout", None
        except httpx.ConnectError:
            error, pid = "connect", None
        except httpx.RemoteProtocolError:
            error, pid = "disconnected", None
        except httpx.HTTPError:
            error, pid = "transport", None
        return Sample(start, time.perf_counter() - start, error, pid,
                      sent[0] if sent else None)

    async def aclose(self) -> None:
        await self._client.aclose()


async def _headers_sent(_: aiohttp.ClientSession, ctx: SimpleNamespace, __: Any) -> None:
    ctx.trace_request_ctx["sent"] = time.perf_counter()


class AiohttpClient(_Pooled):
    def __init__(self, base_url: str, params: Params, connections: int, timeout_s: float):
        super().__init__(params)
        self._base = base_url
        tracing = aiohttp.TraceConfig()
        tracing.on_request_headers_sent.append(_headers_sent)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=aiohttp.ClientTimeout(total=timeout_s), trust_env=False,
            trace_configs=[tracing],
        )

    async def send(self, endpoint: Endpoint, start: float | None = None) -> Sample:
        start = time.perf_counter() if start is None else start
        ctx: dict[str, float] = {}
        try:
            async with self._session.request(
                    endpoint.method, self._base + endpoint.path, params=self._query(endpoint),
                    headers=dict(endpoint.headers), data=endpoint.body,
                    allow_redirects=False, trace_request_ctx=ctx) as response:
                error, pid = check(response.status, response.headers.get(WORKER_HEADER),
                                   await response.read(), endpoint)
        except TimeoutError:
            error, pid = "timeout", None
        except aiohttp.ClientConnectorError:
            error, pid = "connect", None
        except aiohttp.ServerDisconnectedError:
            error, pid = "disconnected", None
        except aiohttp.ClientError:
            error, pid = "transport", None
        return Sample(start, time.perf_counter() - start, error, pid, ctx.get("sent"))

    async def aclose(self) -> None:
        await self._session.close()


@dataclass(frozen=True)
class Engine:
    name: str
    client: Callable[[str, Params, int, float], Client]  # (base_url, params, cap, timeout_s)
    per_user: bool  # closed loops give each user its own client


ENGINES = {
    "rawhttp": Engine("rawhttp", RawClient, per_user=False),
    "httpx": Engine("httpx", HttpxClient, per_user=True),
    "aiohttp": Engine("aiohttp", AiohttpClient, per_user=False),
}


async def close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(c.aclose() for c in clients))
