"""Hostile inputs and unlucky moments, each through the real CLI: the exit code, one clear
line and no traceback, nothing left running, no finished result lost or duplicated, and
run.json in a true state."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.store.results import RunDir
from tests.conftest import ROOT, json_lines, leftovers, run_lab

pytestmark = pytest.mark.servers

T = """
[lab]
stop_grace_s = 2
{lab}

[servers.uvicorn]
workers = [1]
{options}

[[experiments]]
name = "t"
kind = "closed"
engine = "aiohttp"
endpoints = ["/hello", "/non-blocking"]
users = [1, 2]
duration_s = {duration}
warmup_s = 0.2
params = {{ delay = 0.02 }}
"""


def t_config(write: Callable[..., Path], lab: str = "", options: str = "",
             duration: float = 0.5) -> Path:
    return write(T.format(lab=lab, options=options, duration=duration))


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def lab_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


# ---- 2: an app that misbehaves at import ------------------------------------------------

@pytest.mark.parametrize(("code", "says"), [
    ("import sys\nsys.exit(0)", "SystemExit"),
    ("import os\nos.close(1)\nos.close(2)\nos._exit(0)", "ended the process"),
    ("raise RuntimeError('no database')", "RuntimeError: no database"),
    ("app = 42", "not an ASGI callable"),
])
def test_an_app_that_misbehaves_at_import_is_one_clear_line(
        code: str, says: str, write_config: Callable[..., Path], tmp_path: Path,
        leak_token: str) -> None:
    (tmp_path / "badapp.py").write_text(code + "\n")
    path = t_config(write_config, lab='app = "badapp:app"')
    for command in (["validate", path], ["run", path, "--out", tmp_path / "out"]):
        line = one_line_error(run_lab(*command, env=lab_env(PYTHONPATH=str(tmp_path))))
        assert line.startswith("error: lab.app: ") and says in line, line
    assert not (tmp_path / "out").exists()  # nothing written


def test_an_app_that_hangs_at_import_times_out_and_one_that_floods_is_not_echoed(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    (tmp_path / "hang.py").write_text("import time\ntime.sleep(600)\n")
    (tmp_path / "flood.py").write_text("print('x' * 20_000_000)\napp = lambda *a: None\n")
    env = lab_env(PYTHONPATH=str(tmp_path))
    t0 = time.monotonic()
    hang = run_lab("validate", t_config(write_config, lab='app = "hang:app"\n'
                                        'start_timeout_s = 2'), env=env)
    assert "took longer than 2 s" in one_line_error(hang)
    assert time.monotonic() - t0 < 20
    flood = run_lab("validate", write_config(T.format(lab='app = "flood:app"', options="",
                                                      duration=0.5), "f.toml"), env=env)
    assert flood.returncode == 0, flood.stderr
    assert len(flood.stdout) < 10_000  # the cells and the estimate, not 20 MB
    assert leftovers(leak_token) == []


# ---- 3: the lab stopped and continued mid-cell ------------------------------------------

def test_a_lab_stopped_mid_cell_records_a_disturbed_cell_and_resume_measures_it_again(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    """The stop lands wherever the first request finds it, warm-up or window: both are the
    lab's doing. (A fixed sleep that aimed at the window missed it on a slow machine: the
    stop ate the warm-up and the whole window, and the cell read all_requests_failed.)"""
    path = t_config(write_config, duration=2.0, options="options = { access_log = true }")
    lab = subprocess.Popen([sys.executable, "-m", "lab", "run", str(path), "--out",
                            str(tmp_path), "--run-id", "s"], cwd=ROOT, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run = RunDir(tmp_path / "s")
    deadline = time.monotonic() + 60

    def measuring() -> bool:  # the first cell's first request has reached the server
        logs = sorted((run.path / "logs").glob("*.log")) if (run.path / "logs").is_dir() else []
        # the first GET /hello is the lab's one-request check of the app, before any cell
        return any(log.read_text(errors="replace").count("GET /hello") >= 2 for log in logs)

    while not measuring():
        assert time.monotonic() < deadline and lab.poll() is None
        time.sleep(0.02)
    lab.send_signal(signal.SIGSTOP)
    time.sleep(2.5)
    lab.send_signal(signal.SIGCONT)
    out, err = lab.communicate(timeout=60)
    assert lab.returncode == 3, out + err  # a failed cell, the matrix went on
    records = json_lines(run)
    disturbed = [r for r in records if r["status"] == "failed"]
    assert [r["failure"]["kind"] for r in disturbed] == ["disturbed"]
    assert "went unscheduled for" in disturbed[0]["failure"]["reason"]
    resumed = run_lab("run", "--resume", run.path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "running 1 cells of 4" in resumed.stdout
    after = json_lines(run)
    assert len(after) == 4 and all(r["status"] == "ok" for r in after)
    assert leftovers(leak_token) == []


# ---- 7: signals at the wrong moment ------------------------------------------------------

def catches(pid: int, signum: int) -> bool:
    """Has the process installed a handler for ``signum`` (SigCgt in /proc)?"""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_before_the_run_starts_is_one_line(
        signum: int, write_config: Callable[..., Path], tmp_path: Path,
        leak_token: str) -> None:
    """The first thing `python -m lab` does is install its handlers; a signal from then on,
    while the rest of the lab still imports (~0.5 s), is one line and 128 + N."""
    lab = subprocess.Popen([sys.executable, "-m", "lab", "run",
                            str(t_config(write_config)), "--out", str(tmp_path)], cwd=ROOT,
                           text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    # Python catches SIGINT itself from its start; SIGHUP only once lab's handlers are in.
    while not catches(lab.pid, signal.SIGHUP):
        assert time.monotonic() < deadline and lab.poll() is None
        time.sleep(0.001)
    lab.send_signal(signum)
    out, err = lab.communicate(timeout=30)
    assert lab.returncode == 128 + signum, out + err
    assert "Traceback" not in out + err
    assert f"signal {signum}" in err
    assert leftovers(leak_token) == []


def test_sighup_mid_run_is_an_interrupted_run_with_a_report(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    lab = subprocess.Popen([sys.executable, "-m", "lab", "run",
                            str(t_config(write_config, duration=2.0)), "--out", str(tmp_path),
                            "--run-id", "h"], cwd=ROOT, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run = RunDir(tmp_path / "h")
    deadline = time.monotonic() + 30
    while not (run.path / "servers.jsonl").exists() and not list(
            (run.path / "logs").glob("*.log") if (run.path / "logs").is_dir() else []):
        assert time.monotonic() < deadline and lab.poll() is None
        time.sleep(0.05)
    time.sleep(1.0)
    lab.send_signal(signal.SIGHUP)
    out, err = lab.communicate(timeout=30)
    assert lab.returncode == 129, out + err
    assert json.loads((run.path / "run.json").read_text())["state"] == "interrupted"
    assert (run.path / "report.md").is_file()
    assert not list(run.path.glob("logs/.ready-*"))  # no ready-marker folder left
    assert leftovers(leak_token) == []


# ---- 8: a bad --out or --run-id ----------------------------------------------------------

@pytest.mark.parametrize("out", ["file", "/dev/null", "/proc/asgi-lab"])
def test_a_bad_out_is_exit_2_and_one_line(out: str, write_config: Callable[..., Path],
                                          tmp_path: Path) -> None:
    if out == "file":
        (tmp_path / "file").write_text("not a folder")
        out = str(tmp_path / "file")
    line = one_line_error(run_lab("run", t_config(write_config), "--out", out))
    assert line.startswith("error: --out ")


def test_a_300_character_run_id_is_exit_2(write_config: Callable[..., Path],
                                          tmp_path: Path) -> None:
    line = one_line_error(run_lab("run", t_config(write_config), "--out", tmp_path,
                                  "--run-id", "x" * 300))
    assert line.startswith("error: --run-id: ")


# ---- 9 and 13: corrupt results, resume edge cases ----------------------------------------

@pytest.fixture
def finished_run(write_config: Callable[..., Path], tmp_path: Path) -> RunDir:
    result = run_lab("run", t_config(write_config, duration=0.3), "--out", tmp_path,
                     "--run-id", "f")
    assert result.returncode == 0, result.stdout + result.stderr
    return RunDir(tmp_path / "f")


@pytest.mark.parametrize("bad", [b"\xff\xfe not utf-8\n", b'{"schema_version": 1}\n',
                                 b'{"schema_version": 1, "cell_id": [1, 2]}\n'])
def test_a_corrupt_results_line_is_a_warning_for_report_and_resume(
        bad: bytes, finished_run: RunDir, leak_token: str) -> None:
    with finished_run.results.open("ab") as f:
        f.write(bad)
    report = run_lab("report", finished_run.path)
    assert report.returncode == 0, report.stderr
    assert "line 5" in (finished_run.path / "report.md").read_text()
    resumed = run_lab("run", "--resume", finished_run.path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "nothing to do: all 4 cells" in resumed.stdout
    assert json.loads((finished_run.path / "run.json").read_text())["state"] == "finished"
    assert leftovers(leak_token) == []


def test_resume_with_a_run_id_or_a_corrupt_run_json_is_exit_2(finished_run: RunDir) -> None:
    line = one_line_error(run_lab("run", "--resume", finished_run.path, "--run-id", "x"))
    assert "--run-id" in line
    (finished_run.path / "run.json").write_text("{ not json")
    line = one_line_error(run_lab("run", "--resume", finished_run.path))
    assert "corrupt" in line


# ---- 12: a server that refuses the readiness check ---------------------------------------

def test_limit_concurrency_1_fails_its_start_and_says_why(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    path = t_config(write_config, lab="start_timeout_s = 2",
                    options="options = { limit_concurrency = 1 }")
    result = run_lab("run", path, "--out", tmp_path, "--run-id", "l", "--experiment", "t")
    assert result.returncode == 3, result.stdout + result.stderr
    failures = {r["failure"]["reason"] for r in json_lines(RunDir(tmp_path / "l"))}
    assert failures and all("limit_concurrency" in reason for reason in failures), failures
    assert leftovers(leak_token) == []


# ---- 5: disk full while appending a result -----------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                    reason="needs root to mount a small tmpfs")
def test_a_full_disk_stops_the_run_with_one_line_and_keeps_every_written_result(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=28k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        result = run_lab("run", t_config(write_config, duration=0.3), "--out", disk,
                         "--run-id", "d", timeout=120)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        assert "cannot append (No space left on device)" in result.stderr
        assert "resume with" in result.stderr
        assert not list((disk / "d").glob(".*.tmp"))
        # what was written reads back: whole lines, or a cut one reported, never a crash
        assert all(r["status"] in ("ok", "failed") for r in json_lines(RunDir(disk / "d")))
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert leftovers(leak_token) == []
