"""A real Dask cluster for tests: ``dask scheduler`` and ``dask worker`` processes on
127.0.0.1 (or the test's own addresses), each in a process group of its own, stopped with
SIGTERM then SIGKILL whatever the test did. Their run folders go to the test's own folder."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lab.remote.cluster import live_workers
from lab.remote.hostdir import ROOT_ENV
from lab.supervise.process import free_port
from tests.conftest import ROOT

START_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0


@dataclass
class Cluster:
    address: str
    hosts_dir: Path  # every worker's lab.remote.hostdir root
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a worker's (or the scheduler's) whole process group."""
        os.killpg(self.procs[name].pid, sig)

    def env(self) -> dict[str, str]:
        """The environment a controller run against this cluster gets in the test."""
        return {**os.environ, ROOT_ENV: str(self.hosts_dir)}


def wait_workers(address: str, names: Sequence[str], timeout_s: float,
                 procs: Mapping[str, subprocess.Popen[bytes]]) -> None:
    """Until every named worker has joined the scheduler (asked, not slept on)."""
    from distributed import Client

    deadline = time.monotonic() + timeout_s
    with Client(address, timeout=timeout_s, set_as_default=False) as client:
        while True:
            seen = {w["name"] for w in live_workers(client).values()}
            if set(names) <= seen:
                return
            for name, p in procs.items():
                assert p.poll() is None, f"{name} exited with {p.returncode}"
            assert time.monotonic() < deadline, f"workers {sorted(set(names) - seen)} not up"
            time.sleep(0.1)


def stop(procs: Mapping[str, subprocess.Popen[bytes]]) -> None:
    for p in procs.values():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs.values():
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)  # what the worker's nanny left, too
        except ProcessLookupError:
            pass
        p.wait()


@contextmanager
def cluster(folder: Path, workers: Mapping[str, str], host: str = "127.0.0.1",
            env_of: Mapping[str, Mapping[str, str]] | None = None) -> Iterator[Cluster]:
    """A scheduler on ``host`` and one worker per entry of ``workers`` (name → its
    ``--resources``; ``env_of[name]``: what its environment changes), every one a process
    group of its own."""
    port = free_port(host)
    address = f"tcp://{host}:{port}"
    hosts_dir = folder / "hosts"
    env = {**os.environ, ROOT_ENV: str(hosts_dir)}
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(name: str, argv: list[str]) -> None:
        with (folder / f"{name}.log").open("wb") as log:
            procs[name] = subprocess.Popen([sys.executable, "-m", "dask", *argv], cwd=ROOT,
                                           env={**env, **(env_of or {}).get(name, {})},
                                           stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)

    try:
        spawn("scheduler", ["scheduler", "--host", host, "--port", str(port),
                            "--no-dashboard"])
        for name, resources in workers.items():
            spawn(name, ["worker", address, "--name", name, "--resources", resources,
                         "--host", host, "--nthreads", "4", "--no-dashboard",
                         "--death-timeout", "60"])
        wait_workers(address, list(workers), START_TIMEOUT_S, procs)
        yield Cluster(address, hosts_dir, procs)
    finally:
        stop(procs)
