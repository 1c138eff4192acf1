"""The loop meter (``lab.loop_meter``): which endpoints hold the event loop, and where.

Pure: the bucket scheme, ``diff``, the figures and the config. In process: the wrapper
driving an app's coroutines on asyncio, the watchdog naming the blocking line. Real
servers: a FastAPI app of one's own, outside the project, through ``python -m lab run`` on
uvicorn, hypercorn and granian — its two blocking endpoints named with their file:line,
the correct ones with ≈ 0 loop time and no site; and a run without the meter as today."""

import asyncio
import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from lab.errors import ConfigError
from lab.load.loopreader import LoopReader
from lab.load.stats import loop_figures
from lab.matrix.config import parse
from lab.servers import loopmeter
from lab.servers.asgi_wrap import LOOP_METER_ENV, METER_DIR_ENV, Wrapped
from lab.servers.loopmeter import Endpoint, Snapshot
from lab.store.schema import Figures
from lab.supervise.launch import Launch
from tests.test_any_app import config, lab_run

# ---- the bucket scheme and diff --------------------------------------------------------------


def test_a_bucket_stands_for_its_steps_within_an_eighth() -> None:
    for seconds in (1e-6, 3.3e-5, 0.001, 0.0123, 0.03, 0.2, 2.5):
        assert abs(loopmeter.bucket_s(loopmeter.bucket(seconds)) / seconds - 1) < 0.125
    assert loopmeter.bucket(0.03) == "90"  # round(20 · log10(30 000 µs))
    assert loopmeter.bucket(1e-9) == loopmeter.bucket(0) == "0"  # under 1 µs: one bucket


def test_quantiles_come_from_the_buckets() -> None:
    counts = {loopmeter.bucket(0.001): 98, loopmeter.bucket(0.05): 2}
    assert loopmeter.quantile_s(counts, 0.5) == pytest.approx(0.001, rel=0.125)
    assert loopmeter.quantile_s(counts, 0.99) == pytest.approx(0.05, rel=0.125)
    assert loopmeter.quantile_s({}, 0.5) is None


def endpoint(calls: int, loop_s: float, max_step_s: float, longest: dict[str, int],
             sites: dict[str, list[float]] | None = None) -> Endpoint:
    return {"calls": calls, "steps": 2 * calls, "loop_s": loop_s, "cpu_s": loop_s / 10,
            "max_step_s": max_step_s, "longest": longest, "sites": sites or {},
            "thread_calls": 0, "thread_wait_s": 0.0}


def snapshot(busy_s: float, **endpoints: Endpoint) -> Snapshot:
    return {"v": 2, "pid": 7, "flush": 1, "busy_s": busy_s, "loop_cpu_s": None,
            "beats": {"lag": {}, "held_s": 0.0, "sites": {}}, "threads": None,
            "endpoints": {f"/{k}": e for k, e in endpoints.items()}}


def test_a_window_is_the_difference_and_keeps_only_endpoints_called_in_it() -> None:
    site = "time.sleep at app.py:9 in slow"
    start = snapshot(1.0, slow=endpoint(2, 0.06, 0.031, {"90": 2}, {site: [2, 0.06]}),
                     idle=endpoint(5, 0.001, 0.0002, {"46": 5}))
    end = snapshot(1.5, slow=endpoint(5, 0.15, 0.031, {"90": 4, "91": 1}, {site: [5, 0.15]}),
                   idle=endpoint(5, 0.001, 0.0002, {"46": 5}))
    w = loopmeter.diff(start, end)
    assert w["busy_s"] == pytest.approx(0.5)
    assert list(w["endpoints"]) == ["/slow"]  # /idle had no call in the window
    slow = w["endpoints"]["/slow"]
    assert (slow["calls"], slow["steps"]) == (3, 6)
    assert slow["loop_s"] == pytest.approx(0.09)
    assert slow["longest"] == {"90": 2, "91": 1}
    assert slow["sites"][site] == [3, pytest.approx(0.09)]
    # the maximum did not grow in the window: its top bucket's value, at most the maximum
    assert slow["max_step_s"] == pytest.approx(0.031)
    grown = snapshot(1.6, slow=endpoint(6, 0.25, 0.1, {"90": 4, "91": 1, "100": 1}))
    assert loopmeter.diff(end, grown)["endpoints"]["/slow"]["max_step_s"] == 0.1
    # a worker without a snapshot at the start: all of its end is the window's
    assert loopmeter.diff(None, end)["endpoints"]["/idle"]["calls"] == 5


def test_the_figures_per_worker_and_endpoint_round_trip_compactly() -> None:
    site = "time.sleep at app.py:9 in slow"
    w = loopmeter.diff(None, snapshot(0.3, slow=endpoint(10, 0.3, 0.0305, {"90": 10},
                                                         {site: [10, 0.3]})))
    figures = loop_figures({7: w}, wall_s=0.6)
    slow = figures.loop["7"].endpoints["/slow"]
    assert figures.loop["7"].busy_share == 0.5
    assert (slow.calls, slow.loop_ms_per_call, slow.cpu_ms_per_call) == (10, 30.0, 3.0)
    # p50 and p99 from the buckets, never above the exact max
    assert slow.longest_step_ms == {"p50": 30.5, "p99": 30.5, "max": 30.5}
    assert [(s.site, s.count, s.seconds) for s in slow.sites] == [(site, 10, 0.3)]
    line = Figures(loop=figures).to_json()
    assert Figures.from_json(json.loads(json.dumps(line))).loop == figures
    assert "loop" not in Figures().to_json()  # without the meter, a line is as before


# ---- the config ------------------------------------------------------------------------------

SERVER = """
[servers.uvicorn]
workers = [1]

[[experiments]]
name = "e"
kind = "burst"
endpoints = ["/hello"]
requests = [4]
"""


def test_loop_meter_is_off_by_default_and_a_boolean() -> None:
    off, on = (parse(tomllib.loads(lab + SERVER)) for lab in ("", "[lab]\nloop_meter = true\n"))
    assert not off.lab.loop_meter and on.lab.loop_meter
    assert LOOP_METER_ENV not in Launch.of(off.lab).env
    assert Launch.of(on.lab).env[LOOP_METER_ENV] == "1"
    # only a metered cell's key changes: an earlier run's cells resume as they were
    assert off.cells()[0].key(off.lab) != on.cells()[0].key(on.lab)
    for text, problem in (('loop_meter = "yes"', "must be true or false"),
                          ("loop_meter = true\nwrap = false", "needs lab.wrap = true")):
        with pytest.raises(ConfigError) as e:
            parse(tomllib.loads(f"[lab]\n{text}\n" + SERVER))
        assert e.value.path == "lab.loop_meter" and problem in str(e.value)


# ---- in process: the wrapper drives the app's coroutines -------------------------------------

APP = '''
import asyncio
import time


async def app(scope, receive, send):
    if scope["path"] == "/block":
        time.sleep(0.03)
    elif scope["path"] == "/fail":
        raise ValueError("the app's own")
    else:
        await asyncio.sleep(0.03)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
'''


def line_of(source: str, text: str, after: str | None = None) -> int:
    """The line of ``source`` with ``text``: the first, or the first after ``def after``."""
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if f"def {after}(" in line) if after else 0
    return next(i for i, line in enumerate(lines[start:], start + 1) if text in line)


def test_the_wrapper_times_each_step_and_names_the_blocking_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "blocky.py").write_text(APP)
    meter_dir = tmp_path / "meter"
    meter_dir.mkdir()
    monkeypatch.setenv(METER_DIR_ENV, str(meter_dir))
    monkeypatch.setenv(LOOP_METER_ENV, "1")
    monkeypatch.setenv("LAB_APP_DIR", str(tmp_path / "app"))
    monkeypatch.syspath_prepend(str(tmp_path / "app"))
    from blocky import app as blocky  # type: ignore[import-not-found]

    wrapped = Wrapped(blocky)
    failed: list[str] = []

    async def one(path: str) -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: Any) -> None:
            pass

        try:
            await wrapped({"type": "http", "path": path, "headers": []}, receive, send)
        except ValueError as e:
            failed.append(str(e))

    async def main() -> None:
        for _ in range(3):
            await one("/block")
        await asyncio.gather(*(one("/wait") for _ in range(4)))
        await one("/fail")

    reader = LoopReader(meter_dir)
    asyncio.run(main())
    try:
        got = reader.snapshots()[os.getpid()]
    finally:
        assert wrapped._loop is not None
        wrapped._loop.close()
    assert failed == ["the app's own"]  # an app's exception goes through unchanged
    block, wait = got["endpoints"]["/block"], got["endpoints"]["/wait"]
    assert block["calls"] == 3 and 0.025 < block["loop_s"] / 3 < 0.1
    assert block["sites"] == {
        f"time.sleep at blocky.py:{line_of(APP, 'time.sleep')} in app": [3, block["loop_s"]]}
    assert wait["calls"] == 4 and wait["steps"] == 8  # before and after its await
    assert wait["loop_s"] < 0.005 and wait["sites"] == {}
    assert got["endpoints"]["/fail"]["calls"] == 1
    assert got["busy_s"] == pytest.approx(sum(e["loop_s"] for e in got["endpoints"].values()))


# ---- real servers: an app of one's own -------------------------------------------------------

SLEEP_S = 0.03

TEAM = f'''
import asyncio
import hashlib
import time

from fastapi import FastAPI

app = FastAPI()

# about 25 ms of CPU work on this machine, whatever its speed
_t0 = time.thread_time()
hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 10_000)
ROUNDS = max(10_000, int(10_000 * 0.025 / max(time.thread_time() - _t0, 1e-6)))


@app.get("/health")
async def health():
    return "ok"


@app.get("/sleepy/{{n}}")
async def sleepy(n: int):
    time.sleep({SLEEP_S})
    return n


@app.get("/hash")
async def hashing():
    return hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", ROUNDS).hex()


@app.get("/waits")
async def waits():
    await asyncio.sleep({SLEEP_S})
    return "waited"


@app.get("/threaded")
def threaded():
    time.sleep({SLEEP_S})
    return "threaded"
'''

# A def endpoint's first call imports anyio's thread machinery on the loop (10–15 ms here, a
# site with no frame of the app): measured in "first", so that "burst" shows the steady state.
TEAM_EXPERIMENTS = """
[[experiments]]
name = "first"
kind = "burst"
endpoints = ["/threaded"]
requests = [1]
timeout_s = 10

[[experiments]]
name = "burst"
kind = "burst"
endpoints = ["/sleepy/1", "/hash", "/waits", "/threaded"]
requests = [6]
timeout_s = 10
"""


@pytest.fixture
def team(tmp_path: Path) -> Path:
    folder = tmp_path / "team"
    folder.mkdir()
    (folder / "team.py").write_text(TEAM)
    return folder


@pytest.mark.servers
def test_the_blocking_endpoints_are_named_with_their_line_on_every_server(
        team: Path, tmp_path: Path) -> None:
    text = config('app = "team:app"\napp_dir = "team"\nloop_meter = true', "[1]",
                  TEAM_EXPERIMENTS)
    code, output, run = lab_run(tmp_path, text, "loop")
    assert code == 0, output
    lines = [json.loads(s) for s in (run.path / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * 5
    sleep_line, hash_line = line_of(TEAM, "time.sleep("), line_of(TEAM, "ROUNDS).hex()")
    for r in lines:
        assert r["status"] == "ok", (r["cell_id"], r["failure"])
        (pid, worker), = r["figures"]["loop"].items()
        if r["experiment"] == "first":  # whatever held the loop, it was not the app's line
            sites = [s["site"] for s in worker["endpoints"]["/threaded"]["sites"]]
            assert all(s.endswith("(no frame of the app)") for s in sites), sites
            continue
        assert int(pid) in map(int, r["figures"]["pids"]), r["cell_id"]
        assert 0 < worker["busy_share"] <= 1.05, r["cell_id"]
        route = {"/sleepy/1": "/sleepy/{n}"}.get(r["endpoint"], r["endpoint"])
        e = worker["endpoints"][route]
        assert e["calls"] == 6, r["cell_id"]
        ms, sites = e["loop_ms_per_call"], [s["site"] for s in e["sites"]]
        if r["endpoint"] == "/sleepy/1":
            assert 0.8 * SLEEP_S * 1000 < ms < 3 * SLEEP_S * 1000, (r["cell_id"], ms)
            assert sites == [f"time.sleep at team.py:{sleep_line} in sleepy"], r["cell_id"]
            assert e["longest_step_ms"]["max"] >= 0.8 * SLEEP_S * 1000
        elif r["endpoint"] == "/hash":
            assert 10 < ms < 120, (r["cell_id"], ms)
            assert e["cpu_ms_per_call"] > 0.5 * ms  # the loop was busy working, not waiting
            assert sites == [f"hashlib.pbkdf2_hmac at team.py:{hash_line} in hashing"], \
                r["cell_id"]
        else:  # the correct ones: no hold on the loop, no site (no false positive)
            assert ms < 3, (r["cell_id"], ms)
            assert sites == [], r["cell_id"]
    # The report's answer names exactly the two that block, with their line and the fix.
    report = (run.path / "report.md").read_text()
    short = report[report.index("## In short"):report.index("## This run")]
    named = [x for x in short.splitlines() if "holds its worker's event loop" in x]
    assert len(named) == 2, short
    assert any("`/sleepy/{n}`" in x and f"team.py:{sleep_line}" in x for x in named)
    assert any("`/hash`" in x and f"team.py:{hash_line}" in x for x in named)
    assert "## Who holds the event loop" in report and "The loop meter was on" in report


@pytest.mark.servers
def test_without_the_meter_a_line_has_no_loop_figures(team: Path, tmp_path: Path) -> None:
    text = config('app = "team:app"\napp_dir = "team"', "[1]",
                  TEAM_EXPERIMENTS.replace('"/sleepy/1", "/hash", ', ""))
    code, output, run = lab_run(tmp_path, text, "off")
    assert code == 0, output
    lines = [json.loads(s) for s in (run.path / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * 3
    for r in lines:
        assert r["status"] == "ok" and "loop" not in r["figures"], r["cell_id"]
