"""One measuring run per machine, one writer per run folder, and reaping only the groups
whose lab is gone. Real labs, real uvicorn, a lock folder of the test's own."""

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from lab.store.results import RunDir
from lab.supervise import pgroup
from lab.supervise.lock import writer_lock
from lab.supervise.reaper import LEDGER, TOKEN_ENV, Ledger, reap
from tests.conftest import CONFIGS, ROOT, json_lines, leftovers, run_lab

pytestmark = pytest.mark.servers

CONFIG = CONFIGS / "lock.toml"
CELLS = [f"uvicorn-w1-hello-hello-c{users}" for users in (2, 4, 8)]


def start_lab(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "lab", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            encoding="utf-8")


def start_first(out: Path) -> tuple[subprocess.Popen[str], RunDir]:
    """A lab measuring (it has a server up) in ``out/first``."""
    lab = start_lab("run", CONFIG, "--out", out, "--run-id", "first")
    run = RunDir(out / "first")
    deadline = time.monotonic() + 30
    while not Ledger(run.path).open_groups():
        assert lab.poll() is None, lab.communicate()
        assert time.monotonic() < deadline, "the first lab started no server"
        time.sleep(0.02)
    return lab, run


def finish(lab: subprocess.Popen[str]) -> tuple[str, str]:
    out, err = lab.communicate(timeout=60)
    assert lab.returncode == 0, out + err
    return out, err


def assert_all_ok(run: RunDir) -> None:
    ids = [r["cell_id"] for r in json_lines(run)]
    assert sorted(ids) == CELLS  # every cell once: none missing, none written twice
    assert all(r["status"] == "ok" for r in json_lines(run))
    assert json.loads((run.path / "run.json").read_text())["state"] == "finished"


def read_line(stream: IO[str] | None, timeout_s: float) -> str:
    assert stream is not None
    ready, _, _ = select.select([stream], [], [], timeout_s)
    assert ready, f"no line within {timeout_s} s"
    return stream.readline()


def test_a_second_run_waits_for_the_first_and_both_finish(tmp_path: Path,
                                                           leak_token: str) -> None:
    first, first_run = start_first(tmp_path)
    second = start_lab("run", CONFIG, "--out", tmp_path, "--run-id", "second")
    waiting = read_line(second.stderr, 30)
    assert f"waiting for the measuring lock held by pid {first.pid} (run {first_run.path}" \
        in waiting
    assert not (tmp_path / "second").exists()  # nothing written while it waits
    finish(first)
    finish(second)
    assert_all_ok(first_run)  # its servers were not killed by the second run's reaping
    second_run = RunDir(tmp_path / "second")
    assert_all_ok(second_run)
    # One after the other: no cell of the second started before the first's last ended.
    assert max(r["finished_at"] for r in json_lines(first_run)) <= \
        min(r["started_at"] for r in json_lines(second_run))
    assert leftovers(leak_token) == []


def test_a_run_that_may_not_wait_writes_nothing(tmp_path: Path, leak_token: str) -> None:
    """--no-wait refuses at once; a waiting run stopped by SIGTERM exits 143. Neither
    leaves a run folder, and the first run is not disturbed."""
    first, first_run = start_first(tmp_path)
    waiter = start_lab("run", CONFIG, "--out", tmp_path, "--run-id", "later")
    refused = run_lab("run", CONFIG, "--out", tmp_path, "--run-id", "now", "--no-wait")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.count("\n") == 1 and refused.stdout == ""
    assert "measuring lock" in refused.stderr and f"pid {first.pid}" in refused.stderr
    assert not (tmp_path / "now").exists()

    assert "waiting for the measuring lock" in read_line(waiter.stderr, 30)
    waiter.send_signal(signal.SIGTERM)
    out, err = waiter.communicate(timeout=10)
    assert waiter.returncode == 143, out + err
    assert "Traceback" not in out + err and "nothing was run" in err
    assert not (tmp_path / "later").exists()

    finish(first)
    assert_all_ok(first_run)
    assert [p.name for p in tmp_path.iterdir()] == ["first"]
    assert leftovers(leak_token) == []


def test_resume_of_a_run_still_being_written_is_refused(tmp_path: Path,
                                                        leak_token: str) -> None:
    first, run = start_first(tmp_path)
    info = (run.path / "run.json").read_text()
    refused = run_lab("run", "--resume", run.path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert f"is being written by pid {first.pid}; wait for it or stop it" in refused.stderr
    if first.poll() is None:  # (the first rewrites run.json only when it ends)
        assert (run.path / "run.json").read_text() == info
    finish(first)
    assert_all_ok(run)
    assert leftovers(leak_token) == []


OWNER = """
import os, subprocess, sys, time
from pathlib import Path
from lab.supervise.reaper import TOKEN_ENV, Ledger
token = sys.argv[2]
child = subprocess.Popen(["sleep", "30"], env={**os.environ, TOKEN_ENV: token},
                         start_new_session=True, stdout=subprocess.DEVNULL)
Ledger(Path(sys.argv[1])).started(child.pid, token)
print(child.pid, flush=True)
time.sleep(30)
"""


def test_only_groups_whose_lab_is_gone_are_reaped(tmp_path: Path, leak_token: str) -> None:
    """A stand-in lab records a group (a ``sleep`` carrying the group's token): while the
    lab lives its group is left alone; once the lab is SIGKILLed, the group is reaped."""
    run_path = tmp_path / "other"
    run_path.mkdir()
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(run_path), "t0ken"], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        pgid = int(read_line(owner.stdout, 10))
        assert reap(tmp_path) == []
        assert pgroup.alive(pgid)
    finally:
        owner.kill()  # the lab dies without a word; its group lives on
        owner.wait()
        owner.stdout.close()
    messages = reap(tmp_path)
    assert len(messages) == 1 and "other" in messages[0]
    assert pgroup.wait_gone(pgid, 5)
    assert reap(tmp_path) == []  # recorded as stopped
    assert leftovers(leak_token) == []


def group(token: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "30"], env={**os.environ, TOKEN_ENV: token},
                            start_new_session=True)


def test_an_old_entry_or_a_reused_pid_is_reaped_only_from_a_folder_nobody_writes(
        tmp_path: Path, leak_token: str) -> None:
    """An entry without an owner (an older ledger), and one whose owner pid is alive but
    started at another time (the pid was reused): both orphans, but only reaped when the
    folder's writer lock is free or held by the reaping lab itself (a resume)."""
    run_path = tmp_path / "old"
    run_path.mkdir()
    legacy, reused = group("legacy"), group("reused")
    start = int(Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19])
    with (run_path / LEDGER).open("w") as f:
        f.write(json.dumps({"event": "start", "pgid": legacy.pid, "token": "legacy"}) + "\n")
        f.write(json.dumps({"event": "start", "pgid": reused.pid, "token": "reused",
                            "owner_pid": os.getpid(), "owner_start": start - 1}) + "\n")
    lock = writer_lock(run_path)
    assert lock.try_acquire(run_path)
    try:
        assert reap(tmp_path) == []  # as if another lab were writing the folder
        assert pgroup.alive(legacy.pid) and pgroup.alive(reused.pid)
        assert len(reap(tmp_path, writing=run_path)) == 2
    finally:
        lock.release()
        for p in (legacy, reused):
            p.kill()
            p.wait()
    assert leftovers(leak_token) == []
