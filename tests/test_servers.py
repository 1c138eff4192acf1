"""Every registered server at 1 and 2 workers, started for real on 127.0.0.1 through
lab.supervise.process."""

import asyncio
import sys
import time
from pathlib import Path

import httpx
import pytest

from lab.errors import ServerStartError
from lab.matrix.config import bind_address
from lab.servers import ADAPTERS
from lab.supervise import pgroup
from lab.supervise.process import running
from tests.conftest import carrying, leftovers

pytestmark = pytest.mark.servers

HOST = "127.0.0.1"
APP = "apps.article:app"
DELAY = 0.05
BURST = 40
START_TIMEOUT_S = 20.0
SERVERS = list(ADAPTERS)  # every registered server: a new adapter is tested like the others


def argv_for(server: str, workers: int, app: str = APP):
    adapter = ADAPTERS[server]
    return lambda port: adapter.argv(sys.executable, app, HOST, port, workers, {})


async def burst(base_url: str, n: int) -> tuple[float, list[httpx.Response]]:
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=10.0,
                                 limits=httpx.Limits(max_connections=n)) as client:
        t0 = time.perf_counter()
        responses = await asyncio.gather(*(
            client.get("/non-blocking", params={"delay": DELAY}) for _ in range(n)))
        return time.perf_counter() - t0, list(responses)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("name", SERVERS)
def test_server_serves_with_its_workers_and_leaves_nothing(
        name: str, workers: int, tmp_path: Path, leak_token: str) -> None:
    with running(argv_for(name, workers), HOST, workers, tmp_path / "server.log",
                 START_TIMEOUT_S, stop_grace_s=5.0) as server:
        assert server.ready_s is not None and server.ready_s < 10.0
        assert server.base_url.startswith(f"http://{HOST}:")
        group = set(server.pids())
        workers_started = set(server.ready_pids())
        assert len(workers_started) == workers
        assert workers_started <= group
        # every process of the group carries the test's token, so "none left" below means it
        assert group <= set(carrying(leak_token))

        health = httpx.get(f"{server.base_url}/health", trust_env=False, timeout=5.0)
        assert health.status_code == 200
        assert health.json()["endpoint"] == "/health"
        assert health.json()["pid"] in workers_started

        wall, responses = asyncio.run(burst(server.base_url, BURST))
        assert [r.status_code for r in responses] == [200] * BURST
        bodies = [r.json() for r in responses]
        assert all(b["endpoint"] == "/non-blocking" and b["delay"] == DELAY for b in bodies)
        answered = {b["pid"] for b in bodies}
        # the split may be uneven (uvicorn may send all to one worker), but only this
        # server's started workers answer, and never more of them than configured
        assert 1 <= len(answered) <= workers
        assert answered <= workers_started
        # the requests overlapped: one after another would take BURST × DELAY = 2 s
        assert wall < 20 * DELAY
        pgid = server.pgid

    assert server.last_stop is not None
    assert not server.last_stop.killed, "a graceful stop should not need SIGKILL"
    assert pgroup.members(pgid) == []
    assert leftovers(leak_token) == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base_url}/health", trust_env=False, timeout=2.0)


@pytest.mark.parametrize("name", SERVERS)
def test_server_that_cannot_start(name: str, tmp_path: Path, leak_token: str) -> None:
    log = tmp_path / "server.log"
    t0 = time.monotonic()
    with pytest.raises(ServerStartError) as e:
        with running(argv_for(name, 1, "apps.article:nope"), HOST, 1, log, START_TIMEOUT_S,
                     stop_grace_s=2.0):
            pytest.fail("the server should not have become ready")
    # the exit is noticed, not waited out until the start timeout
    assert time.monotonic() - t0 < START_TIMEOUT_S / 2
    assert e.value.reason
    assert "nope" in e.value.log_tail  # the server's own complaint, from its log
    assert "nope" in log.read_text()
    assert leftovers(leak_token) == []


def test_stop_after_the_server_exited_by_itself(tmp_path: Path, leak_token: str) -> None:
    """A server whose worker dies (/crash) is still stopped cleanly, leaving nothing."""
    with running(argv_for("uvicorn", 1), HOST, 1, tmp_path / "server.log", START_TIMEOUT_S,
                 stop_grace_s=2.0) as server:
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{server.base_url}/crash", trust_env=False, timeout=5.0)
        pgid = server.pgid
    assert server.last_stop is not None
    assert pgroup.members(pgid) == []
    assert leftovers(leak_token) == []


@pytest.mark.parametrize("host", ["::1", "[::1]", "localhost"])
@pytest.mark.parametrize("name", SERVERS)
def test_every_loopback_host_the_config_accepts_works(name: str, host: str, tmp_path: Path,
                                                       leak_token: str) -> None:
    """lab.matrix.config accepts localhost, ::1 and [::1] as loopback: each must work on every
    server."""
    adapter = ADAPTERS[name]
    host = bind_address(host)
    with running(lambda port: adapter.argv(sys.executable, APP, host, port, 1, {}), host, 1,
                 tmp_path / "server.log", START_TIMEOUT_S, stop_grace_s=5.0) as server:
        response = httpx.get(f"{server.base_url}/hello", trust_env=False, timeout=5.0)
        assert response.status_code == 200
        assert response.json()["endpoint"] == "/hello"
    assert leftovers(leak_token) == []


@pytest.mark.parametrize("name", SERVERS)
def test_workers_that_ignore_sigterm_are_killed(name: str, tmp_path: Path,
                                                leak_token: str) -> None:
    """apps.stubborn's workers ignore SIGTERM: the stop still ends the whole group, within
    the grace period plus the SIGKILL, and says whether SIGKILL was needed."""
    grace = 1.0
    with running(argv_for(name, 2, "apps.stubborn:app"), HOST, 2, tmp_path / "server.log",
                 START_TIMEOUT_S, stop_grace_s=grace) as server:
        assert len(set(server.ready_pids())) == 2
        pgid = server.pgid
    report = server.last_stop
    assert report is not None
    assert report.seconds < grace + 1.0  # SIGKILL within the grace period + 1 s
    assert pgroup.members(pgid) == []
    assert leftovers(leak_token) == []
    if report.killed:  # hypercorn's workers stop on its shutdown event, not on a signal
        assert report.seconds >= grace * 0.9
    elif name != "hypercorn":
        pytest.fail(f"{name}'s stubborn workers cannot have stopped without SIGKILL")
