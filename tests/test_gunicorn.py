"""gunicorn with uvicorn's worker class, the fourth server: its config, its argv, its
version, and real servers on 127.0.0.1 whose requests split across the arbiter's workers
and whose processes all go when the lab is interrupted or killed."""

import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from lab.errors import ConfigError
from lab.matrix.config import parse
from lab.servers import ADAPTERS
from lab.store.results import RunDir
from lab.supervise.reaper import Ledger
from tests.conftest import ROOT, carrying, leftovers, run_lab
from tests.test_measurement import figures_of, make_cell, serve

GUNICORN = ADAPTERS["gunicorn"]
CONFIG = """
[servers.gunicorn]
workers = [1, 2]
{options}

[[experiments]]
name = "hello"
kind = "closed"
endpoints = ["/hello"]
users = [16]
"""


# ---- config and argv -------------------------------------------------------------------

def test_a_gunicorn_table_is_a_worker_axis_with_ids_like_the_others() -> None:
    cells = parse(tomllib.loads(CONFIG.format(options=""))).cells()
    assert [c.id for c in cells] == ["gunicorn-w1-hello-hello-c16", "gunicorn-w2-hello-hello-c16"]
    assert [c.server_id for c in cells] == ["gunicorn-w1", "gunicorn-w2"]
    assert [c.workers for c in cells] == [1, 2]


def test_the_worker_class_is_an_option_axis_and_a_wrong_one_is_refused() -> None:
    both = 'options = { worker_class = ["uvicorn_worker.UvicornWorker", ' \
           '"uvicorn_worker.UvicornH11Worker"] }'
    ids = [c.id for c in parse(tomllib.loads(CONFIG.format(options=both))).cells()]
    assert "gunicorn-w2-worker_class=uvicorn_worker.UvicornH11Worker-hello-hello-c16" in ids
    assert len(ids) == 4
    with pytest.raises(ConfigError) as e:
        parse(tomllib.loads(CONFIG.format(options='options = { worker_class = "sync" }')))
    assert "servers.gunicorn" in e.value.path and "UvicornWorker" in str(e.value)


def test_argv_runs_uvicorns_worker_class_without_an_access_log_by_default() -> None:
    argv = GUNICORN.argv("python", "lab.servers.asgi_wrap:app", "127.0.0.1", 8123, 2, {})
    assert argv[:4] == ["python", "-m", "gunicorn", "lab.servers.asgi_wrap:app"]
    text = " ".join(argv)
    assert "--bind 127.0.0.1:8123" in text and "--workers 2" in text
    assert "--worker-class uvicorn_worker.UvicornWorker" in text
    assert "--access-logfile" not in argv
    logged = GUNICORN.argv("python", "m:app", "127.0.0.1", 1, 1, {"access_log": True})
    assert "--access-logfile -" in " ".join(logged)
    h11 = GUNICORN.argv("python", "m:app", "::1", 8123, 1,
                        {"worker_class": "uvicorn_worker.UvicornH11Worker", "keep_alive": 5})
    # gunicorn would split an unbracketed IPv6 address at its first colon
    assert "--bind [::1]:8123" in " ".join(h11)
    assert "--worker-class uvicorn_worker.UvicornH11Worker" in " ".join(h11)
    assert "--keep-alive 5" in " ".join(h11)
    assert h11.count("--worker-class") == 1


def test_its_version_names_the_worker_class_and_uvicorn_it_runs_on() -> None:
    version = GUNICORN.version()
    assert version == (f"{metadata.version('gunicorn')} (uvicorn-worker "
                       f"{metadata.version('uvicorn-worker')}, uvicorn "
                       f"{metadata.version('uvicorn')})")
    # the app check guards uvicorn's modules too: they serve gunicorn's requests
    assert {"gunicorn", "uvicorn_worker", "uvicorn"} <= set(GUNICORN.modules())
    settings = GUNICORN.settings({})
    assert settings["http"] == "uvicorn_worker.UvicornWorker"
    assert settings["access log"] == "False"
    assert settings["keep-alive"] == "2 s"


def test_without_uvicorn_worker_it_counts_as_not_installed() -> None:
    """gunicorn alone cannot load the worker class: the run refuses it before any start."""
    assert GUNICORN.installed()
    missing = replace(GUNICORN, runs_on=("uvicorn-worker-not-installed",))
    assert not missing.installed()
    assert missing.version() == f"{metadata.version('gunicorn')} " \
                                "(uvicorn-worker-not-installed not installed)"


def test_lab_list_shows_gunicorn_with_its_version_and_options() -> None:
    out = run_lab("list")
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.strip().startswith("gunicorn "))
    assert GUNICORN.version() in line
    assert "uvicorn_worker.UvicornH11Worker" in out.stdout


# ---- real servers ----------------------------------------------------------------------

@pytest.mark.servers
def test_two_workers_serve_hello_and_a_burst_and_a_closed_loop_split_across_both(
        tmp_path: Path, leak_token: str) -> None:
    """Every answer comes from one of its 2 workers, never the arbiter, and both answer. Which
    worker accepts a connection is the kernel's and the workers' race: in CI one worker took
    all 50 of a burst's connections, opened before the window. So closed loops run until
    both have answered, 5 at most."""
    with serve("gunicorn", 2, tmp_path) as server:
        workers = set(server.ready_pids())
        assert len(workers) == 2
        # the arbiter is the group's main process and serves nothing itself
        assert server.main_pid() not in workers
        burst = figures_of(make_cell("gunicorn", 2, "burst", "/non-blocking", 50,
                                     {"delay": 0.05}), server)
        closed: list[dict[str, Any]] = []
        answered: set[int] = set()
        while answered != workers and len(closed) < 5:
            closed.append(figures_of(make_cell("gunicorn", 2, "closed", "/hello", 16,
                                               duration_s=1.0, warmup_s=0.5), server))
            answered |= {int(pid) for pid in closed[-1]["pids"]}
        pgid = server.pgid
    for figures in (burst, *closed):
        assert figures["errors"] == {}
        split = {int(pid): n for pid, n in figures["pids"].items()}
        assert set(split) <= workers and all(n > 0 for n in split.values()), split
    assert answered == workers, [c["pids"] for c in closed]
    assert sum(burst["pids"].values()) == 50
    assert burst["wall_s"] < 50 * 0.05 / 4  # overlapped, not one after another
    assert all(c["rps"] > 100 for c in closed)
    assert server.last_stop is not None and not server.last_stop.killed
    assert not carrying(leak_token), f"group {pgid} left processes"


LONG_BURST = """
[lab]
start_timeout_s = 20
stop_grace_s = 2

[servers.gunicorn]
workers = [2]

[[experiments]]
name = "long"
kind = "burst"
endpoints = ["/non-blocking"]
requests = [4]
params = { delay = 20 }
timeout_s = 30
"""


@pytest.mark.servers
@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_the_arbiter_and_its_workers_go_when_the_lab_is_interrupted_or_killed(
        how: str, write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    path = write_config(LONG_BURST)
    run = RunDir(tmp_path / "g")
    lab = subprocess.Popen(
        [sys.executable, "-m", "lab", "run", str(path), "--out", str(tmp_path), "--run-id",
         "g"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        encoding="utf-8")
    try:
        deadline = time.monotonic() + 30
        # both workers started (the arbiter and 2 workers carry the token), then mid-burst
        while "".join(p.read_text() for p in run.logs.glob("*.log")
                      ).count("Application startup complete") < 2 \
                or not Ledger(run.path).open_groups():
            assert lab.poll() is None, lab.communicate()
            assert time.monotonic() < deadline, "gunicorn's 2 workers did not start"
            time.sleep(0.05)
        while len(carrying(leak_token)) < 4:  # the lab, the guard, the arbiter, 2 workers
            assert time.monotonic() < deadline, carrying(leak_token)
            time.sleep(0.05)
        t0 = time.monotonic()
        lab.send_signal(getattr(signal, how))
        out, err = lab.communicate(timeout=30)
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
    if how == "SIGINT":
        assert lab.returncode == 130, out + err
        assert time.monotonic() - t0 < 10  # the grace is 2 s, not gunicorn's own 30 s
        assert "Traceback" not in out + err
    else:
        assert lab.returncode == -signal.SIGKILL
    # SIGKILL: the guard sees its pipe close, SIGTERMs the arbiter, SIGKILLs the group
    assert leftovers(leak_token, wait_s=10.0) == []
