"""lab.servers.asgi_wrap in process: the worker header on every response, lifespan passed through,
and the ready marker for apps with and without lifespan support."""

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from lab.servers.asgi_wrap import READY_DIR_ENV, WORKER_HEADER, Wrapped


async def lifespan_of(app: Any, messages: list[str]) -> list[str]:
    """Run a lifespan as a server does: startup, then shutdown unless start-up failed;
    returns what the app (through the wrapper) answered."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    answers: list[str] = []
    for m in messages:
        inbox.put_nowait({"type": m})

    async def send(message: Any) -> None:
        answers.append(message["type"])

    try:
        await asyncio.wait_for(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                   inbox.get, send), 5)
    except Exception as e:  # the app's own error, as a server would see it
        answers.append(f"raised {type(e).__name__}")
    return answers


@pytest.fixture
def ready_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(READY_DIR_ENV, str(tmp_path))
    return tmp_path


def markers(ready_dir: Path) -> list[str]:
    return os.listdir(ready_dir)


def starlette_app(events: list[str]) -> Starlette:
    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    async def hello(_: Any) -> PlainTextResponse:
        return PlainTextResponse("hi", headers={"x-app": "1"})

    return Starlette(routes=[Route("/", hello)], lifespan=lifespan)


def test_every_response_names_its_worker_and_keeps_its_own_headers(ready_dir: Path) -> None:
    app = Wrapped(starlette_app([]))

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as client:
            return await client.get("/")

    response = asyncio.run(get())
    assert response.status_code == 200 and response.text == "hi"
    assert response.headers[WORKER_HEADER] == str(os.getpid())
    assert response.headers["x-app"] == "1"
    assert markers(ready_dir) == [str(os.getpid())]  # the first request marks too



async def own_worker_header(scope: Any, receive: Any, send: Any) -> None:
    """An app that sends an x-lab-worker of its own (in another case)."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"X-Lab-Worker", b"1"), (b"x-app", b"1")]})
    await send({"type": "http.response.body", "body": b"mine"})


def test_an_apps_own_worker_header_is_replaced_by_the_wrappers(ready_dir: Path) -> None:
    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=Wrapped(
                own_worker_header)), base_url="http://t") as client:
            return await client.get("/")

    response = asyncio.run(get())
    # one value, the worker's pid: every client reads the same worker from it
    assert response.headers.get_list(WORKER_HEADER) == [str(os.getpid())]
    assert response.headers["x-app"] == "1" and response.text == "mine"

def test_lifespan_passes_through_and_marks_the_worker_once_started(ready_dir: Path) -> None:
    events: list[str] = []
    answers = asyncio.run(lifespan_of(Wrapped(starlette_app(events)),
                                      ["lifespan.startup", "lifespan.shutdown"]))
    assert answers == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert events == ["startup", "shutdown"]
    assert markers(ready_dir) == [str(os.getpid())]


async def bare_raises(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http", "no lifespan here"


async def bare_returns(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return


async def bare_reads_then_raises(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    raise RuntimeError("lifespan not supported")


@pytest.mark.parametrize("bare", [bare_raises, bare_returns, bare_reads_then_raises])
def test_an_app_without_lifespan_still_starts_and_is_marked(bare: Any,
                                                           ready_dir: Path) -> None:
    answers = asyncio.run(lifespan_of(Wrapped(bare),
                                      ["lifespan.startup", "lifespan.shutdown"]))
    assert answers == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert markers(ready_dir) == [str(os.getpid())]


def test_a_failed_start_up_is_passed_on_and_not_marked(ready_dir: Path) -> None:
    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield

    answers = asyncio.run(lifespan_of(Wrapped(Starlette(lifespan=lifespan)),
                                      ["lifespan.startup"]))
    assert answers[0] == "lifespan.startup.failed"
    assert markers(ready_dir) == []
