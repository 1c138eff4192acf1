"""A new experiment kind is one module plus its registration: this one, ``sequential``
(N requests one after another on one connection), is defined here, in the test suite, and
run end to end by the real CLI against a real server; the registry refuses a kind that
could not work."""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from lab.kinds import Headline, Kind, kinds, register
from lab.load.engines import ENGINES
from lab.load.monitor import Window
from lab.load.samples import Measurement
from lab.matrix.config import PYTHON_ENGINES, Experiment
from lab.matrix.endpoint import Endpoint
from lab.report.groups import Comparison, Row
from lab.report.tables import Column
from tests.conftest import ROOT, TOKEN_ENV, leftovers, run_lab

pytestmark = pytest.mark.servers


async def run_sequential(base_url: str, exp: Experiment, endpoint: Endpoint, n: int,
                         window: Window) -> Measurement:
    """The kind's runner: n requests, each sent when the one before was answered."""
    client = ENGINES[exp.engine].client(base_url, exp.params, 1, exp.timeout_s)
    try:
        await client.connect(1, exp.ready)
        window.start()
        samples = [await client.send(endpoint) for _ in range(n)]
        usage = window.end()
    finally:
        await client.aclose()
    return Measurement(samples, usage)


def columns(comp: Comparison) -> list[Column]:
    def p50(row: Row) -> str:
        return f"{row.spread(lambda f: f.latency_ms.get('p50')).median:.2f}"

    return [Column("one-at-a-time p50 ms", p50, main=True),
            Column("requests", lambda r: str(sum(f.ok for f in r.ok)))]


SEQUENTIAL = Kind(
    name="sequential",
    help="N requests one after another on one connection; the slowest tenth",
    load_key="requests", letter="s", settings=(), engines=PYTHON_ENGINES,
    default_engine="rawhttp",
    headline=Headline("sequential p90 ms", lambda f: f.latency_ms.get("p90"), False),
    estimate_s=lambda cell: 0.1,
    run_at="tests.test_kinds:run_sequential", columns_at="tests.test_kinds:columns",
    charts_at="tests.test_kinds:no_charts",
)


def no_charts(*_: object) -> list[None]:
    return []


def main() -> int:
    """``python -m lab`` with this module's kind registered, as a team's own script would."""
    from lab.cli import main as lab_main

    register(SEQUENTIAL)
    return lab_main(sys.argv[1:])


CONFIG = """
[lab]
start_timeout_s = 20

[servers.uvicorn]
workers = [1, 2]

[[experiments]]
name = "steps"
kind = "sequential"
endpoints = ["/hello"]
requests = [5, 20]
"""


def test_a_kind_defined_in_its_own_module_runs_end_to_end(tmp_path: Path) -> None:
    config = tmp_path / "seq.toml"
    config.write_text(CONFIG)
    token = uuid.uuid4().hex
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "import sys, tests.test_kinds as k; sys.exit(k.main())",
         "run", str(config), "--out", str(tmp_path), "--run-id", "seq", "--yes"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, TOKEN_ENV: token})
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.monotonic() - t0 < 120
    assert leftovers(token) == []
    lines = [json.loads(x) for x in (tmp_path / "seq" / "results.jsonl").read_text()
             .splitlines()]
    assert sorted(x["cell_id"] for x in lines) == [
        "uvicorn-w1-steps-hello-s20", "uvicorn-w1-steps-hello-s5",
        "uvicorn-w2-steps-hello-s20", "uvicorn-w2-steps-hello-s5"]
    for x in lines:  # its runner ran: every request answered, one after another
        assert x["status"] == "ok" and x["kind"] == "sequential"
        assert x["figures"]["ok"] == x["load"]["requests"]
        assert x["figures"]["errors"] == {}
    report = (tmp_path / "seq" / "report.md").read_text()
    # Its heading, headline and own column in the report, one table per load.
    assert "(sequential: N requests one after another on one connection" in report
    assert report.count("| configuration   | sequential p90 ms") == 2
    assert report.count("one-at-a-time p50 ms") == 2
    # Without the module that registers the kind, its results are named, never a traceback.
    plain = run_lab("report", tmp_path / "seq")
    assert plain.returncode == 2, plain.stderr
    assert "line 1 is of experiment kind 'sequential', which this lab has not registered" \
        in plain.stderr and "Traceback" not in plain.stderr


def test_the_registry_refuses_a_kind_that_could_not_work() -> None:
    with pytest.raises(ValueError, match="registered already"):
        register(Kind(**{**SEQUENTIAL.__dict__, "name": "closed"}))
    with pytest.raises(ValueError, match="needs a split"):
        Kind(**{**SEQUENTIAL.__dict__, "settings": ("clients",)})
    with pytest.raises(ValueError, match="not one of its engines"):
        Kind(**{**SEQUENTIAL.__dict__, "default_engine": "wrk"})
    assert "sequential" not in kinds()  # registering is a team's choice, never a side effect

