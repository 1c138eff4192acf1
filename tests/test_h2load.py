"""HTTP/2 cells against real servers on 127.0.0.1, as the runner runs them (`run_cell`):
each server that speaks h2c is measured by h2load, which reports having spoken h2c; a
server that cannot serve h2 gets a "not served" cell without being started; a wrong status
is an error of its kind. Windows are short and every bound is wide (a shared machine)."""

import shutil
import time
import tomllib
from pathlib import Path

import pytest

from lab.load.stats import MachineShare
from lab.matrix.config import Matrix, parse
from lab.run.runner import Context, Servers, run_cell
from lab.store.results import RunDir
from lab.store.schema import NOT_SERVED, FailureKind, Result
from lab.supervise.interrupt import Interrupts

pytestmark = [pytest.mark.servers,
              pytest.mark.skipif(shutil.which("h2load") is None,
                                 reason="h2load is not installed (nghttp2-client)")]

CONFIG = """
[lab]
start_timeout_s = 20
cell_timeout_s = 30

[servers.uvicorn]
workers = [1]

[servers.hypercorn]
workers = [1]

[servers.granian]
workers = [1]

[servers.gunicorn]
workers = [1]

[[experiments]]
name = "h2"
kind = "closed"
endpoints = ["/hello", { path = "/cpu", query = { n = 0 }, name = "bad" }]
users = [8]
http = "2"
streams = [4]
duration_s = 0.5
warmup_s = 0.2
# hypercorn keeps a stream's request in flight after h2load let go of it at the end of a
# run (measured: the drain waited out its 60 s bound): bound the wait with a short timeout
timeout_s = 2
"""


def run(tmp_path: Path, matrix: Matrix) -> list[Result]:
    (tmp_path / "logs").mkdir()
    ctx = Context(matrix.lab, RunDir(tmp_path), Interrupts(), MachineShare(2, shared=True))
    servers = Servers(ctx)
    try:
        return [run_cell(c, ctx, servers) for c in matrix.cells()]
    finally:
        servers.stop()


def test_h2_cells_speak_h2c_where_served_and_say_not_served_elsewhere(
        tmp_path: Path, leak_token: str) -> None:
    by = {(r.server, r.cell_id.split("-")[-2]): r
          for r in run(tmp_path, parse(tomllib.loads(CONFIG)))}

    for server in ("uvicorn", "hypercorn", "granian"):
        r = by[server, "hello"]
        assert r.status == "ok", (server, r.failure)
        assert r.engine == "h2load" and r.engine_requested == "auto"
        f = r.figures
        assert f is not None and f.h2load is not None
        assert f.h2load.protocol == "h2c"  # from h2load's own report
        assert f.errors == {} and f.ok == f.requests > 0
        # plausible: hypercorn, the slowest, answers ~1–2k req/s here; a starved one > 100
        assert 100 < f.rps < 100_000, (server, f.rps)
        assert f.histogram is not None and f.histogram.total == f.ok
        assert 0 < f.latency_ms["p50"] <= f.latency_ms["p99"] <= f.latency_ms["max"]
        assert f.client_cpu_pct and f.client_cpu_pct > 0  # h2load's own, from its guard
        assert not f.pids  # h2load cannot read the worker header
        # /cpu?n=0 answers 422: an error of its kind, never a success
        bad = by[server, "bad"]
        assert bad.status == "failed" and bad.figures is not None
        assert set(bad.figures.errors) == {"http_422"} and bad.figures.ok == 0

    for endpoint in ("hello", "bad"):
        refused = by["gunicorn", endpoint]
        assert refused.status == NOT_SERVED and refused.process is None  # never started
        assert refused.failure is not None
        assert refused.failure.reason.startswith("not served: gunicorn does not speak h2c (")
    # uvicorn's h2 is its zttp protocol's, started for these cells
    uvicorn = by["uvicorn", "hello"].process
    assert uvicorn is not None and uvicorn.argv[-3:] == ("--http", "zttp", "--http2")


def test_h2load_is_bounded_by_the_cell_timeout_and_leaves_nothing(
        tmp_path: Path, leak_token: str) -> None:
    """A 10 s h2load cell with a 1.5 s cell timeout ends as a timeout within a few seconds,
    and its process group is gone (leak_token)."""
    config = CONFIG.replace("cell_timeout_s = 30", "cell_timeout_s = 1.5") \
        .replace("duration_s = 0.5", "duration_s = 10").replace("warmup_s = 0.2", "warmup_s = 0")
    t0 = time.monotonic()
    results = run(tmp_path, parse(tomllib.loads(config)).only(servers={"granian"}))
    took = time.monotonic() - t0
    assert [r.failure.kind if r.failure else None for r in results] == \
        [FailureKind.CELL_TIMEOUT] * 2
    assert took < 15.0  # a server start, 1.5 s of h2load per cell, a restart, a stop
