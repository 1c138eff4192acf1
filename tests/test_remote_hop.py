"""A run on remote hosts across a real network hop, with TLS: the scheduler and a `server`
worker in one network namespace, a `loadgen` worker and the controller in another, joined by
a veth pair; the servers bind the server side's address and the load crosses the interface."""

import os
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, suppress
from pathlib import Path

import psutil
import pytest

from lab.remote.hostdir import ROOT_ENV
from lab.store.results import RunDir
from tests import netns
from tests.conftest import json_lines
from tests.tlsfiles import TlsFiles, write_certificates

ROOT = Path(__file__).resolve().parent.parent
SCHEDULER_PORT = 8786  # a fresh namespace has every port free
# Each step's bound; with the three stops' grace (3 s each) they stay under 60 s in all.
START_S = 15.0  # the scheduler listening (it took ~1 s here)

CONFIG = """
[lab]
stop_grace_s = 2
cell_timeout_s = 60

[servers.uvicorn]
workers = [1]

[[experiments]]
name = "hello"
kind = "closed"
endpoints = ["/hello"]
users = [8]
duration_s = 1.0
warmup_s = 0.2

[[experiments]]
name = "article"
kind = "burst"
endpoints = ["/non-blocking"]
requests = [10]
params = { delay = 0.05 }
"""


def _dask(command: str, *args: str) -> list[str]:
    """The `dask` command of this venv (its python: the workers then import lab)."""
    return [str(Path(sys.executable).with_name("dask")), command, *args]


def _tls_args(tls: TlsFiles) -> list[str]:
    return ["--tls-ca-file", tls.ca_file, "--tls-cert", tls.cert_file, "--tls-key", tls.key_file]


def _worker(address: str, host: str, role: str, tls: TlsFiles, scratch: Path) -> list[str]:
    return _dask("worker", address, "--host", host, "--resources", f"{role}=1",
                 "--no-dashboard", "--nthreads", "4", "--local-directory", str(scratch),
                 "--death-timeout", str(START_S), *_tls_args(tls))


def _wait_listening(hop: netns.Hop, ns: str, port: int, timeout_s: float) -> None:
    """Until something listens on ``port`` in ``ns`` (the scheduler took its port)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listening = hop.run(ns, ["ss", "-Hltn", f"sport = :{port}"], timeout=5).stdout
        if listening.strip():
            return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on port {port} in {ns} after {timeout_s} s")


@pytest.fixture
def hop_reason() -> None:
    reason = netns.skip_reason()
    if reason:
        pytest.skip(reason)


def _lab(*args: str) -> list[str]:
    return [sys.executable, "-m", "lab", *args]


def test_a_run_sends_its_load_across_the_hop_to_the_server_host(
        hop_reason: None, tmp_path: Path, leak_token: str) -> None:
    config = tmp_path / "hop.toml"
    config.write_text(CONFIG)
    env = {**os.environ, ROOT_ENV: str(tmp_path / "hosts")}
    with netns.hosts("lab-hop") as hop, ExitStack() as files:
        tls = write_certificates(tmp_path / "tls", [hop.server_ip, hop.load_ip])
        address = f"tls://{hop.server_ip}:{SCHEDULER_PORT}"
        logs = {name: files.enter_context((tmp_path / f"{name}.log").open("w"))
                for name in ("scheduler", "server-worker", "load-worker")}
        hop.popen(hop.server_ns, _dask("scheduler", "--host", hop.server_ip, "--port",
                                       str(SCHEDULER_PORT), "--no-dashboard", "--protocol",
                                       "tls", *_tls_args(tls)),
                  cwd=ROOT, env=env, stdout=logs["scheduler"], stderr=subprocess.STDOUT)
        _wait_listening(hop, hop.server_ns, SCHEDULER_PORT, START_S)
        hop.popen(hop.server_ns, _worker(address, hop.server_ip, "server", tls,
                                         tmp_path / "server-scratch"),
                  cwd=ROOT, env=env, stdout=logs["server-worker"], stderr=subprocess.STDOUT)
        hop.popen(hop.load_ns, _worker(address, hop.load_ip, "loadgen", tls,
                                       tmp_path / "load-scratch"),
                  cwd=ROOT, env=env, stdout=logs["load-worker"], stderr=subprocess.STDOUT)
        # As a user would: `hosts` until it lists both roles, from the load host.
        flags = ["--scheduler", address, *_tls_args(tls)]
        deadline = time.monotonic() + START_S
        while True:
            listed = hop.run(hop.load_ns, _lab("hosts", *flags), timeout=30, cwd=ROOT, env=env)
            if hop.server_ip in listed.stdout and hop.load_ip in listed.stdout:
                break
            assert time.monotonic() < deadline, listed.stdout + listed.stderr
            time.sleep(0.2)
        assert "no server host" not in listed.stdout and "no load host" not in listed.stdout
        ran = hop.run(hop.load_ns, _lab("run", str(config), *flags, "--out",
                                        str(tmp_path / "out"), "--run-id", "hop"),
                      timeout=180, cwd=ROOT, env=env)
        hop.stop_all()
        assert netns.pids(hop.server_ns) == [] and netns.pids(hop.load_ns) == []
        names = (hop.server_ns, hop.load_ns)
    assert not set(names) & netns.namespaces()
    assert ran.returncode == 0, ran.stderr[-3000:] + "".join(
        f"\n--- {name}\n" + (tmp_path / f"{name}.log").read_text()[-1500:] for name in logs)
    lines = json_lines(RunDir.existing(tmp_path / "out" / "hop"))
    assert [r["status"] for r in lines] == ["ok", "ok"]
    for r in lines:
        place = r["placement"]
        assert place["server_host"]["address"] == hop.server_ip
        assert [h["address"] for h in place["load_hosts"]] == [hop.load_ip]
        assert place["shared"] is False
    closed = next(r["figures"] for r in lines if r["kind"] == "closed")
    assert closed["ok"] > 100 and closed["server_cpu_pct"] > 0
    # The server host's kernel accepted wrk's 8 connections in the window: the load came
    # over the veth into the server's namespace.
    assert closed["tcp_opens"] >= 8
    report = (tmp_path / "out" / "hop" / "report.md").read_text()
    assert f"load from {socket.gethostname()} ({hop.load_ip}" in report
    assert f"over the network via the scheduler {address}" in report


def test_the_namespaces_and_what_ran_in_them_go_also_when_a_test_fails(hop_reason: None) -> None:
    with pytest.raises(RuntimeError, match="the test failed"), netns.hosts("lab-hop") as hop:
        names = (hop.server_ns, hop.load_ns)
        hop.popen(hop.server_ns, ["sleep", "60"])
        # One that left its process group: only `ip netns pids` still finds it.
        # (Popen returns once its child has exec'd, so after its setsid.)
        hop.run(hop.load_ns, [sys.executable, "-c", "import subprocess; subprocess.Popen("
                              "['sleep', '60'], start_new_session=True, "
                              "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)"], timeout=10)
        left = netns.pids(hop.server_ns) + netns.pids(hop.load_ns)
        assert len(left) == 2
        raise RuntimeError("the test failed")
    assert not set(names) & netns.namespaces()
    for pid in left:  # gone, or a zombie its new parent has not reaped yet
        with suppress(psutil.NoSuchProcess):
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
