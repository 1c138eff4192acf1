"""Nothing lost, nothing left running: signals, failed cells, resume, port races, the
ledger of process groups. Real processes, bounded time."""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.errors import Interrupted, ServerStartError
from lab.matrix.config import LabSettings
from lab.servers import ADAPTERS
from lab.store.results import RunDir
from lab.supervise import pgroup
from lab.supervise.interrupt import Interrupts
from lab.supervise.process import Readiness, running
from lab.supervise.reaper import Ledger, reap
from tests.conftest import ROOT, carrying, json_lines, leftovers, run_lab

pytestmark = pytest.mark.servers

ONE_BURST = """
[lab]
stop_grace_s = 2
{lab}

[servers.uvicorn]
workers = [1]
{servers}

[[experiments]]
name = "b"
kind = "burst"
endpoints = {endpoints}
requests = [{n}]
params = {{ delay = {delay} }}
"""


def config(write: Callable[..., Path], lab: str = "", servers: str = "",
           endpoints: str = '["/non-blocking"]', n: int = 3, delay: float = 0.02) -> Path:
    return write(ONE_BURST.format(lab=lab, servers=servers, endpoints=endpoints, n=n,
                                  delay=delay))


def start_lab(path: Path, out: Path, run_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lab", "run", str(path), "--out", str(out), "--run-id", run_id],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")


def wait_for_server(run: RunDir, lab: subprocess.Popen[str], timeout_s: float = 30) -> None:
    """Until the lab has a server up (its ledger has a start with no stop)."""
    deadline = time.monotonic() + timeout_s
    while not Ledger(run.path).open_groups():
        assert lab.poll() is None, lab.communicate()
        assert time.monotonic() < deadline, "no server started"
        time.sleep(0.02)


def test_sigterm_stops_the_run_with_143_and_an_interrupted_report(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    path = config(write_config, endpoints='["/async-blocking"]', n=20, delay=0.5)
    run = RunDir(tmp_path / "t")
    lab = start_lab(path, tmp_path, "t")
    wait_for_server(run, lab)
    time.sleep(0.5)  # mid-cell
    t0 = time.monotonic()
    lab.send_signal(signal.SIGTERM)
    out, err = lab.communicate(timeout=30)
    assert lab.returncode == 143, out + err
    assert time.monotonic() - t0 < 5
    assert "Traceback" not in out + err
    assert json.loads((run.path / "run.json").read_text())["state"] == "interrupted"
    assert "This run was interrupted" in (run.path / "report.md").read_text()
    assert json_lines(run) == []  # the cut cell is not a result
    assert leftovers(leak_token) == []


def test_a_signal_just_before_a_cell_starts_still_stops_it() -> None:
    """A signal after the run loop's last check but before the cell's task exists finds
    nothing to cancel: the cell must still stop at once, not run to its end (a 10 s burst
    held SIGTERM for 10 s in 1 of 5 runs before)."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    interrupts = Interrupts()
    interrupts.install()
    try:
        signal.raise_signal(signal.SIGTERM)  # recorded; no task yet
        t0 = time.monotonic()
        with pytest.raises(Interrupted):
            asyncio.run(interrupts.guard(asyncio.sleep(10)))
        assert time.monotonic() - t0 < 1
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_a_second_ctrl_c_skips_the_grace_period(write_config: Callable[..., Path],
                                                 tmp_path: Path, leak_token: str) -> None:
    """apps.stubborn ignores SIGTERM and the grace is 20 s: the second SIGINT must SIGKILL
    at once, and still leave nothing behind."""
    path = config(write_config, lab='app = "apps.stubborn:app"\nstop_grace_s = 20',
                  endpoints='["/non-blocking"]', n=2, delay=5)
    path.write_text(path.read_text().replace("stop_grace_s = 2\n", "", 1))
    run = RunDir(tmp_path / "h")
    lab = start_lab(path, tmp_path, "h")
    wait_for_server(run, lab)
    # Ready (a Ctrl-C during start-up stops at once, without a grace), then the burst sent.
    deadline = time.monotonic() + 30
    while "startup complete" not in "".join(p.read_text() for p in run.logs.glob("*.log")):
        assert time.monotonic() < deadline and lab.poll() is None
        time.sleep(0.02)
    time.sleep(0.5)
    t0 = time.monotonic()
    lab.send_signal(signal.SIGINT)
    time.sleep(0.5)  # now in the stop, waiting on a server that ignores SIGTERM
    assert lab.poll() is None
    lab.send_signal(signal.SIGINT)
    out, err = lab.communicate(timeout=30)
    assert lab.returncode == 130, out + err
    assert time.monotonic() - t0 < 5, "the second Ctrl-C waited for the grace period"
    assert leftovers(leak_token) == []


def test_resume_refuses_a_changed_config_unless_forced(write_config: Callable[..., Path],
                                                       tmp_path: Path,
                                                       leak_token: str) -> None:
    path = config(write_config)
    first = run_lab("run", path, "--out", tmp_path, "--run-id", "r")
    assert first.returncode == 0, first.stderr
    path.write_text(path.read_text().replace("requests = [3]", "requests = [3, 4]"))
    refused = run_lab("run", path, "--resume", tmp_path / "r")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "changed since" in refused.stderr
    forced = run_lab("run", path, "--resume", tmp_path / "r", "--force")
    assert forced.returncode == 0, forced.stderr
    ids = [r["cell_id"] for r in json_lines(RunDir(tmp_path / "r"))]
    assert ids == ["uvicorn-w1-b-non-blocking-n3", "uvicorn-w1-b-non-blocking-n4"]
    assert leftovers(leak_token) == []


def test_a_forced_resume_reports_the_current_cells_and_its_exit_code_counts_earlier_failures(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    """requests = [3] edited to [4]: the report read "4 finished (2 ok, 2 failed) of 2
    planned" with the n3 tables still in it, and a resume with nothing to do exited 0
    although a planned cell had failed."""
    path = config(write_config, lab="cell_timeout_s = 0.5",
                  endpoints='["/hello", "/non-blocking"]', delay=1.0)
    first = run_lab("run", path, "--out", tmp_path, "--run-id", "f")
    assert first.returncode == 3, first.stdout + first.stderr  # /non-blocking timed out
    path.write_text(path.read_text().replace("requests = [3]", "requests = [4]"))
    forced = run_lab("run", path, "--resume", tmp_path / "f", "--force")
    assert forced.returncode == 3, forced.stdout + forced.stderr
    assert "1 of 2 cells failed" in forced.stderr
    text = (tmp_path / "f" / "report.md").read_text(encoding="utf-8")
    assert "2 finished (1 ok, 1 failed) of 2 planned" in text
    assert "2 stale results" in text and "`uvicorn-w1-b-hello-n3`" in text
    assert "requests = 4" in text and "requests = 3" not in text  # no n3 table, only names
    again = run_lab("run", "--resume", tmp_path / "f")
    assert "nothing to do" in again.stdout
    assert again.returncode == 3, again.stdout + again.stderr
    assert "1 of 2 cells failed (1 in an earlier session)" in again.stderr
    assert leftovers(leak_token) == []


def test_resume_force_reruns_a_cell_whose_params_changed_and_keeps_each_environment(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    """Same cell id, another measurement: the forced resume runs it again (its later line
    counts), a plain resume after it runs nothing, and no session's environment is lost."""
    path = config(write_config)
    assert run_lab("run", path, "--out", tmp_path, "--run-id", "p").returncode == 0
    run = RunDir(tmp_path / "p")
    first_env = (run.path / "environment.json").read_bytes()
    path.write_text(path.read_text().replace("delay = 0.02", "delay = 0.03"))
    forced = run_lab("run", path, "--resume", run.path, "--force")
    assert forced.returncode == 0, forced.stderr
    again = run_lab("run", "--resume", run.path)  # the run's config is now the changed one
    assert again.returncode == 0, again.stderr
    assert "nothing to do: all 1 cells" in again.stdout
    lines = [json.loads(x) for x in run.results.read_text().splitlines()]
    assert [(x["cell_id"], x["params"]["delay"]) for x in lines] == [
        ("uvicorn-w1-b-non-blocking-n3", 0.02), ("uvicorn-w1-b-non-blocking-n3", 0.03)]
    loaded = run.load()
    assert [r.params["delay"] for r in loaded.records] == [0.03]
    assert loaded.warnings == ["uvicorn-w1-b-non-blocking-n3 was measured again with a "
                               "changed config; the later line counts"]
    assert (run.path / "environment.json").read_bytes() == first_env
    assert (run.path / "environment-2.json").is_file()
    assert not (run.path / "environment-3.json").exists()  # nothing to do: no session
    assert "delay = 0.02" in (run.path / "config-1.toml").read_text()
    assert leftovers(leak_token) == []


def test_resume_reruns_a_cell_whose_line_was_cut_short(write_config: Callable[..., Path],
                                                       tmp_path: Path,
                                                       leak_token: str) -> None:
    path = config(write_config, endpoints='["/non-blocking", "/blocking"]')
    assert run_lab("run", path, "--out", tmp_path, "--run-id", "c").returncode == 0
    run = RunDir(tmp_path / "c")
    text = run.results.read_text()
    run.results.write_text(text[: len(text) - 40])  # a crash while writing the last line
    resumed = run_lab("run", "--resume", run.path)
    assert resumed.returncode == 0, resumed.stderr
    assert "truncated or corrupt" in resumed.stdout
    loaded = run.load()
    assert sorted(r.cell_id for r in loaded.records) == [
        "uvicorn-w1-b-blocking-n3", "uvicorn-w1-b-non-blocking-n3"]
    assert len(loaded.warnings) == 1  # the cut line stays, reported, and is not glued on
    assert leftovers(leak_token) == []


def test_a_cell_over_its_time_limit_fails_and_the_matrix_goes_on(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    path = config(write_config, lab="cell_timeout_s = 0.5",
                  endpoints='["/async-blocking", "/non-blocking"]', n=5, delay=0.3)
    result = run_lab("run", path, "--out", tmp_path, "--run-id", "to")
    assert result.returncode == 3, result.stdout + result.stderr
    records = {r["cell_id"]: r for r in json_lines(RunDir(tmp_path / "to"))}
    slow = records["uvicorn-w1-b-async-blocking-n5"]
    assert slow["status"] == "failed" and slow["failure"]["kind"] == "cell_timeout"
    assert records["uvicorn-w1-b-non-blocking-n5"]["status"] == "ok"
    assert "cell_timeout" in (tmp_path / "to" / "report.md").read_text()
    assert leftovers(leak_token) == []


def test_a_server_that_will_not_start_is_a_failed_cell(write_config: Callable[..., Path],
                                                       tmp_path: Path,
                                                       leak_token: str) -> None:
    """hypercorn's trio worker class needs trio, which is not installed: a start failure
    with the log's tail, while the next configuration still runs."""
    path = config(write_config,
                  servers='[servers.hypercorn]\nworkers = [1]\noptions = { worker_class = "trio" }')
    result = run_lab("run", path, "--out", tmp_path, "--run-id", "sf")
    assert result.returncode == 3, result.stdout + result.stderr
    records = {r["server_id"]: r for r in json_lines(RunDir(tmp_path / "sf"))}
    failed = records["hypercorn-w1"]
    assert failed["failure"]["kind"] == "start_failed"
    assert "trio" in failed["failure"]["log_tail"].lower()
    assert records["uvicorn-w1"]["status"] == "ok"
    assert leftovers(leak_token) == []


def test_a_port_taken_before_the_server_binds_is_retried(tmp_path: Path,
                                                         leak_token: str) -> None:
    lab = LabSettings()
    adapter = ADAPTERS["uvicorn"]
    taken = socket.socket()
    ports: list[int] = []

    def argv(port: int) -> list[str]:
        # The first attempt loses the race: someone else binds the port the lab chose.
        if not ports:
            taken.bind(("127.0.0.1", port))
            taken.listen()
        ports.append(port)
        return adapter.argv(sys.executable, lab.app, lab.host, port, 1, {})

    try:
        with running(argv, lab.host, 1, tmp_path / "s.log", 20, 2) as server:
            assert server.port == ports[1] != ports[0]
    finally:
        taken.close()
    assert len(ports) == 2
    assert "address already in use" in (tmp_path / "s.log").read_text().lower()
    assert leftovers(leak_token) == []



# Binds a port of its own at import, one that is already taken.
BINDS_AT_IMPORT = """
import os, socket
socket.socket().bind(("127.0.0.1", int(os.environ["TAKEN_PORT"])))
from apps.article import app
"""


def test_an_app_whose_own_port_is_taken_is_not_retried_on_other_ports(
        tmp_path: Path, leak_token: str) -> None:
    """Only the lab's own port lost to a race is worth another port: the app's "address
    already in use" fails the start once."""
    (tmp_path / "binder.py").write_text(BINDS_AT_IMPORT)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    lab = LabSettings()
    ports: list[int] = []

    def argv(port: int) -> list[str]:
        ports.append(port)
        return ADAPTERS["uvicorn"].argv(sys.executable, "lab.servers.asgi_wrap:app", lab.host, port,
                                        2, {})

    env = {"TAKEN_PORT": str(taken.getsockname()[1]), "LAB_APP": "binder:app",
           "LAB_APP_DIR": str(tmp_path)}
    try:
        with pytest.raises(ServerStartError):
            with running(argv, lab.host, 2, tmp_path / "s.log", 4, 2, env=env,
                         readiness=Readiness(markers=True), app_dir=str(tmp_path)):
                pytest.fail("the server should not have become ready")
    finally:
        taken.close()
    assert "address already in use" in (tmp_path / "s.log").read_text().lower()
    assert len(ports) == 1
    assert leftovers(leak_token) == []

# A stand-in lab: starts a real server (under its guard) with a ledger, then idles.
LAB_WITH_SERVER = """
import sys, time
from pathlib import Path
from lab.matrix.config import LabSettings
from lab.errors import Interrupted
from lab.supervise.interrupt import Interrupts
from lab.supervise.process import Server
from lab.supervise.reaper import Ledger
from lab.servers import ADAPTERS
lab = LabSettings()
server = Server(ADAPTERS["uvicorn"].argv(sys.executable, lab.app, lab.host, 0, 1, {}),
                lab.host, 0, 1, Path(sys.argv[2]), Ledger(Path(sys.argv[1])))
while server.main_pid() is None:
    time.sleep(0.02)
print(server.pgid, server.main_pid(), flush=True)
time.sleep(60)
"""


def test_the_next_run_reaps_a_group_that_outlived_its_lab(tmp_path: Path,
                                                          leak_token: str) -> None:
    """The guard is the first line; if it is gone too (here: SIGKILLed), the ledger lets
    the next run find the orphaned server and end it, once its lab is gone."""
    run_path = tmp_path / "old-run"
    run_path.mkdir()
    stand_in = subprocess.Popen([sys.executable, "-c", LAB_WITH_SERVER, str(run_path),
                                 str(tmp_path / "s.log")],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert stand_in.stdout is not None
    pgid, main = map(int, stand_in.stdout.readline().split())
    os.kill(pgid, signal.SIGKILL)  # the guard dies, as with a power cut of the lab
    stand_in.kill()  # and the lab with it
    stand_in.wait()
    stand_in.stdout.close()
    assert pgroup.alive(pgid)  # the server outlived both
    messages = reap(tmp_path)
    assert len(messages) == 1 and "old-run" in messages[0]
    assert pgroup.wait_gone(pgid, 5)
    assert not pgroup.members(pgid) and main not in leftovers(leak_token)
    assert reap(tmp_path) == []  # recorded as stopped: not reaped twice
    assert leftovers(leak_token) == []


@pytest.mark.parametrize("how", ["finished", "lab SIGKILLed"])
def test_a_helper_that_escaped_into_its_own_session_is_ended_too(
        how: str, write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    """apps.escaping starts `sleep 300` with setsid in each worker: outside the server's
    process group. The guard, a child subreaper, inherits it as an orphan and ends it,
    whether the run finishes or the lab is SIGKILLed mid-cell."""
    path = config(write_config, lab='app = "apps.escaping:app"', endpoints='["/non-blocking"]',
                  n=2, delay=5 if how != "finished" else 0.02)
    run = RunDir(tmp_path / "e")
    lab = start_lab(path, tmp_path, "e")
    try:
        if how == "finished":
            out, err = lab.communicate(timeout=60)
            assert lab.returncode == 0, out + err
        else:
            wait_for_server(run, lab)
            deadline = time.monotonic() + 30
            while not [p for p in carrying(leak_token) if b"sleep" in _cmdline(p)]:
                assert lab.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            lab.kill()
    finally:
        if lab.poll() is None:
            lab.kill()
        lab.communicate(timeout=10)  # and closes its pipes
    left = leftovers(leak_token, wait_s=10.0)
    assert left == [], [_cmdline(p) for p in left]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.parametrize("engine", ["wrk", "aiohttp"])
def test_cell_timeout_bounds_wrk_and_several_client_processes(
        engine: str, write_config: Callable[..., Path], tmp_path: Path,
        leak_token: str) -> None:
    """A 12 s closed cell with a 2 s cell timeout, on wrk or on 2 client processes: a
    failed cell within seconds, not a figure after 12 s, and nothing left running."""
    if engine == "wrk" and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed")
    path = write_config(f"""
[lab]
cell_timeout_s = 2
[servers.uvicorn]
workers = [1]
[[experiments]]
name = "long"
kind = "closed"
engine = "{engine}"
endpoints = ["/hello"]
users = [2]
duration_s = 12
warmup_s = 0
{"clients = 2" if engine == "aiohttp" else ""}
""")
    t0 = time.monotonic()
    result = run_lab("run", path, "--out", tmp_path, "--run-id", "to", "--yes")
    assert result.returncode == 3, result.stdout + result.stderr
    assert time.monotonic() - t0 < 10
    [record] = json_lines(RunDir(tmp_path / "to"))
    assert record["failure"]["kind"] == "cell_timeout"
    assert leftovers(leak_token) == []
