"""The websocket kinds: echo (``websocket``) and broadcast (``ws_broadcast``) against every
server that serves WebSockets, through the lab's own runners, the server wrapped as the lab
serves it; uvicorn with WebSockets off fails its cell and the matrix goes on; the config,
the client's frames and the results line's figures as pure logic."""

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.load import loop
from lab.load.monitor import Window
from lab.load.samples import Measurement, Sample
from lab.load.stats import summarize
from lab.load.websocket import _echo, run_broadcast, run_echo
from lab.load.wsclient import Closed, frame, mask
from lab.matrix.config import parse
from lab.servers import ADAPTERS
from lab.servers.asgi_wrap import APP_ENV, SERVED, Wrapped
from lab.store.results import RunDir
from lab.store.schema import Figures, WebSocketFigures
from lab.supervise.process import Readiness, Server, running
from tests.conftest import json_lines, run_lab

HOST = "127.0.0.1"
START_TIMEOUT_S = 20.0


def matrix(experiment: str, servers: str = '[servers.uvicorn]\nworkers = [1]') -> dict:
    import tomllib

    return tomllib.loads(f"{servers}\n[[experiments]]\n{experiment}")


# ---- pure logic -------------------------------------------------------------------------

def test_config_reads_the_websocket_settings_and_names_cells_by_clients() -> None:
    m = parse(matrix('name = "e"\nkind = "websocket"\nendpoints = ["/ws/echo"]\n'
                     'connections = [10, 100]\nmessages = 50\nmessage_bytes = 256'))
    exp = m.experiments[0]
    assert (exp.messages, exp.message_bytes, exp.engine) == (50, 256, "rawws")
    assert [c.id for c in m.cells()] == ["uvicorn-w1-e-ws_echo-ws10",
                                         "uvicorn-w1-e-ws_echo-ws100"]
    b = parse(matrix('name = "b"\nkind = "ws_broadcast"\nendpoints = ["/ws/broadcast"]\n'
                     'connections = 10\nrounds = 3\nengine = "websockets"')).experiments[0]
    assert (b.rounds, b.engine) == (3, "websockets")


@pytest.mark.parametrize(("lines", "path"), [
    ("connections = 10\nmessages = 0", "experiments[0].messages"),
    ("connections = 10\nmessage_bytes = 2_000_000", "experiments[0].message_bytes"),
    ("connections = 10\nrounds = 3", "experiments[0].rounds"),  # a broadcast's setting
    ('connections = 10\nengine = "wrk"', "experiments[0].engine"),
    ("connections = [0]", "experiments[0].connections[0]"),
])
def test_config_errors_name_the_key(lines: str, path: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(matrix(f'name = "e"\nkind = "websocket"\nendpoints = ["/ws/echo"]\n{lines}'))
    assert e.value.path == path


def test_uvicorn_ws_is_an_option_axis_of_its_implementations() -> None:
    m = parse(matrix('name = "e"\nkind = "websocket"\nendpoints = ["/ws/echo"]\n'
                     'connections = 10',
                     '[servers.uvicorn]\nworkers = [1]\n'
                     'options = { ws = ["websockets", "websockets-sansio", "wsproto"] }'))
    assert [c.server_id for c in m.cells()] == [
        "uvicorn-w1-ws=websockets", "uvicorn-w1-ws=websockets-sansio", "uvicorn-w1-ws=wsproto"]
    with pytest.raises(ConfigError) as e:
        parse(matrix('name = "e"\nkind = "websocket"\nendpoints = ["/ws/echo"]\n'
                     'connections = 10', '[servers.uvicorn]\nworkers = [1]\n'
                     'options = { ws = "h11" }'))
    assert e.value.path == "servers.uvicorn.options.ws"


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536])
def test_client_frames_are_masked_with_the_length_s_encoding(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    data = frame(payload)
    assert data[0] == 0x81 and data[1] & 0x80  # final text frame, masked
    n = data[1] & 0x7F
    width = {126: 2, 127: 8}.get(n, 0)
    assert (int.from_bytes(data[2:2 + width], "big") if width else n) == size
    key, body = data[2 + width:6 + width], data[6 + width:]
    assert mask(body, key) == payload  # XOR twice is the payload


def test_websocket_figures_round_trip_through_a_results_line() -> None:
    f = Figures(ok=30, requests=31, errors={"missed": 1}, websocket=WebSocketFigures(
        ws_clients=10, ws_connected=10, ws_message_bytes=32,
        ws_handshake_ms={"p50": 1.5, "max": 3.0}, ws_rounds=3, ws_groups=2,
        ws_last_p50_ms=0.8, ws_last_max_ms=1.2, ws_missed=1))
    line = json.loads(json.dumps(f.to_json()))
    assert line["ws_last_p50_ms"] == 0.8 and line["ws_missed"] == 1  # flat keys
    assert Figures.from_json(line) == f
    echo = Figures(websocket=WebSocketFigures(10, 9, 32, {"p50": 1.0, "max": 2.0},
                                              ws_messages=100))
    assert Figures.from_json(json.loads(json.dumps(echo.to_json()))) == echo


@pytest.mark.parametrize("ask", [True, False])
def test_the_wrapper_names_the_worker_in_a_first_frame_only_when_asked(ask: bool) -> None:
    async def app(scope: dict, receive: object, send: object) -> None:
        await send({"type": "websocket.accept"})  # type: ignore[operator]
        await send({"type": "websocket.send", "text": "hello"})  # type: ignore[operator]

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"x-lab-worker", b"ask")] if ask else [(b"x-lab-worker", b"other")]
    asyncio.run(Wrapped(app)({"type": "websocket", "headers": headers}, None, send))
    texts = [m.get("text") for m in sent if m["type"] == "websocket.send"]
    assert sent[0]["type"] == "websocket.accept"
    assert texts == ([f"x-lab-worker {os.getpid()}", "hello"] if ask else ["hello"])


class Silent:
    """A connection whose server never answers, until the watchdog drops it."""

    pid = None

    def __init__(self) -> None:
        self._dropped = asyncio.get_running_loop().create_future()

    async def send(self, text: str) -> None:
        pass

    async def recv(self) -> str:
        await self._dropped
        raise AssertionError("unreachable")

    async def close(self) -> None:
        pass

    def abort(self) -> None:
        self._dropped.set_exception(Closed("dropped"))


def test_a_client_whose_echo_never_comes_fails_all_its_messages_as_timeouts() -> None:
    async def echo() -> tuple[list[Sample], float]:
        t0 = time.perf_counter()
        return await _echo(Silent(), 3, "x", 0.05), time.perf_counter() - t0

    samples, took = asyncio.run(echo())
    assert [s.error for s in samples] == ["timeout"] * 3  # counted, not dropped
    assert 0.05 <= took < 2.0  # one timer: between timeout_s and twice that, plus a busy host


# ---- real servers -----------------------------------------------------------------------

@contextmanager
def served(name: str, tmp_path: Path, workers: int = 1, **options: object
           ) -> Iterator[Server]:
    """apps.article wrapped as the lab serves it (the handshake names the worker)."""
    adapter = ADAPTERS[name]
    with running(lambda port: adapter.argv(sys.executable, SERVED, HOST, port, workers,
                                           options),  # type: ignore[arg-type]
                 HOST, workers, tmp_path / f"{name}.log", START_TIMEOUT_S, 5.0,
                 env={APP_ENV: "apps.article:app"},
                 readiness=Readiness(markers=True)) as server:
        yield server


def measure(server: Server, config: str, n: int, broadcast: bool = False) -> Figures:
    exp = parse(matrix(config)).experiments[0]
    runner = run_broadcast if broadcast else run_echo
    m: Measurement = loop.run(runner(server.base_url, exp, exp.endpoints[0], n,
                                     Window(server.pids())))
    return summarize(m)


ECHO = ('name = "e"\nkind = "websocket"\nendpoints = ["/ws/echo"]\nconnections = 10\n'
        'messages = 100\ntimeout_s = 10')


@pytest.mark.servers
@pytest.mark.parametrize("name", ["uvicorn", "hypercorn", "granian", "gunicorn"])
def test_echo_of_100_messages_by_10_clients_is_all_ok(name: str, tmp_path: Path) -> None:
    with served(name, tmp_path) as server:
        f = measure(server, ECHO, 10)
        pids = server.pids()
    assert f.websocket and (f.websocket.ws_connected, f.websocket.ws_messages) == (10, 100)
    assert (f.ok, f.errors) == (1000, {})
    assert f.histogram and f.histogram.total == 1000  # every round trip timed
    assert f.rps and f.rps > 0 and f.latency_ms["p50"]
    assert set(map(int, f.pids)) <= set(pids) and sum(f.pids.values()) == 1000


@pytest.mark.servers
def test_the_websockets_library_engine_echoes_too_and_a_refusal_is_named(tmp_path: Path
                                                                          ) -> None:
    with served("uvicorn", tmp_path) as server:
        f = measure(server, ECHO + '\nengine = "websockets"', 10)
        missing = measure(server, ECHO.replace("/ws/echo", "/ws/none"), 10)
    assert (f.ok, f.errors) == (1000, {})
    assert (missing.ok, missing.errors) == (0, {"handshake_http_403": 10})


@pytest.mark.servers
@pytest.mark.parametrize("name", ["uvicorn", "granian"])  # granian: the worker's frame
def test_broadcast_reaches_every_client_of_each_worker(name: str, tmp_path: Path) -> None:
    config = ('name = "b"\nkind = "ws_broadcast"\nendpoints = ["/ws/broadcast"]\n'
              'connections = 20\nrounds = 5\ntimeout_s = 10')
    with served(name, tmp_path, workers=2) as server:
        f = measure(server, config, 20, broadcast=True)
    ws = f.websocket
    assert ws and ws.ws_connected == 20 and ws.ws_missed == 0
    assert (f.ok, f.errors) == (5 * 20, {})  # each round reached all 20
    assert ws.ws_groups == len(f.pids)  # grouped by the worker each socket was told
    assert ws.ws_last_p50_ms is not None and ws.ws_last_max_ms is not None
    assert f.latency_ms["p50"] is not None and ws.ws_last_max_ms >= f.latency_ms["p50"]


@pytest.mark.servers
def test_clients_a_broadcast_did_not_reach_are_counted_as_missed(tmp_path: Path) -> None:
    # /ws/echo answers only its sender: the 4 other clients of each round miss its copy
    config = ('name = "b"\nkind = "ws_broadcast"\nendpoints = ["/ws/echo"]\n'
              'connections = 5\nrounds = 2\ntimeout_s = 0.3')
    with served("uvicorn", tmp_path) as server:
        f = measure(server, config, 5, broadcast=True)
    assert f.websocket and f.websocket.ws_missed == 2 * 4
    assert (f.ok, f.errors) == (2, {"missed": 8})
    assert f.websocket.ws_last_p50_ms is not None  # of the copies that came


@pytest.mark.servers
def test_uvicorn_without_websockets_fails_its_cells_clearly_and_the_matrix_goes_on(
        write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = write_config(
        '[lab]\nstart_timeout_s = 20\n[servers.uvicorn]\nworkers = [1]\n'
        'options = { ws = ["none", "wsproto"] }\n'
        f"[[experiments]]\n{ECHO}\n")
    out = tmp_path / "runs"
    done = run_lab("run", config, "--out", out, "--yes", "--run-id", "r", timeout=120)
    assert done.returncode == 3, done.stderr  # some cells failed
    lines = {line["server_id"]: line for line in json_lines(RunDir(out / "r"))}
    off = lines["uvicorn-w1-ws=none"]
    assert off["status"] == "failed"
    assert off["failure"]["kind"] == "all_requests_failed"
    assert "10 handshake_http_404" in off["failure"]["reason"]
    on = lines["uvicorn-w1-ws=wsproto"]
    assert on["status"] == "ok" and on["figures"]["ok"] == 1000
    # In short: which configuration held its 10 clients, and why the other did not
    report = (out / "r" / "report.md").read_text(encoding="utf-8")
    held = report.split("**Which server holds N WebSocket clients?**", 1)[1].split("\n\n")[1]
    assert held.startswith("- `/ws/echo`, 10 clients (echo, msgs/s): held all 10 on "
                           "uvicorn-w1-ws=wsproto "), held
    assert "**did not** on uvicorn-w1-ws=none (" in held
    assert "10 handshake_http_404" in held.split("ws=none", 1)[1]
