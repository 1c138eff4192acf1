"""Requests in flight, counted inside each worker by lab.servers.asgi_wrap and read by
lab.load.inflight: in process around a bare app, then on every real server at 1 and 2 workers.

A burst here is the reference's: N keep-alive connections opened and each checked by one
GET first, then the N requests written in one loop turn, so the N are in the server at once
(a sleep of tenths of a second is far longer than writing them)."""

import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab.load.inflight import InFlightMeter
from lab.matrix.config import LabSettings
from lab.run.runner import Launch
from lab.servers import ADAPTERS
from lab.servers.asgi_wrap import METER_DIR_ENV, WORKER_HEADER, Wrapped
from lab.supervise.process import Server, running
from tests.conftest import ROOT

LAB = LabSettings(start_timeout_s=20.0, stop_grace_s=5.0)
SERVERS = ["uvicorn", "hypercorn", "granian"]
DELAY = 0.2  # seconds each burst request sleeps in the app: all N arrive well before


# ---- in process: the wrapper around a bare app ------------------------------------------

def gated_app(gate: asyncio.Event) -> Any:
    """/wait answers once ``gate`` is set, /fail raises, anything else answers at once."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/wait":
            await gate.wait()
        if scope["path"] == "/fail":
            raise RuntimeError("the app's own failure")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@pytest.fixture
def meter_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(METER_DIR_ENV, str(tmp_path))
    return tmp_path


def test_requests_inside_the_app_are_in_flight_until_it_returns_or_raises(
        meter_dir: Path) -> None:
    meter = InFlightMeter(meter_dir)

    async def scenario() -> tuple[int, int, int]:
        gate = asyncio.Event()
        app = Wrapped(gated_app(gate))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as client:
            meter.begin()
            waiting = [asyncio.create_task(client.get("/wait")) for _ in range(5)]
            await asyncio.sleep(0.05)
            during = meter.readings()[os.getpid()].current
            with pytest.raises(RuntimeError):
                await client.get("/fail")
            gate.set()
            assert all(r.status_code == 200 for r in await asyncio.gather(*waiting))
            reading = meter.readings()[os.getpid()]
            return during, reading.current, reading.started

    during, after, started = asyncio.run(scenario())
    assert during == 5
    assert after == 0  # the failed request left too
    assert started == 6
    assert meter.peaks() == {os.getpid(): 6}  # five waiting, plus the one that failed


def test_a_cancelled_request_leaves_the_count(meter_dir: Path) -> None:
    async def scenario() -> None:
        app = Wrapped(gated_app(asyncio.Event()))  # never set: /wait waits until cancelled
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as client:
            task = asyncio.create_task(client.get("/wait"))
            await asyncio.sleep(0.05)
            assert InFlightMeter(meter_dir).readings()[os.getpid()].current == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    assert InFlightMeter(meter_dir).readings()[os.getpid()].current == 0


def test_without_a_meter_folder_the_wrapper_serves_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(METER_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    app = Wrapped(gated_app(asyncio.Event()))

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as client:
            return await client.get("/")

    response = asyncio.run(get())
    assert response.status_code == 200 and response.text == "ok"
    assert response.headers[WORKER_HEADER] == str(os.getpid())
    assert os.listdir(tmp_path) == []


def test_a_meter_folder_that_cannot_be_written_does_not_fail_the_app(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(METER_DIR_ENV, str(tmp_path / "gone"))
    app = Wrapped(gated_app(asyncio.Event()))

    async def get() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as client:
            return [(await client.get("/")).status_code for _ in range(3)]

    assert asyncio.run(get()) == [200, 200, 200]
    assert capsys.readouterr().err.count("no in-flight meter") == 1  # said once, not per request


def test_a_meter_reads_nothing_before_any_worker_has_counted(tmp_path: Path) -> None:
    meter = InFlightMeter(tmp_path / "not-yet")
    assert meter.peaks() == {} and meter.generation() == 0
    meter = InFlightMeter(tmp_path)
    meter.begin()
    meter.begin()
    assert meter.generation() == 2 and meter.peaks() == {}


# ---- real servers ------------------------------------------------------------------------

@contextmanager
def serve(name: str, workers: int, log_path: Path,
          app_dir: str | None = None) -> Iterator[Server]:
    """The server as the runner starts it: the app wrapped, so its workers are metered."""
    adapter, launch = ADAPTERS[name], Launch.of(LAB)
    with running(lambda port: adapter.argv(sys.executable, launch.app, LAB.host, port,
                                           workers, {}),
                 LAB.host, workers, log_path, LAB.start_timeout_s, LAB.stop_grace_s,
                 env=launch.env, readiness=launch.readiness, app_dir=app_dir) as server:
        yield server


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def request(conn: Conn, target: str) -> None:
    conn[1].write(f"GET {target} HTTP/1.1\r\nHost: lab\r\n\r\n".encode())


async def response(conn: Conn) -> tuple[int, str]:
    """(status, worker header) of the next response on ``conn``."""
    head = (await conn[0].readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in head[1:] if line)
    await conn[0].readexactly(int(headers["content-length"]))
    return int(head[0].split()[1]), headers[WORKER_HEADER]


async def get(conn: Conn, target: str) -> tuple[int, str]:
    await request(conn, target)
    return await response(conn)


async def connections(server: Server, n: int) -> list[Conn]:
    """``n`` keep-alive connections, each answered once (so each is in a worker)."""
    conns = [await asyncio.open_connection(server.host, server.port) for _ in range(n)]
    for conn in conns:
        assert (await get(conn, "/hello"))[0] == 200
    return conns


async def close(conns: list[Conn]) -> None:
    for _, writer in conns:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for _, w in conns), return_exceptions=True)


async def burst(server: Server, n: int, delay: float = DELAY) -> list[str]:
    """A new window, then ``n`` requests at once on warm connections: who answered each."""
    conns = await connections(server, n)
    try:
        server.meter.begin()
        for conn in conns:
            await request(conn, f"/non-blocking?delay={delay}")
        answers = await asyncio.gather(*(response(conn) for conn in conns))
    finally:
        await close(conns)
    assert [status for status, _ in answers] == [200] * n
    return [worker for _, worker in answers]


@pytest.mark.servers
@pytest.mark.parametrize("name", SERVERS)
def test_a_burst_of_30_is_30_in_flight_at_once_in_the_one_worker(
        name: str, tmp_path: Path, leak_token: str) -> None:
    with serve(name, 1, tmp_path / "logs" / f"{name}.log") as server:
        workers = asyncio.run(burst(server, 30))
        peaks = server.meter.peaks()
        (pid,) = set(workers)
        # The last answer can reach the client a moment before the app's call returns in
        # the worker (the count drops there): wait for it, bounded.
        deadline = time.monotonic() + 5.0
        while server.meter.readings()[int(pid)].current and time.monotonic() < deadline:
            time.sleep(0.01)
        readings = server.meter.readings()
    assert peaks == {int(pid): 30}
    assert readings[int(pid)].started == 30
    assert readings[int(pid)].current == 0  # all answered


@pytest.mark.servers
@pytest.mark.parametrize("name", SERVERS)
def test_each_window_counts_its_own_peak_and_what_was_in_flight_when_it_began(
        name: str, tmp_path: Path, leak_token: str) -> None:
    async def scenario(server: Server) -> list[dict[int, int]]:
        seen = []
        meter = server.meter
        (conn,) = await connections(server, 1)
        meter.begin()
        for _ in range(5):  # one after another: never two at once
            assert (await get(conn, "/hello"))[0] == 200
        seen.append(meter.peaks())
        await burst(server, 10, delay=0.05)
        seen.append(meter.peaks())  # the burst's window: its own 10, not the 5 before
        meter.begin()
        assert (await get(conn, "/hello"))[0] == 200
        seen.append(meter.peaks())  # a new window forgets the burst
        # a window that begins while 8 requests sleep: the next request finds them
        slow = await connections(server, 8)
        for c in slow:
            await request(c, "/non-blocking?delay=0.5")
        await asyncio.sleep(0.2)
        meter.begin()
        seen.append(meter.peaks())  # no request has started in it yet
        assert (await get(conn, "/hello"))[0] == 200
        seen.append(meter.peaks())
        await asyncio.gather(*(response(c) for c in slow))
        await close([conn, *slow])
        return seen

    with serve(name, 1, tmp_path / "logs" / f"{name}.log") as server:
        (pid,) = server.ready_pids()
        seen = asyncio.run(scenario(server))
    assert seen == [{pid: 1}, {pid: 10}, {pid: 1}, {}, {pid: 9}]


@pytest.mark.servers
@pytest.mark.parametrize("name", SERVERS)
def test_at_two_workers_each_worker_counts_the_requests_it_was_given(
        name: str, tmp_path: Path, leak_token: str) -> None:
    n = 30
    with serve(name, 2, tmp_path / "logs" / f"{name}.log") as server:
        workers = asyncio.run(burst(server, n))
        peaks = server.meter.peaks()
        started = {pid: r.started for pid, r in server.meter.readings().items()}
    served = {int(pid): count for pid, count in Counter(workers).items()}
    assert peaks == served  # per pid: all it was given were in it at once
    assert sum(peaks.values()) == n
    assert {pid: started[pid] for pid in served} == served


@pytest.mark.servers
def test_a_server_started_from_a_relative_run_folder_in_the_apps_folder_is_metered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, leak_token: str) -> None:
    """The server's working directory is the app's folder; the lab's run folder is
    relative to the lab's own: the folders the workers write to must not be."""
    monkeypatch.chdir(tmp_path)
    with serve("uvicorn", 1, Path("run", "logs", "uvicorn.log"), app_dir=str(ROOT)) as server:
        assert server.meter.folder.is_absolute()
        asyncio.run(burst(server, 3, delay=0.05))
        assert list(server.meter.peaks().values()) == [3]
        meter_dir = server.meter.folder
    assert not meter_dir.exists()  # removed with the server
    assert sorted(os.listdir(tmp_path / "run" / "logs")) == ["uvicorn.log"]
