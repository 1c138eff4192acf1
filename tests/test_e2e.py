"""``python -m lab run`` on a tiny matrix against all three real servers, once per module:
exit code, files, one line per cell, the physics of the article's endpoints, the report's
findings, and no process left behind."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from lab.store.results import RunDir
from tests.conftest import CONFIGS, ROOT, TOKEN_ENV, carrying, json_lines, leftovers, run_lab

pytestmark = pytest.mark.servers

CONFIG = CONFIGS / "e2e.toml"
SERVER_IDS = ["uvicorn-w1", "hypercorn-w1", "granian-w1", "granian-w2"]
DELAY = 0.05
N = 10
CELLS = 3 * len(SERVER_IDS)  # 2 burst endpoints + 1 closed endpoint, per configuration


@dataclass
class E2E:
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float
    run_id: str
    out: Path
    run: RunDir
    records: list[dict[str, Any]]
    report: str
    stray: list[str]


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def stray_processes(token: str, run_id: str) -> list[str]:
    """Processes of this run still alive: any carrying the run's environment token (the
    lab, its ``lab.supervise.guard`` processes, servers, workers) or naming the run in their command
    line. Guards of other sessions on this machine lack the token and are not counted."""
    mine = set(carrying(token))
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE or p.pid == os.getpid():
            continue
        cmdline = " ".join(p.info["cmdline"] or [])
        if p.pid in mine or run_id in cmdline:
            found.append(f"{p.pid}: {cmdline}")
    return found


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> E2E:
    out = tmp_path_factory.mktemp("reports")
    run_id = f"e2e-{uuid.uuid4().hex[:12]}"
    token = uuid.uuid4().hex
    t0 = time.monotonic()
    result = run_lab("run", CONFIG, "--out", out, "--run-id", run_id, timeout=240,
                     env={**os.environ, TOKEN_ENV: token})
    elapsed = time.monotonic() - t0
    left = leftovers(token, wait_s=3.0)
    stray = stray_processes(token, run_id)
    for pid in left:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    run = RunDir(out / run_id)
    report = run.path / "report.md"
    return E2E(result.returncode, result.stdout, result.stderr, elapsed, run_id, out, run,
               json_lines(run), report.read_text() if report.is_file() else "", stray)


def records_for(e2e: E2E, endpoint: str) -> dict[str, dict[str, Any]]:
    return {r["server_id"]: r for r in e2e.records if r["endpoint"] == endpoint}


def test_run_exits_0_and_writes_the_report(e2e: E2E) -> None:
    assert e2e.returncode == 0, e2e.stdout + e2e.stderr
    assert "Traceback" not in e2e.stdout + e2e.stderr
    assert (e2e.run.path / "report.md").is_file()
    assert e2e.elapsed_s < 120
    for sid in SERVER_IDS:
        assert sid in e2e.report
    assert "## Failed cells" not in e2e.report
    assert f"cells: {CELLS} finished ({CELLS} ok, 0 failed) of {CELLS} planned" in e2e.report


def test_the_first_screen_has_answers_and_a_chart_of_this_run(e2e: E2E) -> None:
    """A real tiny run: In short opens the report, and every chart it links is a PNG
    beside report.md with something drawn in it."""
    short = e2e.report.split("## In short", 1)[1].split("\n## ", 1)[0]
    assert e2e.report.index("## In short") < e2e.report.index("## This run")
    assert "**`def` or `async def`?**" in short and "**Which server?**" in short
    links = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", e2e.report)
    assert "chart-closed-hello-hello-c4.png" in short
    assert {"chart-burst-article.png", "chart-closed-hello-hello-c4.png"} <= set(links)
    for name in links:
        data = (e2e.run.path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_progress_without_a_tty_is_a_plain_line_per_cell(e2e: E2E) -> None:
    """stdout is a pipe here: no live display, no terminal escapes, one line per cell."""
    assert "\x1b[" not in e2e.stdout
    lines = [x for x in e2e.stdout.splitlines() if x.startswith("[")]
    assert [x.split("]", 1)[0] for x in lines] == [f"[{i}/{CELLS}" for i in
                                                  range(1, CELLS + 1)]


def test_one_results_line_per_cell_in_validate_order(e2e: E2E) -> None:
    validate = run_lab("validate", CONFIG)
    assert validate.returncode == 0, validate.stderr
    lines = validate.stdout.strip().splitlines()
    assert lines[-1].startswith(f"{CONFIG}: ok — {CELLS} cells, estimated ")
    assert lines[-1].endswith(" min")
    ids = lines[:-1]
    assert len(ids) == CELLS
    assert [r["cell_id"] for r in e2e.records] == ids
    assert len(e2e.run.results.read_text().splitlines()) == CELLS
    assert {r["server_id"] for r in e2e.records} == set(SERVER_IDS)
    for r in e2e.records:
        assert r["status"] == "ok", (r["cell_id"], r["failure"])
        assert r["run_id"] == e2e.run_id


def test_every_request_answered(e2e: E2E) -> None:
    for r in e2e.records:
        f = r["figures"]
        assert f["errors"] == {}, r["cell_id"]
        assert f["ok"] == f["requests"] > 0, r["cell_id"]
        assert 1 <= len(f["pids"]) <= r["workers"], r["cell_id"]


def test_servers_started_and_stopped_cleanly(e2e: E2E) -> None:
    """One server start per configuration (lab.restart's default), serving all its cells,
    each started and stopped cleanly."""
    for r in e2e.records:
        assert r["process"]["argv"][2] == r["server"], r["cell_id"]  # python -m <server>
    checks = [s for s in e2e.run.servers() if s["app_check"]]
    starts = [s for s in e2e.run.servers() if not s["app_check"]]
    assert len(checks) == 1 and checks[0]["cells"] == []  # asked each endpoint, then gone
    assert len(starts) == len(SERVER_IDS)
    served = [cell for s in starts for cell in s["cells"]]
    assert sorted(served) == sorted(r["cell_id"] for r in e2e.records)
    for s in starts:
        assert len(s["cells"]) == CELLS // len(SERVER_IDS)
        assert 0 < s["start_to_ready_s"] < 10 and s["killed"] is False, s


def test_non_blocking_overlaps(e2e: E2E) -> None:
    rows = records_for(e2e, "/non-blocking")
    assert set(rows) == set(SERVER_IDS)
    for sid, r in rows.items():
        wall = r["figures"]["wall_s"]
        assert DELAY <= wall < 5 * DELAY, f"{sid}: {wall:.3f} s for {N} × {DELAY} s"


def test_async_blocking_runs_one_after_another_per_worker(e2e: E2E) -> None:
    rows = records_for(e2e, "/async-blocking")
    assert set(rows) == set(SERVER_IDS)
    for sid, r in rows.items():
        f = r["figures"]
        busiest = max(f["pids"].values())
        assert sum(f["pids"].values()) == N
        if r["workers"] == 1:
            assert busiest == N
            assert f["wall_s"] >= 0.9 * N * DELAY, f"{sid}: {f['wall_s']:.3f} s"
        # whatever the split, the busiest worker slept its share one sleep after another
        assert f["wall_s"] >= 0.9 * busiest * DELAY, f"{sid}: {f['wall_s']:.3f} s"


def test_closed_loop_on_hello(e2e: E2E) -> None:
    rows = records_for(e2e, "/hello")
    assert set(rows) == set(SERVER_IDS)
    for sid, r in rows.items():
        f = r["figures"]
        assert r["load"] | {"users": 4, "duration_s": 0.5, "warmup_s": 0.2} == r["load"]
        assert 0.49 <= f["wall_s"] < 1.5, sid
        assert f["rps"] > 50, sid
        assert f["rps"] == pytest.approx(f["ok"] / f["wall_s"])
        assert f["latency_ms"]["p50"] is not None and f["latency_ms"]["p50"] < 1000


def findings(report: str) -> list[str]:
    body = report.split("## Findings", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line.startswith("- ")]


def test_report_findings(e2e: E2E) -> None:
    lines = findings(e2e.report)
    async_blocking = [x for x in lines if x.startswith("- **/async-blocking**")]
    non_blocking = [x for x in lines if x.startswith("- **/non-blocking**")]
    assert len(async_blocking) == 1 and len(non_blocking) == 1
    assert "ran one after another on every configuration" in async_blocking[0]
    assert "overlapped on every configuration" in non_blocking[0]
    workers = e2e.report.split("**How many workers?**", 1)[1].split("\n## ", 1)[0]
    scaling = [x for x in workers.splitlines() if x.startswith("- `/hello`")]
    assert len(scaling) == 1 and "granian ×" in scaling[0] and "at 2 workers" in scaling[0]


def test_report_rebuilds_identically_from_files(e2e: E2E) -> None:
    result = run_lab("report", e2e.run.path)
    assert result.returncode == 0, result.stderr
    assert (e2e.run.path / "report.md").read_text() == e2e.report


def test_no_process_left_behind(e2e: E2E) -> None:
    assert e2e.stray == []


# ---- failures, interruption and a killed lab --------------------------------------------

def test_a_crashing_cell_is_recorded_and_the_matrix_goes_on(
        tmp_path: Path, leak_token: str) -> None:
    result = run_lab("run", CONFIGS / "crash.toml", "--out", tmp_path, "--run-id", "crash",
                     timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    records = {r["cell_id"]: r for r in json_lines(RunDir(tmp_path / "crash"))}
    assert list(records) == ["uvicorn-w1-crash-crash-n2", "uvicorn-w1-crash-hello-n2"]
    crashed, hello = records.values()
    assert crashed["status"] == "failed"
    assert crashed["failure"]["kind"] in ("server_crashed", "all_requests_failed")
    assert crashed["failure"]["reason"]
    assert hello["status"] == "ok" and hello["figures"]["ok"] == 2
    md = (tmp_path / "crash" / "report.md").read_text()
    assert "## Failed cells" in md and "`uvicorn-w1-crash-crash-n2`" in md
    assert leftovers(leak_token) == []


def test_interrupted_run_stops_servers_and_resumes(tmp_path: Path, leak_token: str) -> None:
    config = CONFIGS / "interrupt.toml"
    run = RunDir(tmp_path / "intr")
    lab = subprocess.Popen(
        [sys.executable, "-m", "lab", "run", str(config), "--out", str(tmp_path),
         "--run-id", "intr"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, encoding="utf-8")
    try:
        deadline = time.monotonic() + 60
        while not (run.results.is_file() and run.results.read_text().count("\n") >= 1):
            assert lab.poll() is None, lab.communicate()
            assert time.monotonic() < deadline, "the first cell never finished"
            time.sleep(0.02)
        t0 = time.monotonic()
        lab.send_signal(signal.SIGINT)
        stdout, stderr = lab.communicate(timeout=30)
        stopped_s = time.monotonic() - t0
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.communicate()
    assert lab.returncode == 130, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert "--resume" in stderr
    assert stopped_s < 10
    assert leftovers(leak_token) == []  # the running server was stopped, not orphaned
    assert json.loads((run.path / "run.json").read_text())["state"] == "interrupted"
    done_before = [r["cell_id"] for r in json_lines(run)]
    assert 1 <= len(done_before) < 3
    assert "interrupted" in (run.path / "report.md").read_text()

    resumed = run_lab("run", "--resume", run.path, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    ids = [r["cell_id"] for r in json_lines(run)]
    assert ids[:len(done_before)] == done_before
    assert sorted(ids) == sorted(["uvicorn-w1-slow-async-blocking-n5",
                                  "hypercorn-w1-slow-async-blocking-n5",
                                  "granian-w1-slow-async-blocking-n5"])
    assert json.loads((run.path / "run.json").read_text())["state"] == "finished"
    assert leftovers(leak_token) == []


def test_a_killed_lab_leaves_no_server(tmp_path: Path, leak_token: str) -> None:
    lab = subprocess.Popen(
        [sys.executable, "-m", "lab", "run", str(CONFIGS / "sigkill.toml"), "--out",
         str(tmp_path), "--run-id", "killed"], cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        workers: list[int] = []
        while len(workers) < 2:  # both uvicorn workers are serving the 20 s burst
            assert lab.poll() is None and time.monotonic() < deadline
            workers = [p for p in carrying(leak_token) if b"spawn_main" in cmdline(p)]
            time.sleep(0.05)
        time.sleep(1.0)  # the burst is under way
        assert carrying(leak_token)
        lab.kill()
        lab.wait(timeout=10)
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
    # the guard sees its pipe close, SIGTERMs the server, SIGKILLs the group after 2 s
    assert leftovers(leak_token, wait_s=10.0) == []
