"""The article's question asked with real I/O: a database query and a call to a slow
upstream API, each written three ways.

- Database (sqlite, created and filled at start-up in ``LAB_DATA_DIR``, one file per worker;
  the query scans 100k rows, a few milliseconds): ``def`` + ``sqlite3`` (FastAPI's thread
  pool), ``async def`` + ``sqlite3`` (the trap: the event loop waits), ``async def`` +
  ``aiosqlite`` (its own thread, awaited).
- Upstream (``UPSTREAM_URL``, ``GET /slow?delay=``): ``async def`` + one shared
  ``httpx.AsyncClient``, ``def`` + sync ``httpx.Client`` (thread pool), ``async def`` +
  sync ``httpx.Client`` (the trap).
- ``POST /items`` with a pydantic-validated JSON body, answered 201.

Every response names the endpoint and the worker ``pid``, like apps.article's.
"""

import os
import random
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
import httpx
from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from apps.article import READY_DIR_ENV

DATA_DIR_ENV = "LAB_DATA_DIR"
UPSTREAM_ENV = "UPSTREAM_URL"
ROWS = 100_000
QUERY = "SELECT count(*), sum(value) FROM items WHERE category = ?"  # a full scan: ~4 ms


def _database() -> Path:
    """This worker's database, created and filled once."""
    folder = Path(os.environ.get(DATA_DIR_ENV) or tempfile.gettempdir())
    path = folder / f"realistic-{os.getpid()}.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS items "
                   "(id INTEGER PRIMARY KEY, category INTEGER, value REAL)")
        if db.execute("SELECT count(*) FROM items").fetchone()[0] < ROWS:
            rng = random.Random(1)
            db.executemany("INSERT INTO items (category, value) VALUES (?, ?)",
                           ((i % 100, rng.random()) for i in range(ROWS)))
    return path


class State:
    database: Path
    upstream: httpx.AsyncClient
    sync_upstream: httpx.Client
    aiodb: aiosqlite.Connection


state = State()


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    state.database = _database()
    base = os.environ.get(UPSTREAM_ENV, "")
    timeout = httpx.Timeout(30.0)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits,
                                 trust_env=False) as client, \
            aiosqlite.connect(state.database) as aiodb:
        state.upstream, state.aiodb = client, aiodb
        with httpx.Client(base_url=base, timeout=timeout, limits=limits,
                          trust_env=False) as sync_client:
            state.sync_upstream = sync_client
            ready_dir = os.environ.get(READY_DIR_ENV)
            if ready_dir:
                Path(ready_dir, str(os.getpid())).touch()
            yield


app = FastAPI(title="realistic", lifespan=lifespan)


def _body(endpoint: str, **extra: object) -> dict[str, object]:
    return {"endpoint": endpoint, "pid": os.getpid(), **extra}


def _query(category: int) -> float:
    with sqlite3.connect(state.database) as db:  # a connection per call: thread-safe
        count, total = db.execute(QUERY, (category,)).fetchone()
    return float(total or 0.0) / max(1, count)


@app.get("/health")
async def health() -> dict[str, object]:
    return _body("/health")


@app.get("/hello")
async def hello() -> dict[str, object]:
    return _body("/hello")


Category = Query(7, ge=0, le=99)


@app.get("/db/def")
def db_def(category: int = Category) -> dict[str, object]:
    return _body("/db/def", mean=_query(category))


@app.get("/db/async-trap")
async def db_async_trap(category: int = Category) -> dict[str, object]:
    return _body("/db/async-trap", mean=_query(category))  # blocks the event loop


@app.get("/db/aiosqlite")
async def db_aiosqlite(category: int = Category) -> dict[str, object]:
    async with state.aiodb.execute(QUERY, (category,)) as cursor:
        row = await cursor.fetchone()
    count, total = row if row else (0, 0.0)
    return _body("/db/aiosqlite", mean=float(total or 0.0) / max(1, count))


Delay = Query(0.05, ge=0, le=10, description="the upstream's delay in seconds")


def _upstream_base() -> None:
    if not os.environ.get(UPSTREAM_ENV):
        raise HTTPException(503, f"{UPSTREAM_ENV} is not set: start the upstream service")


@app.get("/upstream/async")
async def upstream_async(delay: float = Delay) -> dict[str, object]:
    _upstream_base()
    r = await state.upstream.get("/slow", params={"delay": delay})
    return _body("/upstream/async", upstream=r.status_code)


@app.get("/upstream/def")
def upstream_def(delay: float = Delay) -> dict[str, object]:
    _upstream_base()
    r = state.sync_upstream.get("/slow", params={"delay": delay})
    return _body("/upstream/def", upstream=r.status_code)


@app.get("/upstream/async-trap")
async def upstream_async_trap(delay: float = Delay) -> dict[str, object]:
    _upstream_base()
    r = state.sync_upstream.get("/slow", params={"delay": delay})  # blocks the event loop
    return _body("/upstream/async-trap", upstream=r.status_code)


class Item(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    price: float = Field(ge=0)
    tags: list[str] = Field(default_factory=list, max_length=10)


@app.post("/items", status_code=201)
async def create_item(item: Item) -> dict[str, object]:
    return _body("/items", name=item.name, price=item.price)
