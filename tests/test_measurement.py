"""The lab's measurements against real servers on 127.0.0.1: open model, interference,
the resource monitor, several client processes, the wrk engine, and the merge of latency
histograms over repeats in the report.

The machine is small and shared: every physical claim is a ratio or a bound with a wide
margin (a sleep of ``delay`` never answers in less than ``delay``; a serialised endpoint
takes N × delay for N requests), never a tight absolute time.
"""

import asyncio
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import pytest

from lab.kinds import get
from lab.load import closed, open_model
from lab.load.histogram import Histogram, latency_figures
from lab.load.monitor import Window
from lab.load.samples import Sample
from lab.load.stats import MachineShare, summarize
from lab.matrix.config import Cell, Experiment, LabSettings, Scalar
from lab.report.groups import Row
from lab.run.runner import Context, Servers, engine_for, measure, run_cell
from lab.servers import ADAPTERS
from lab.store.results import RunDir
from lab.supervise.interrupt import Interrupts
from lab.supervise.launch import Launch
from lab.supervise.process import Server, running
from tests.conftest import measurement, result

LAB = LabSettings(start_timeout_s=20.0, stop_grace_s=5.0, cell_timeout_s=60.0)
DELAY = 0.05  # seconds: /async-blocking serves at most 1 / DELAY = 20 req/s per worker
CPU_N = 20_000  # /cpu?n=: a pure-Python loop of a millisecond or so
LATENCY_KEYS = {"p50", "p90", "p99", "p99.9", "max", "mean"}


@contextmanager
def serve(name: str, workers: int, tmp_path: Path) -> Iterator[Server]:
    """The server as the runner starts it: the app wrapped (worker header, markers)."""
    adapter, launch = ADAPTERS[name], Launch.of(LAB)
    with running(lambda port: adapter.argv(sys.executable, launch.app, LAB.host, port,
                                           workers, {}),
                 LAB.host, workers, tmp_path / f"{name}-w{workers}.log", LAB.start_timeout_s,
                 LAB.stop_grace_s, env=launch.env, readiness=launch.readiness) as server:
        yield server


def make_cell(server: str, workers: int, kind: str, endpoint: str, load: int,
              params: dict[str, Scalar] | None = None, engine: str | None = None,
              timeout_s: float = 10.0, **settings: Any) -> Cell:
    exp = Experiment(f"measure-{kind}", kind, (endpoint,), (load,), dict(params or {}),
                     engine or get(kind).default_engine, timeout_s, **settings)
    return Cell(server, workers, (), exp, endpoint, load, 1)


def context(run_path: Path | None = None) -> Context:
    """What lab.run.runner gives every cell: settings, a run folder (wrk's logs), interrupts."""
    path = run_path or Path(tempfile.mkdtemp(prefix="lab-test-run-"))
    (path / "logs").mkdir(parents=True, exist_ok=True)
    return Context(LAB, RunDir(path), Interrupts(), MachineShare(2, shared=True))


def figures_of(cell: Cell, server: Server) -> dict[str, Any]:
    return measure(cell, server, context(), engine_for(cell)).to_json()


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.fixture
def client_leak_token(request: pytest.FixtureRequest) -> str:
    """``leak_token`` for tests that start client processes (``clients = k``).

    multiprocessing's spawn start method needs its resource tracker: one helper process
    per parent, started on first use and gone when the parent exits (as the lab's CLI
    does after a run). Inside this long-lived pytest process it would outlive the test
    and carry the token, so it is started before the token is set. Every client process
    still carries the token and must be gone when the test ends.
    """
    resource_tracker.ensure_running()
    return request.getfixturevalue("leak_token")


# ---- open model ------------------------------------------------------------------------

@pytest.mark.servers
def test_open_model_above_capacity_counts_queueing_from_the_schedule(
        tmp_path: Path, leak_token: str) -> None:
    """40 req/s for 1 s at /async-blocking (20 req/s at most on one worker): the server
    falls behind and the latency, measured from each request's *scheduled* time, shows
    the queue; the achieved rate is the server's, not the schedule's."""
    rate, duration = 40, 1.0
    cell = make_cell("uvicorn", 1, "open", "/async-blocking", rate, {"delay": DELAY},
                     duration_s=duration, warmup_s=0.0)
    with serve("uvicorn", 1, tmp_path) as server:
        m = asyncio.run(open_model.run(server.base_url, cell.experiment, cell.endpoint,
                                       rate, Window(server.pids())))
    f = summarize(m).to_json()
    n = int(rate * duration)
    assert f["target_rps"] == rate
    assert f["scheduled"] == n
    assert f["errors"] == {} and f["ok"] == n

    # samples start at their scheduled times, 1/rate apart, not at the (late) send times;
    # a request that went out with an earlier wake-up's batch (≤ EARLY_S before its time)
    # starts when it was written
    starts = sorted(s.start for s in m.samples)
    offsets = [b - starts[0] for b in starts]
    assert offsets == pytest.approx([i / rate for i in range(n)],
                                    abs=2 * open_model.EARLY_S + 1e-6)

    # one worker serialises: the last answer comes ≥ n × delay after the first schedule
    done = max(s.start + s.latency_s for s in m.samples)
    assert done - starts[0] >= 0.8 * n * DELAY
    # so the queue shows in the tail latency, and grows along the schedule
    assert f["latency_ms"]["p99"] >= 5 * DELAY * 1e3
    by_schedule = [s.latency_s for s in sorted(m.samples, key=lambda s: s.start)]
    quarter = n // 4
    assert mean(by_schedule[-quarter:]) >= 1.5 * mean(by_schedule[:quarter])

    # the achieved throughput is what the server did (≤ 1/DELAY = 20 req/s), not the
    # 40 req/s that were scheduled: the window's requests took ≥ 1.6 s to be answered
    assert f["rps"] < 0.75 * rate, (
        f"achieved {f['rps']:.1f} req/s reported for a server that answered "
        f"{n} requests in {done - starts[0]:.2f} s")


@pytest.mark.servers
def test_open_model_below_capacity_answers_in_about_one_delay(
        tmp_path: Path, leak_token: str) -> None:
    rate = 5  # a quarter of what one worker can serve
    cell = make_cell("uvicorn", 1, "open", "/async-blocking", rate, {"delay": DELAY},
                     duration_s=1.0, warmup_s=0.0)
    with serve("uvicorn", 1, tmp_path) as server:
        f = figures_of(cell, server)
    assert f["target_rps"] == rate
    assert f["scheduled"] == rate
    assert f["ok"] == rate and f["errors"] == {}
    assert f["send_lag_p99_ms"] >= 0 and f["send_lag_max_ms"] >= f["send_lag_p99_ms"]
    p50 = f["latency_ms"]["p50"]
    assert DELAY * 1e3 * 0.99 <= p50 < 3 * DELAY * 1e3  # a sleep, no queue (1 % buckets)
    assert f["rps"] == pytest.approx(rate, rel=0.2)


def test_one_late_timeout_does_not_deflate_the_open_models_rate() -> None:
    """20 req/s for 1 s, all answered in 10 ms but one, which the client gave up on after a
    10 s timeout: the server kept up, so the achieved rate is 19 req/s, not 19 / 10 s."""
    rate, duration = 20, 1.0
    samples = [Sample(i / rate, 0.01, None, 1000) for i in range(rate)]
    samples[5] = Sample(5 / rate, 10.0, "timeout", None)
    span = open_model.answer_span_s(samples, 0.0, duration)
    f = summarize(measurement(samples, duration, 0.01, answer_span_s=span)).to_json()
    assert span == pytest.approx(duration)
    assert f["rps"] == pytest.approx((rate - 1) / duration)
    assert f["errors"] == {"timeout": 1}  # counted, only not stretching the span
    # an answer that comes late still counts the time it took
    late = [*samples[:-1], Sample(samples[-1].start, 2.0, None, 1000)]
    assert open_model.answer_span_s(late, 0.0, duration) == pytest.approx(0.95 + 2.0)


# ---- interference ----------------------------------------------------------------------

@pytest.mark.servers
@pytest.mark.parametrize("name", ["uvicorn", "granian"])
def test_interference_async_blocking_stalls_the_probe_and_blocking_does_not(
        name: str, tmp_path: Path, leak_token: str) -> None:
    """1 worker, 5 users in the background: `async def` + `time.sleep` blocks the event
    loop, so an unrelated /hello waits for it; `def` + `time.sleep` runs in the thread
    pool and /hello stays as fast as idle."""
    settings = {"probes": 5, "probe_interval_s": 0.02, "settle_s": 0.2}
    stall = make_cell(name, 1, "interference", "/async-blocking", 5, {"delay": DELAY},
                      **settings)
    pool = make_cell(name, 1, "interference", "/blocking", 5, {"delay": DELAY}, **settings)
    with serve(name, 1, tmp_path) as server:
        stalled = figures_of(stall, server)
        pooled = figures_of(pool, server)

    for f in (stalled, pooled):
        assert f["probe"] == "/hello"
        assert f["requests"] == 5 and f["ok"] == 5 and f["errors"] == {}
        assert f["idle_errors"] == 0
        assert set(f["idle_latency_ms"]) == LATENCY_KEYS
        assert f["idle_latency_ms"]["p50"] is not None
        assert f["idle_latency_ms"]["p50"] < 0.5 * DELAY * 1e3  # idle /hello is fast
        assert f["idle_histogram"]["counts"]  # the idle probes' own histogram
        assert f["background_requests"] > 0 and f["background_errors"] == 0

    delay_ms = DELAY * 1e3
    stalled_p50, pooled_p50 = stalled["latency_ms"]["p50"], pooled["latency_ms"]["p50"]
    assert stalled_p50 >= 0.5 * delay_ms
    assert pooled_p50 < 0.5 * delay_ms
    assert pooled_p50 <= 4 * pooled["idle_latency_ms"]["p50"] + 10
    assert stalled_p50 >= 5 * pooled_p50


# ---- the resource monitor --------------------------------------------------------------

def cpu_seconds_per_call(n: int, calls: int = 20) -> float:
    """What the /cpu endpoint's loop costs in this interpreter, in CPU seconds."""
    t0 = time.process_time()
    for _ in range(calls):
        total = 0
        for i in range(n):
            total += i * i
    return (time.process_time() - t0) / calls


@pytest.mark.servers
@pytest.mark.parametrize("name", ["uvicorn", "granian"])
def test_monitor_watches_every_process_of_a_two_worker_server(
        name: str, tmp_path: Path, leak_token: str) -> None:
    cell = make_cell(name, 2, "closed", "/cpu", 4, {"n": CPU_N}, engine="aiohttp",
                     duration_s=0.5,
                     warmup_s=0.1)
    with serve(name, 2, tmp_path) as server:
        group = server.pids()
        workers = set(server.ready_pids())
        window = Window(group)
        m = asyncio.run(closed.run(server.base_url, cell.experiment, cell.endpoint,
                                   cell.load, window))
    usage = window.usage
    assert usage is not None and usage is m.usage
    # the main process and both workers (and any helper of the server's), guard excluded
    assert len(workers) == 2 and workers <= set(group)
    assert usage.server_processes == len(group) >= 3

    f = summarize(m).to_json()
    assert f["ok"] > 0 and f["errors"] == {}
    assert {int(pid) for pid in f["pids"]} <= workers
    # the CPU is spent in the workers: per request at least half of what the loop costs
    # here (a window watching only the main process would see next to nothing)
    assert usage.server_cpu_s is not None
    assert usage.server_cpu_s / f["ok"] >= 0.5 * cpu_seconds_per_call(CPU_N)
    assert usage.server_peak_rss_mb is not None
    assert usage.server_peak_rss_mb >= 10 * len(workers)  # Python processes: tens of MB

    # the figures against the loop's own cost, measured here in-process: each request
    # costs at least half of it, and two workers use at most the machine's cores
    loop_s = cpu_seconds_per_call(CPU_N)
    assert f["server_cpu_s_per_1000"] >= 500 * loop_s
    assert 0 < f["server_cpu_pct"] <= 100 * len(os.sched_getaffinity(0)) * 1.05
    assert f["rps_per_server_core"] <= 2 / loop_s
    assert f["server_peak_rss_mb"] == usage.server_peak_rss_mb
    assert f["server_processes"] == usage.server_processes
    assert 0 < f["wall_s"] == usage.wall_s


@pytest.mark.servers
def test_runner_figures_carry_the_server_resources(tmp_path: Path, leak_token: str) -> None:
    """Through lab.run.runner.measure, as a cell runs: the server's resources are in the
    figures with the watched process count of the whole server."""
    cell = make_cell("uvicorn", 2, "closed", "/cpu", 2, {"n": CPU_N}, duration_s=0.4,
                     warmup_s=0.1)
    with serve("uvicorn", 2, tmp_path) as server:
        group = server.pids()
        f = figures_of(cell, server)
    assert f["ok"] > 0
    assert f["server_processes"] == len(group) >= 3
    assert f["server_cpu_pct"] is not None and f["server_cpu_pct"] > 0
    assert f["server_cpu_s_per_1000"] is not None and f["server_cpu_s_per_1000"] > 0
    assert f["server_peak_rss_mb"] is not None and f["server_peak_rss_mb"] > 0


BURN_S = 0.3
BURNER = f"""
import sys, time
t0 = time.process_time()
while time.process_time() - t0 < {BURN_S}:
    pass
print(time.process_time(), flush=True)
time.sleep(0.3)  # alive, idle, for a few of the monitor's samples
"""


def test_monitor_keeps_the_cpu_of_a_process_that_exits_inside_the_window(
        leak_token: str) -> None:
    """A worker that exits (crash, recycling) during the window used CPU until then; the
    server's CPU figure must not lose it (lab.load.monitor: "a worker that exited keeps only
    the CPU seen until then")."""
    with subprocess.Popen([sys.executable, "-c", BURNER], stdout=subprocess.PIPE,
                          text=True) as proc:
        try:
            window = Window([proc.pid])
            window.start()
            assert proc.stdout is not None
            burned = float(proc.stdout.readline())
            proc.wait(timeout=10)  # exited and reaped inside the window
            usage = window.end()
        finally:
            proc.kill()
    assert burned >= BURN_S
    assert usage.server_processes == 1
    assert usage.server_peak_rss_mb is not None and usage.server_peak_rss_mb > 0
    assert usage.server_cpu_s is not None
    assert usage.server_cpu_s >= 0.5 * BURN_S, (
        f"the window saw {usage.server_cpu_s:.2f} s of a process that burned {burned:.2f} s "
        "of CPU in it and then exited")


# ---- several client processes ----------------------------------------------------------

@pytest.mark.servers
def test_two_client_processes_on_a_closed_loop_merge_their_samples(
        tmp_path: Path, client_leak_token: str) -> None:
    """A whole cell through lab.run.runner.run_cell with clients = 2: the samples of both
    processes merge into one set of figures, and no client process is left."""
    cell = make_cell("uvicorn", 1, "closed", "/hello", 4, engine="aiohttp", duration_s=0.5,
                     warmup_s=0.2,
                     clients=2)
    ctx = context(tmp_path / "run")
    servers = Servers(ctx)
    try:
        record = run_cell(cell, ctx, servers).to_json()
    finally:
        servers.stop()
    assert record["failure"] is None, record["failure"]
    assert record["status"] == "ok"
    assert record["load"] == {"users": 4, "duration_s": 0.5, "warmup_s": 0.2, "clients": 2}
    f = record["figures"]
    assert f["clients"] == 2
    assert f["ok"] > 0 and f["errors"] == {} and f["requests"] == f["ok"]
    assert f["ok"] == sum(f["pids"].values())
    assert len(f["pids"]) == 1  # one worker answered everything
    assert f["rps"] > 0
    assert f["histogram"] is not None
    assert Histogram.from_json(f["histogram"]).total == f["ok"]
    # the client CPU is the sum over both processes; the busiest one is part of it
    assert 0 < f["client_cpu_busiest_pct"] <= f["client_cpu_pct"] + 1e-9
    stopped = ctx.run.servers()  # the server was stopped and says which cells it served
    assert [e["cells"] for e in stopped] == [[cell.id]]
    assert stopped[0]["exit_code"] is not None


@pytest.mark.servers
def test_two_client_processes_share_an_open_rate_and_both_count(
        tmp_path: Path, client_leak_token: str) -> None:
    """40 req/s for 0.5 s split over 2 processes: 20 requests scheduled, 10 by each, and
    every one of them answered and counted once."""
    rate, duration = 40, 0.5
    cell = make_cell("uvicorn", 1, "open", "/hello", rate, duration_s=duration,
                     warmup_s=0.0, clients=2)
    with serve("uvicorn", 1, tmp_path) as server:
        workers = set(server.ready_pids())
        f = figures_of(cell, server)
    n = int(rate * duration)
    assert f["clients"] == 2
    assert f["target_rps"] == pytest.approx(rate)
    assert f["scheduled"] == n
    assert f["ok"] == n and f["errors"] == {}
    assert sum(f["pids"].values()) == n
    assert {int(pid) for pid in f["pids"]} <= workers


# ---- wrk -------------------------------------------------------------------------------

@pytest.mark.servers
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_engine_gives_the_figures_of_the_lab_engines(
        tmp_path: Path, leak_token: str) -> None:
    hello_wrk = make_cell("uvicorn", 2, "closed", "/hello", 4, engine="wrk",
                          duration_s=1.0, warmup_s=0.0)
    hello_lab = make_cell("uvicorn", 2, "closed", "/hello", 4, engine="aiohttp",
                          duration_s=0.3, warmup_s=0.1)
    # a query parameter must reach the server: without it the sleep is 5 s, not 20 ms
    sleep_wrk = make_cell("uvicorn", 2, "closed", "/non-blocking", 4, {"delay": 0.02},
                          engine="wrk", duration_s=1.0, warmup_s=0.0)
    with serve("uvicorn", 2, tmp_path) as server:
        workers = set(server.ready_pids())
        main = server.main_pid()
        f = figures_of(hello_wrk, server)
        lab_f = figures_of(hello_lab, server)
        slept = figures_of(sleep_wrk, server)

    assert "client_threads" in f and "client_threads" not in lab_f  # wrk's own part
    assert set(lab_f) <= set(f)  # every figure the report reads for a closed cell
    # wrk's latencies come as a mergeable histogram, like the Python engines'
    assert Histogram.from_json(f["histogram"]).total >= f["ok"] > 0
    assert set(f["latency_ms"]) == set(lab_f["latency_ms"]) == LATENCY_KEYS
    assert f["ok"] > 0 and f["errors"] == {} and f["requests"] >= f["ok"]
    assert f["rps"] > 0
    lat = f["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    # every response was checked and counted per worker; only workers answered
    assert sum(f["pids"].values()) == f["ok"]
    assert {int(pid) for pid in f["pids"]} <= workers
    assert main not in workers  # uvicorn's main process supervises, it does not serve
    assert isinstance(f["client_cpu_pct"], float) and f["client_cpu_pct"] > 0
    assert f["server_processes"] >= 3

    assert slept["ok"] > 0 and slept["errors"] == {}
    assert slept["latency_ms"]["p50"] >= 20.0
    assert slept["latency_ms"]["p50"] < 1000.0


@pytest.mark.servers
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_counts_a_non_2xx_answer_as_an_error_not_a_success(
        tmp_path: Path, leak_token: str) -> None:
    """/cpu?n=0 answers 422 (n must be ≥ 1): fast, and wrong. wrk alone would time it as a
    request; the lab counts it as an error of its kind and no success."""
    cell = make_cell("uvicorn", 1, "closed", "/cpu", 4, {"n": 0}, engine="wrk",
                     duration_s=1.0, warmup_s=0.0)
    with serve("uvicorn", 1, tmp_path) as server:
        f = figures_of(cell, server)
    assert f["ok"] == 0 and f["rps"] == 0
    assert set(f["errors"]) == {"http_422"} and f["errors"]["http_422"] > 100
    assert f["error_rate"] == 1.0
    assert f["latency_includes_errors"] is True


@pytest.mark.servers
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_is_bounded_by_the_cell_timeout_and_leaves_nothing(
        tmp_path: Path, leak_token: str) -> None:
    """A 10 s wrk cell with a 1.5 s cell timeout ends as a timeout within a few seconds,
    and its process group is gone (leak_token)."""
    cell = make_cell("uvicorn", 1, "closed", "/hello", 2, engine="wrk",
                     duration_s=10.0, warmup_s=0.0)
    ctx = replace(context(tmp_path / "run"), lab=replace(LAB, cell_timeout_s=1.5))
    with serve("uvicorn", 1, tmp_path) as server:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            measure(cell, server, ctx, engine_for(cell)).to_json()
        took = time.monotonic() - t0
    assert took < 5.0  # and leak_token checks that wrk and its guard are gone


# ---- latency over repeats in the report ------------------------------------------------

def _samples(latencies_s: list[float]) -> list[Sample]:
    return [Sample(float(i), lat, None, 4242) for i, lat in enumerate(latencies_s)]


def _figures(latencies_s: list[float]) -> dict[str, Any]:
    return summarize(measurement(_samples(latencies_s), wall_s=1.0, client_cpu_s=0.1)).to_json()


def test_row_latency_merges_the_histograms_of_every_repeat_exactly() -> None:
    repeats = [
        [0.001 * (1 + i % 10) for i in range(200)],      # 1–10 ms
        [0.050 + 0.0001 * i for i in range(100)],        # 50–60 ms
        [0.100 + 0.001 * i for i in range(51)],          # 100–150 ms
    ]
    row = Row("uvicorn-w1", "uvicorn", 1, {}, get("closed").headline,
              (*(result(_figures(r)) for r in repeats),
               # a failed repeat is not part of the latency
               result(None, "failed", failure={"kind": "server_crashed", "reason": "y"})))

    everything = Histogram()
    for r in repeats:
        for v in r:
            everything.record(v)
    expected = latency_figures(everything)
    got = row.latency()
    assert set(got) == LATENCY_KEYS | {"n"}
    assert got["n"] == 351
    for key in ("p50", "p90", "max"):
        assert got[key] == expected[key], key
    # 351 samples cannot state a p99 (needs 1,000) or a p99.9 (needs 10,000)
    assert got["p99"] is None and got["p99.9"] is None
    assert got["mean"] == pytest.approx(expected["mean"])
    assert got["max"] == pytest.approx(150.0)

    # not any one repeat's figures: the merge moves the percentiles
    for f in row.ok:
        assert f.latency_ms != got
    all_values = sorted(v for r in repeats for v in r)
    nearest_p50 = all_values[math.ceil(0.5 * len(all_values)) - 1] * 1e3
    assert got["p50"] == pytest.approx(nearest_p50, rel=0.01)


def test_row_latency_without_histograms_shows_the_typical_repeat() -> None:
    """wrk gives percentiles only: the row shows the repeat nearest the median."""
    figures = [_figures([0.01] * 10), _figures([0.02] * 10), _figures([0.03] * 10)]
    for f, rps in zip(figures, (100.0, 200.0, 300.0), strict=True):
        f["histogram"] = None
        f["rps"] = rps
    row = Row("uvicorn-w1", "uvicorn", 1, {}, get("closed").headline,
              tuple(result(f) for f in figures))
    got = row.latency()
    assert got["p50"] == pytest.approx(figures[1]["latency_ms"]["p50"])
    assert got["n"] == 10 and got["p99"] is None  # 10 samples: no p99


@pytest.mark.parametrize(("n", "p99_stated", "p999_stated"), [
    (999, False, False), (1000, True, False), (9999, True, False), (10_000, True, True)])
def test_percentiles_are_stated_only_from_enough_samples(
        n: int, p99_stated: bool, p999_stated: bool) -> None:
    row = Row("uvicorn-w1", "uvicorn", 1, {}, get("closed").headline,
              (result(_figures([0.001 + 1e-6 * i for i in range(n)])),))
    got = row.latency()
    assert (got["p99"] is not None, got["p99.9"] is not None) == (p99_stated, p999_stated)
    assert got["p50"] is not None and got["n"] == n
