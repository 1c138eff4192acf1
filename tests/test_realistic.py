"""apps.realistic through the real CLI: a database and an upstream API, each called three
ways, with the upstream started by the lab as a service of the run. The physics: the
`async def` traps run on the event loop, so they serialise per worker and stall an
unrelated request; the `def` and async ways do not."""

import os
import uuid

import pytest

from lab.store.results import RunDir
from tests.conftest import TOKEN_ENV, json_lines, leftovers, run_lab

pytestmark = pytest.mark.servers

DELAY = 0.05
N = 20

CONFIG = f"""
[lab]
app = "apps.realistic:app"

[services.upstream]
app = "apps.upstream:app"
url_env = "UPSTREAM_URL"

[servers.uvicorn]
workers = [1]

[[experiments]]
name = "up"
kind = "burst"
endpoints = ["/upstream/async", "/upstream/def", "/upstream/async-trap"]
requests = [{N}]
params = {{ delay = {DELAY} }}

[[experiments]]
name = "stall"
kind = "interference"
endpoints = ["/db/def", "/db/async-trap", "/upstream/async", "/upstream/async-trap"]
background = [8]
params = {{ delay = {DELAY} }}
probe = "/hello"
probes = 8
"""


@pytest.fixture(scope="module")
def realistic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("realistic")
    path = out / "realistic.toml"
    path.write_text(CONFIG)
    token = uuid.uuid4().hex
    result = run_lab("run", path, "--out", out, "--run-id", "r", timeout=240,
                     env={**os.environ, TOKEN_ENV: token})
    assert result.returncode == 0, result.stdout + result.stderr
    assert leftovers(token) == []  # the measured server and the upstream service
    run = RunDir(out / "r")
    assert [s["cells"] for s in run.servers()]  # the measured server started and stopped
    assert (out / "r" / "logs" / "service-upstream.log").is_file()
    return {r["cell_id"]: r["figures"] for r in json_lines(run)}


def test_the_upstream_trap_serialises_and_the_other_ways_overlap(realistic: dict) -> None:
    serial = N * DELAY
    assert realistic["uvicorn-w1-up-upstream_async-trap-n20"]["wall_s"] >= 0.9 * serial
    assert realistic["uvicorn-w1-up-upstream_async-n20"]["wall_s"] < 0.5 * serial
    assert realistic["uvicorn-w1-up-upstream_def-n20"]["wall_s"] < 0.5 * serial


def test_the_traps_stall_an_unrelated_request_and_the_other_ways_do_not(
        realistic: dict) -> None:
    def probe(endpoint: str) -> float:
        return float(realistic[f"uvicorn-w1-stall-{endpoint}-bg8"]["latency_ms"]["p50"])

    # upstream trap: the probe waits for calls of 50 ms queued on the loop; with the shared
    # AsyncClient the loop only waits for the answers (ratios: this machine is shared)
    assert probe("upstream_async-trap") >= 0.5 * DELAY * 1e3
    assert probe("upstream_async-trap") > 5 * probe("upstream_async")
    # database trap: queued ~4 ms queries; `def` runs them in threads, the loop stays free
    assert probe("db_async-trap") > 2 * probe("db_def")

