"""A run on remote hosts, on a real Dask cluster of processes on 127.0.0.1: the servers
start on the worker with ``server=1``, the load comes from the ones with ``loadgen=1``;
faults (the controller killed, a load host lost, Ctrl-C) leave nothing running."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.remote.hostdir import LEASE
from lab.store.results import RunDir
from lab.supervise import pgroup
from lab.supervise.process import free_port
from lab.supervise.reaper import Ledger
from tests.conftest import ROOT, carrying, json_lines, run_lab
from tests.dask_cluster import Cluster, cluster

pytestmark = pytest.mark.servers

CONFIG = """
[lab]
stop_grace_s = 2
start_timeout_s = 30
cell_timeout_s = 60
{lab}

[servers.uvicorn]
workers = [1]

[[experiments]]
name = "hello"
kind = "closed"
endpoints = ["/hello"]
users = [{users}]
duration_s = {duration}
warmup_s = 0.2

[[experiments]]
name = "article"
kind = "burst"
endpoints = ["/non-blocking"]
requests = [10]
params = {{ delay = 0.05 }}
"""


def config(write: Callable[..., Path], lab: str = "", users: int = 4,
           duration: float = 1.0) -> Path:
    return write(CONFIG.format(lab=lab, users=users, duration=duration))


def controller(path: Path, c: Cluster, out: Path, run_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lab", "run", str(path), "--scheduler", c.address, "--out",
         str(out), "--run-id", run_id], cwd=ROOT, env=c.env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, encoding="utf-8")


def host_groups(c: Cluster, run_id: str) -> dict[str, Ledger]:
    return Ledger(c.hosts_dir / run_id).open_groups()


def wait_until(what: str, done: Callable[[], object], lab: subprocess.Popen[str] | None,
               timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert lab is None or lab.poll() is None, lab.communicate() if lab else ""
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.05)


def others(token: str, c: Cluster) -> list[int]:
    """Processes the test started, the cluster's own aside."""
    mine = {pid for p in c.procs.values() for pid in pgroup.members(p.pid)}
    return [pid for pid in carrying(token) if pid not in mine]


def ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            break
        out.append(pid)
    return out


def test_a_run_puts_the_servers_on_the_server_host_and_the_load_on_the_load_host(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    with cluster(tmp_path, {"srv": "server=1", "load": "loadgen=1"}) as c:
        lab = controller(config(write_config, duration=3.0), c, tmp_path / "out", "r")
        # While it measures: the server's group was started by the server worker, and
        # the controller has no child but its own.
        wait_until("a server up on the server host", lambda: host_groups(c, "r"), lab)
        group = next(iter(host_groups(c, "r").values()))
        srv = set(pgroup.members(c.procs["srv"].pid))
        assert srv & set(ancestors(group.pgid)), "the server's guard is not the worker's"
        assert lab.pid not in ancestors(group.pgid)
        out, err = lab.communicate(timeout=120)
        assert lab.returncode == 0, err
        lines = json_lines(RunDir.existing(tmp_path / "out" / "r"))
        assert [r["status"] for r in lines] == ["ok", "ok"]
        for r in lines:
            place = r["placement"]
            assert place["scheduler"] == c.address
            assert place["server_host"]["address"] == "127.0.0.1"
            assert [h["address"] for h in place["load_hosts"]] == ["127.0.0.1"]
            assert place["server_host"]["cores"] >= 1 and place["server_host"]["cpu_model"]
        closed = next(r for r in lines if r["kind"] == "closed")
        f = closed["figures"]
        assert closed["engine"] == "wrk" and f["ok"] > 100 and f["rps"] > 0
        # The server's side was measured on its host, between the load's window marks.
        assert f["server_cpu_pct"] > 0 and f["server_processes"] >= 1
        assert sum(f["connections"].values()) == 4  # the wrapper's count came back with it
        burst = next(r for r in lines if r["kind"] == "burst")
        assert burst["figures"]["ok"] == 10
        assert 0.05 <= burst["figures"]["wall_s"] < 1.0
        # The report is a local one's, saying where each side ran (one host here: shared).
        report = (tmp_path / "out" / "r" / "report.md").read_text()
        assert "most req/s on uvicorn-w1" in report
        assert f"servers and load on {os.uname().nodename} (127.0.0.1" in report
        assert f"via the scheduler {c.address}" in report and "idled at" in report
        # The run's folder on the hosts was swept away at its end: nothing left open.
        assert not (c.hosts_dir / "r").exists()
        assert others(leak_token, c) == []


def test_two_load_hosts_each_send_half_the_users_and_their_counts_merge(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    with cluster(tmp_path, {"srv": "server=1", "load1": "loadgen=1",
                            "load2": "loadgen=1"}) as c:
        r = run_lab("run", config(write_config, users=6), "--scheduler", c.address,
                    "--experiment", "hello", "--out", tmp_path / "out", "--run-id", "two",
                    timeout=120, env=c.env())
        assert r.returncode == 0, r.stderr
        (line,) = json_lines(RunDir.existing(tmp_path / "out" / "two"))
        f = line["figures"]
        assert len(line["placement"]["load_hosts"]) == 2
        assert f["load_hosts"] == 2 and f["start_spread_flagged"] is False
        assert 0 <= f["start_spread_s"] < 0.1  # behind one barrier
        # 3 users from each host, every one seen by the server's worker; one histogram of
        # both hosts' latencies (wrk's own histogram holds a few more than its count).
        assert sum(f["connections"].values()) == 6
        assert f["latency_samples"] >= f["ok"] > 100
        assert others(leak_token, c) == []


def test_a_load_host_without_wrk_is_said_and_its_cells_use_the_python_client(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    no_wrk = {"PATH": str(Path(sys.executable).parent)}  # the venv's tools, not /usr/bin's
    with cluster(tmp_path, {"srv": "server=1", "load": "loadgen=1"},
                 env_of={"load": no_wrk}) as c:
        listed = run_lab("hosts", "--scheduler", c.address, env=c.env())
        assert listed.returncode == 0 and "has no wrk" in listed.stdout, listed.stdout
        r = run_lab("run", config(write_config, "loop_meter = true", users=2, duration=0.5),
                    "--scheduler", c.address, "--experiment", "hello", "--out",
                    tmp_path / "out", "--run-id", "w", timeout=120, env=c.env())
        assert r.returncode == 0, r.stderr
        assert "has no wrk" in r.stdout + r.stderr  # said before it measures
        (line,) = json_lines(RunDir.existing(tmp_path / "out" / "w"))
        assert line["engine"] == "rawhttp" and line["figures"]["ok"] > 10
        # The loop meter read on the server host came back with the window.
        (worker,) = line["figures"]["loop"].values()
        assert worker["endpoints"]["/hello"]["calls"] > 10
        assert others(leak_token, c) == []


def test_a_killed_controller_lets_its_lease_stop_the_remote_server_and_wrk(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    lease_s = 2.0
    with cluster(tmp_path, {"srv": "server=1", "load": "loadgen=1"}) as c:
        lab = controller(config(write_config, f"lease_s = {lease_s}", duration=30.0), c,
                         tmp_path / "out", "k")
        wait_until("wrk loading from the load host",
                   lambda: len(host_groups(c, "k")) >= 2, lab)
        lab.kill()
        lab.communicate()
        # The lease term, the server's stop grace (2 s) and wrk's (1 s), and polls.
        wait_until("every remote group stopped", lambda: not others(leak_token, c), None,
                   timeout_s=lease_s + 2 + 1 + 5)
        # A new run's sweep finds nothing to reap, and removes the dead run's folder.
        assert (c.hosts_dir / "k" / LEASE).exists()
        again = run_lab("run", config(write_config, users=2, duration=0.5), "--scheduler",
                        c.address, "--out", tmp_path / "out", "--run-id", "k2",
                        timeout=120, env=c.env())
        assert again.returncode == 0, again.stderr
        assert "reaped" not in again.stderr + again.stdout
        assert not (c.hosts_dir / "k").exists()
        assert others(leak_token, c) == []


def test_a_lost_load_host_fails_its_cell_and_the_matrix_goes_on(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    with cluster(tmp_path, {"srv": "server=1", "load1": "loadgen=1",
                            "load2": "loadgen=1"}) as c:
        lab = controller(config(write_config, users=4, duration=20.0), c, tmp_path / "out",
                         "l")
        wait_until("two wrk groups loading",
                   lambda: len(host_groups(c, "l")) >= 3, lab)
        c.kill("load2")
        out, err = lab.communicate(timeout=120)
        assert lab.returncode == 3, err  # some cells failed; the run finished
        lines = json_lines(RunDir.existing(tmp_path / "out" / "l"))
        closed, burst = lines
        assert closed["status"] == "failed"
        assert "load2" in closed["failure"]["reason"] or "left the cluster" in \
            closed["failure"]["reason"], closed["failure"]
        assert burst["status"] == "ok"  # from the load host that is left
        assert [h for h in burst["placement"]["load_hosts"]]
        assert others(leak_token, c) == []


def test_ctrl_c_stops_the_remote_groups_within_the_grace_period(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    with cluster(tmp_path, {"srv": "server=1", "load": "loadgen=1"}) as c:
        lab = controller(config(write_config, duration=30.0), c, tmp_path / "out", "c")
        wait_until("wrk loading", lambda: len(host_groups(c, "c")) >= 2, lab)
        t0 = time.monotonic()
        lab.send_signal(signal.SIGINT)
        lab.communicate(timeout=60)
        assert lab.returncode == 130
        wait_until("every remote group stopped", lambda: not others(leak_token, c), None,
                   timeout_s=2 + 1 + 3)
        assert time.monotonic() - t0 < 2 + 1 + 8


def test_an_unreachable_scheduler_exits_2_with_one_line_naming_it_and_writes_nothing(
        write_config: Callable[..., Path], tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{free_port('127.0.0.1')}"  # nobody listens there
    t0 = time.monotonic()
    r = run_lab("run", config(write_config), "--scheduler", address, "--out",
                tmp_path / "out", timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and address in lines[0], r.stderr
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "out").exists()  # refused before a run folder was made


def test_client_processes_are_refused_with_a_scheduler_before_it_is_asked(
        write_config: Callable[..., Path], tmp_path: Path) -> None:
    text = CONFIG.format(lab="", users=4, duration=1.0).replace(
        'duration_s = 1.0\n', 'duration_s = 1.0\nclients = 2\n', 1)
    address = f"tcp://127.0.0.1:{free_port('127.0.0.1')}"
    r = run_lab("run", write_config(text), "--scheduler", address, "--out", tmp_path / "out")
    assert r.returncode == 2
    assert r.stderr.startswith("error: experiments.clients: experiment 'hello' has clients = 2")
    assert "add load hosts" in r.stderr and "unreachable" not in r.stderr


def test_a_remote_run_is_not_resumed_locally_by_mistake(
        write_config: Callable[..., Path], tmp_path: Path) -> None:
    """A run whose scheduler came from the command line, resumed without it, would measure
    its other cells on this machine: refused, with what to do."""
    done = run_lab("run", config(write_config, users=2, duration=0.3), "--experiment",
                   "article", "--out", tmp_path, "--run-id", "r")
    assert done.returncode == 0, done.stderr
    info = tmp_path / "r" / "run.json"
    recorded = json.loads(info.read_text())
    recorded["argv"] += ["--scheduler", "tcp://127.0.0.1:8786"]  # as a remote run records it
    info.write_text(json.dumps(recorded))
    r = run_lab("run", "--resume", tmp_path / "r")
    assert r.returncode == 2
    assert "resume it with --scheduler ADDRESS" in r.stderr and "Traceback" not in r.stderr
