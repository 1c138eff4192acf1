"""What ``run`` shows: a live display on a terminal, plain lines elsewhere, nothing with
--quiet."""

import io
import tomllib
from pathlib import Path

import pytest

from lab.matrix.config import Cell, parse
from lab.run import progress
from tests.conftest import run_lab

CONFIG = """
[servers.uvicorn]
workers = [1]

[servers.granian]
workers = [1]

[[experiments]]
name = "slow"
kind = "burst"
endpoints = ["/async-blocking"]
requests = [10]
params = { delay = 1.0 }
"""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def cells() -> list[Cell]:
    return parse(tomllib.loads(CONFIG)).cells()


def test_without_a_tty_a_plain_line_per_cell_with_an_eta_that_learns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """CI logs and pipes saw only the up-front estimate, a floor for an app it does not
    know (2× low for real apps): each cell's line now carries the learned ETA."""
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    shown = progress.display(cells(), "configuration", stream=out)
    assert isinstance(shown, progress.Plain)
    shown.started(1, 2, cells()[0])
    now[0] += 3 * progress.Eta(cells()[:1], "configuration").left_s(0)  # 3× its estimate
    shown.line("[1/2] uvicorn-w1-slow-async-blocking-n10: 30.0 s wall")
    shown.started(2, 2, cells()[1])
    shown.line("[2/2] granian-w1-slow-async-blocking-n10: 10.0 s wall")
    shown.close()
    first, last = out.getvalue().splitlines()
    assert first.startswith("[1/2] uvicorn-w1-slow-async-blocking-n10: 30.0 s wall · ETA ")
    minutes, seconds = first.rsplit("ETA ", 1)[1].split(":")
    left = int(minutes) * 60 + int(seconds)
    assert 3 * 10 < left < 3 * 12.5  # the second cell (10 × 1 s), at the first one's pace
    assert last == "[2/2] granian-w1-slow-async-blocking-n10: 10.0 s wall"  # nothing left


def test_quiet_prints_only_warnings_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    out = Terminal()
    shown = progress.display(cells(), "configuration", quiet=True, stream=out)
    shown.started(1, 2, cells()[0])
    shown.line("[1/2] uvicorn-w1-slow-async-blocking-n10: 10.0 s wall")
    shown.line("warning: results.jsonl line 3 is truncated")
    shown.close()
    assert out.getvalue() == ""
    assert capsys.readouterr().err == "warning: results.jsonl line 3 is truncated\n"


def test_on_a_terminal_the_live_display_shows_cell_count_and_eta() -> None:
    out = Terminal()
    shown = progress.display(cells(), "configuration", stream=out)
    assert isinstance(shown, progress.Live)
    shown.started(1, 2, cells()[0])
    shown.line("[1/2] uvicorn-w1-slow-async-blocking-n10: 10.0 s wall")
    shown.started(2, 2, cells()[1])
    shown.progress.refresh()
    shown.close()
    text = out.getvalue()
    assert "granian-w1-slow-async-blocking-n10" in text
    assert "1/2" in text and "ETA" in text
    assert "[1/2] uvicorn-w1-slow-async-blocking-n10: 10.0 s wall" in text


def test_eta_learns_the_pace_of_the_cells_done(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    cs = cells()
    eta = progress.Eta(cs, "configuration")
    first = eta.left_s(0)  # the estimate: two cells of 10 × 1 s plus server starts
    assert 20 < first < 25
    now[0] += first  # the first cell took twice its estimate
    assert eta.left_s(1) == pytest.approx(first, rel=0.01)
    assert progress.clock(3725) == "1:02:05" and progress.clock(65) == "1:05"


@pytest.mark.servers
def test_quiet_run_prints_only_the_report_path(tmp_path: Path) -> None:
    config = tmp_path / "one.toml"
    config.write_text('[servers.uvicorn]\nworkers = [1]\n\n[[experiments]]\nname = "one"\n'
                      'kind = "burst"\nendpoints = ["/hello"]\nrequests = [2]\n')
    result = run_lab("run", config, "--out", tmp_path, "--run-id", "quiet", "--quiet",
                     timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"report: {tmp_path / 'quiet' / 'report.md'}\n"
