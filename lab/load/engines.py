"""Load engines: the HTTP clients experiments send requests with.

httpx checks bursts well but its pool costs client CPU that grows with connections ×
requests (one shared AsyncClient for 64 users reached ~160 req/s at a full core here), so
closed loops default to aiohttp, and httpx gets one client per user there.
"""

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx

from lab.asgi_wrap import WORKER_HEADER
from lab.endpoint import Endpoint
from lab.load.samples import Sample, check

Params = Mapping[str, str | int | float | bool]


class Client(Protocol):
    async def send(self, endpoint: Endpoint, start: float | None = None) -> Sample: ...

    async def aclose(self) -> None: ...


def query_params(params: Params) -> dict[str, str]:
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}


def request_query(params: Params, endpoint: Endpoint) -> dict[str, str]:
    """The experiment's params with the endpoint's own query (which wins)."""
    return {**query_params(params), **dict(endpoint.query)}


class HttpxClient:
    def __init__(self, base_url: str, params: Params, connections: int, timeout_s: float):
        self._params = params
        self._queries: dict[Endpoint, dict[str, str]] = {}
        self._client = httpx.AsyncClient(
            base_url=base_url, trust_env=False,
            limits=httpx.Limits(max_connections=connections,
                                max_keepalive_connections=connections),
            timeout=httpx.Timeout(timeout_s, pool=timeout_s),
        )

    async def send(self, endpoint: Endpoint, start: float | None = None) -> Sample:
        query = self._queries.get(endpoint)
        if query is None:
            query = self._queries[endpoint] = request_query(self._params, endpoint)
        start = time.perf_counter() if start is None else start
        try:
            response = await self._client.request(
                endpoint.method, endpoint.path, params=query, headers=dict(endpoint.headers),
                content=endpoint.body)
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
        return Sample(start, time.perf_counter() - start, error, pid)

    async def aclose(self) -> None:
        await self._client.aclose()


class AiohttpClient:
    def __init__(self, base_url: str, params: Params, connections: int, timeout_s: float):
        self._base, self._params = base_url, params
        self._queries: dict[Endpoint, dict[str, str]] = {}
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=aiohttp.ClientTimeout(total=timeout_s), trust_env=False,
        )

    async def send(self, endpoint: Endpoint, start: float | None = None) -> Sample:
        query = self._queries.get(endpoint)
        if query is None:
            query = self._queries[endpoint] = request_query(self._params, endpoint)
        start = time.perf_counter() if start is None else start
        try:
            async with self._session.request(
                    endpoint.method, self._base + endpoint.path, params=query,
                    headers=dict(endpoint.headers), data=endpoint.body) as response:
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
        return Sample(start, time.perf_counter() - start, error, pid)

    async def aclose(self) -> None:
        await self._session.close()


@dataclass(frozen=True)
class Engine:
    name: str
    client: type[HttpxClient] | type[AiohttpClient]
    per_user: bool  # closed loops give each user its own client


ENGINES = {
    "httpx": Engine("httpx", HttpxClient, per_user=True),
    "aiohttp": Engine("aiohttp", AiohttpClient, per_user=False),
}


async def close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(c.aclose() for c in clients))
