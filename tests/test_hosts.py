"""``python -m lab hosts`` against a real Dask cluster on 127.0.0.1, an unreachable
scheduler, and the version comparison of server and load hosts."""

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Scheduler, SpecCluster, Worker

from lab.matrix.remote import Remote
from lab.remote.cluster import LAB, Host, connect, hosts
from lab.remote.hosts import differences, warnings
from tests.conftest import run_lab


def _worker(role: str, folder: Path) -> dict[str, object]:
    return {"cls": Worker, "options": {"host": "127.0.0.1", "resources": {role: 1},
                                       "nthreads": 1, "dashboard": False,
                                       "local_directory": str(folder)}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpecCluster]:
    """A scheduler and two workers in this process, one per role, bound to 127.0.0.1."""
    folder = tmp_path_factory.mktemp("dask")
    with SpecCluster(workers={"s": _worker("server", folder), "l": _worker("loadgen", folder)},
                     scheduler={"cls": Scheduler,
                                # its HTTP server starts anyway, on 8787 without
                                # an address, with a warning when that is taken
                                "options": {"host": "127.0.0.1", "dashboard": False,
                                            "dashboard_address": "127.0.0.1:0"}}) as c:
        yield c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_hosts_lists_each_worker_with_its_role_and_cores(cluster: SpecCluster) -> None:
    result = run_lab("hosts", "--scheduler", cluster.scheduler_address)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["worker", "host", "name", "address"]
    cores = str(len(os.sched_getaffinity(0)))
    rows = {line.split()[0]: line.split() for line in lines[2:4]}
    assert set(rows) == set(cluster.scheduler_info["workers"])
    assert sorted(row[3] for row in rows.values()) == ["loadgen", "server"]
    assert all(row[2] == "127.0.0.1" and row[4] == cores for row in rows.values())
    assert lines[4:] == []  # both roles present, the same versions: nothing to say


def test_hosts_takes_the_scheduler_of_a_config(cluster: SpecCluster, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[lab]\nscheduler = "{cluster.scheduler_address}"\n'
                      '[servers.uvicorn]\nworkers = [1]\n[[experiments]]\nname = "b"\n'
                      'kind = "burst"\nendpoints = ["/hello"]\nrequests = [1]\n',
                      encoding="utf-8")
    result = run_lab("hosts", config)
    assert result.returncode == 0, result.stderr
    assert {line.split()[0] for line in result.stdout.splitlines()[2:]} \
        == set(cluster.scheduler_info["workers"])


def test_hosts_gives_the_facts_of_each_worker(cluster: SpecCluster) -> None:
    with connect(Remote(cluster.scheduler_address)) as client:
        found = hosts(client)
    assert sorted(h.roles for h in found) == [("loadgen",), ("server",)]
    assert {h.name for h in found} == {socket.gethostname()}
    assert all(h.versions[LAB].startswith("0.") and "uvicorn" in h.versions for h in found)
    assert found[0].record() == {"name": socket.gethostname(), "address": "127.0.0.1",
                                 "cores": len(os.sched_getaffinity(0)),
                                 "cpu_model": found[0].cpu_model}


def test_an_unreachable_scheduler_is_one_line_and_exit_2() -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    result = run_lab("hosts", "--scheduler", address, timeout=30)
    assert time.monotonic() - started < 15
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: scheduler {address} is unreachable: no answer within 5 s (is `dask "
        "scheduler` running there?)"]


def test_hosts_needs_an_address() -> None:
    result = run_lab("hosts")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: give --scheduler ADDRESS, or a CONFIG whose lab.scheduler is set"]


def _host(name: str, address: str, roles: tuple[str, ...], uvicorn: str = "0.54.0",
          python: str = "3.11.7") -> Host:
    return Host(worker=f"tcp://{address}:1", address=address, name=name, roles=roles, cores=2,
                cpu_model="x", python=python, versions={LAB: "0.1.0", "uvicorn": uvicorn})


def test_versions_that_differ_between_server_and_load_hosts_are_named() -> None:
    server = _host("a", "10.0.0.1", ("server",))
    load = _host("b", "10.0.0.2", ("loadgen",), uvicorn="0.53", python="3.12.1")
    idle = _host("c", "10.0.0.3", (), uvicorn="0.1")  # no role: not part of a run
    assert differences([server, load, idle]) == [
        "versions differ: uvicorn 0.54.0 on server host a (10.0.0.1), 0.53 on load host b "
        "(10.0.0.2)",
        "versions differ: Python 3.11.7 on server host a (10.0.0.1), 3.12.1 on load host b "
        "(10.0.0.2)"]
    assert differences([server, _host("b", "10.0.0.2", ("loadgen",))]) == []


def test_a_missing_role_is_said() -> None:
    assert warnings([_host("a", "10.0.0.1", ("server",))]) == [
        "no load host (no worker with resources loadgen=1)"]
    assert warnings([_host("a", "10.0.0.1", ("server", "loadgen"))]) == []
