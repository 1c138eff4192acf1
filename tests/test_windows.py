"""A closed-loop window that the server cannot fill, through the real CLI: the warm-up's
left-over requests do not eat the window, and a window with no answer says what happened."""

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.store.results import RunDir
from tests.conftest import json_lines, leftovers, run_lab

pytestmark = [pytest.mark.servers,
              pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")]

CONFIG = """
[lab]
app = "apps.article:app"

[servers.uvicorn]
workers = [1]

[[experiments]]
name = "w"
kind = "closed"
engine = "wrk"
endpoints = ["{endpoint}"]
users = [{users}]
duration_s = 1
warmup_s = 1
timeout_s = 5
params = {{ delay = {delay} }}
"""


def closed_cell(write_config: Callable[..., Path], tmp_path: Path, endpoint: str, users: int,
                delay: float) -> dict[str, object]:
    path = write_config(CONFIG.format(endpoint=endpoint, users=users, delay=delay))
    done = run_lab("run", path, "--out", tmp_path, "--run-id", "w", timeout=120)
    assert "Traceback" not in done.stdout + done.stderr
    [record] = json_lines(RunDir(tmp_path / "w"))
    return record


def test_the_warm_ups_left_over_requests_finish_before_the_window_opens(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    """16 users of an endpoint that holds the event loop 0.1 s: when wrk's warm-up run
    ends, up to 16 of its requests (1.6 s of work) are still queued in the one worker.
    Measured at once, the 1 s window saw no answer at all; the lab now waits for the
    worker to empty (its in-flight meter) and the window gets its ≈ 10 answers."""
    record = closed_cell(write_config, tmp_path, "/async-blocking", 16, 0.1)
    assert record["status"] == "ok", record["failure"]
    figures = record["figures"]
    assert isinstance(figures, dict)
    assert figures["ok"] >= 3  # 10 per second at most, minus the window's first queue
    assert figures["warmup_settle_s"] > 0.3  # it did wait for the backlog
    assert leftovers(leak_token) == []


def test_a_window_that_no_response_fits_in_says_so(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    """Each request takes 1.5 s and the window is 1 s: it read "all 0 requests failed: {}"."""
    record = closed_cell(write_config, tmp_path, "/non-blocking", 2, 1.5)
    failure = record["failure"]
    assert isinstance(failure, dict) and failure["kind"] == "all_requests_failed"
    assert "no response completed within the 1 s window" in failure["reason"]
    assert "{}" not in failure["reason"]
    assert leftovers(leak_token) == []
