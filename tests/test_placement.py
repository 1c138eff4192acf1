"""Placement: servers and client on CPUs of their own, visible in /proc for every process.

The pinning test runs the real CLI: while a wrk cell loads a two-worker server, every
process of the run is read from /proc (``Cpus_allowed_list``). The machine has at least 2
cores here; with fewer the test is skipped.
"""

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from lab.errors import ConfigError
from lab.matrix.placement import Placement, format_cpuset, parse_cpuset
from tests.conftest import ROOT, carrying, run_lab

USABLE = frozenset(os.sched_getaffinity(0))


def allowed(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Cpus_allowed_list for {pid}")


@pytest.mark.parametrize(("text", "cpus"), [("0", {0}), ("0-1", {0, 1}), ("0,1", {0, 1}),
                                            (" 1 ", {1})])
def test_cpusets_parse(text: str, cpus: set[int]) -> None:
    if not cpus <= USABLE:
        pytest.skip("needs CPUs 0 and 1")
    assert parse_cpuset(text, "lab.server_cpus", USABLE) == cpus


@pytest.mark.parametrize("text", ["", "a", "1-", "3-1", "-1", "0,,1", "1.5"])
def test_bad_cpusets_name_the_key(text: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_cpuset(text, "lab.client_cpus", USABLE)
    assert e.value.path == "lab.client_cpus"


def test_a_cpu_this_machine_does_not_have_is_refused() -> None:
    with pytest.raises(ConfigError, match="not usable here"):
        parse_cpuset(str(max(USABLE) + 1), "lab.server_cpus", USABLE)


def test_kernel_list_format_round_trips() -> None:
    assert format_cpuset(frozenset({0, 1, 2, 3, 6, 8, 9})) == "0-3,6,8-9"
    assert parse_cpuset("0-3,6,8-9", "x", frozenset(range(10))) == {0, 1, 2, 3, 6, 8, 9}


@pytest.mark.parametrize(("cores", "server", "client"), [
    (2, None, None), (3, None, None), (4, {0, 1, 2}, {3}), (8, set(range(6)), {6, 7}),
    (16, set(range(12)), set(range(12, 16)))])
def test_default_partitions_from_four_cores(cores: int, server: set[int] | None,
                                            client: set[int] | None) -> None:
    p = Placement.default(frozenset(range(cores)))
    assert (p.server_cpus, p.client_cpus) == (server, client)


def test_only_one_cpuset_is_a_config_error(write_config: Callable[..., Path]) -> None:
    path = write_config('[lab]\nserver_cpus = "0"\n[servers.uvicorn]\nworkers = [1]\n'
                        '[[experiments]]\nname = "a"\nkind = "burst"\nendpoints = ["/hello"]\n'
                        'requests = [1]\n')
    result = run_lab("validate", path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: lab.client_cpus: is required when "
                                     "lab.server_cpus is set")


PINNED = """
[lab]
server_cpus = "1"
client_cpus = "0"
restart = "cell"

[servers.{server}]
workers = [2]

[[experiments]]
name = "load"
kind = "closed"
endpoints = ["/hello"]
users = [4]
duration_s = 2
warmup_s = 0
"""


@pytest.mark.servers
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
@pytest.mark.skipif(not {0, 1} <= USABLE, reason="needs CPUs 0 and 1")
@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_every_server_process_and_the_client_run_on_their_own_cpus(
        server: str, write_config: Callable[..., Path], tmp_path: Path,
        leak_token: str) -> None:
    path = write_config(PINNED.format(server=server))
    lab = subprocess.Popen([sys.executable, "-m", "lab", "run", str(path), "--out",
                            str(tmp_path), "--run-id", "p"], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[int, tuple[str, str, int]] = {}  # pid → (command, CPUs, process group)
    deadline = time.monotonic() + 30
    try:
        while lab.poll() is None and time.monotonic() < deadline:
            for pid in carrying(leak_token):
                try:
                    name = " ".join(psutil.Process(pid).cmdline()[:3])
                    seen[pid] = (name, allowed(pid), os.getpgid(pid))
                except (psutil.Error, OSError):
                    continue
            if any(name.startswith("wrk") for name, _, _ in seen.values()):
                break  # wrk runs: the server and all its workers are up
            time.sleep(0.05)
    finally:
        out, err = lab.communicate(timeout=60)
    assert lab.returncode == 0, out + err
    wrk = [cpus for name, cpus, _ in seen.values() if name.startswith("wrk")]
    # the server that answered the app check, then the one measured: each its own group
    groups = sorted({group for name, _, group in seen.values() if f"-m {server}" in name})
    assert 1 <= len(groups) <= 2
    # each server's whole group: its guard, main process, both workers, any helper
    in_group = {g: [cpus for _, cpus, group in seen.values() if group == g] for g in groups}
    lab_itself = [cpus for pid, (_, cpus, _) in seen.items() if pid == lab.pid]
    assert wrk == ["0"]
    assert lab_itself == ["0"]  # the client of the in-process engines
    assert max(map(len, in_group.values())) >= 4
    assert all(set(cpus) == {"1"} for cpus in in_group.values())
    report = (tmp_path / "p" / "report.md").read_text()
    assert "servers on CPUs 1, the client on CPUs 0 (no sharing)" in report
