"""The server host's side of a run on remote hosts: a Dask actor that serves each server
configuration with the local supervisor and measures it between the load's window marks.

``ServerHost`` lives on the worker that has the ``server`` resource, one per run. It starts
each configuration's group with ``lab.supervise.process.start`` (the guard, the ledger of this
host's run folder), bound to the address the scheduler knows this worker by, and waits until
it is ready. Between a load host's ``begin`` and ``end`` it measures its own process tree's
CPU and memory and the wrapper's per-worker figures, as the local window does.

A controller that dies leaves its actor here and its server serving (Dask does not stop a
task whose client is gone): the actor holds a lease that the controller renews every
``lease_s / 4``; a thread that finds it unrenewed for ``lease_s`` stops the group.
"""

import asyncio
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psutil

from lab.errors import LabError
from lab.load import loop
from lab.load.monitor import Usage, Window
from lab.matrix.config import Cell, Experiment, LabSettings
from lab.remote import hostdir
from lab.servers import ADAPTERS
from lab.supervise import appcheck
from lab.supervise.launch import Launch
from lab.supervise.process import (
    AppNotReady,
    Server,
    ServerExited,
    ServerStartError,
    StopReport,
    log_tail,
    start,
)
from lab.supervise.reaper import Ledger


class LeaseExpired(LabError):
    """The controller stopped renewing its lease: this host stopped the run's server."""


@dataclass(frozen=True)
class Started:
    """A ready server, as the controller records it."""

    host: str  # the address it is bound to: this worker's, as the scheduler reports it
    port: int
    pids: list[int]
    ready_s: float
    argv: list[str]
    env: dict[str, str]
    cwd: str
    command: str


@dataclass(frozen=True)
class Refused:
    """A start that failed: ``kind`` is "app" (its ready path answers wrongly: every later
    start would too), "exited" (before it was ready: its configuration's), or "start"."""

    kind: str
    reason: str
    log_tail: str


async def daemon_cpu_pct(seconds: float, dask_worker: Any) -> float:
    """Run on a worker's event loop (``Client.run``, which awaits it): the CPU its Dask
    daemon (this worker process and its nanny, if any) used over ``seconds`` while idle, in %
    of a core: what it takes from the servers it runs beside. (Dask gives ``dask_worker``.)"""
    me = psutil.Process()
    parent = me.parent() if dask_worker.nanny else None
    daemon = [me, *([parent] if parent else [])]

    def cpu() -> float:
        return sum(sum(p.cpu_times()[:2]) for p in daemon)

    t0, c0 = time.perf_counter(), cpu()
    await asyncio.sleep(seconds)
    return 100.0 * (cpu() - c0) / (time.perf_counter() - t0)


def worker_host() -> str:
    """The host part of this Dask worker's address: where its servers listen."""
    from distributed import get_worker

    host = urlsplit(get_worker().address).hostname
    assert host, "a worker's address has a host"
    return host


class ServerHost:
    """One run's servers on this host (a Dask actor: its methods run in the worker)."""

    def __init__(self, run_id: str, lease_s: float, grace_s: float) -> None:
        self.path = hostdir.folder(run_id, lease_s)
        self.ledger = Ledger(self.path)
        self.lease_s, self.grace_s = lease_s, grace_s
        self.renewed = time.monotonic()
        self.expired = False
        self.server: Server | None = None
        self.window: Window | None = None
        self._lock = threading.Lock()  # the watcher and a method never stop a group at once
        self._closed = threading.Event()
        threading.Thread(target=self._watch, name="lab-lease", daemon=True).start()

    async def renew(self) -> bool:
        """The controller is alive (run on the worker's event loop, so a long start in the
        actor's thread does not delay it); False once the lease has expired."""
        if not self.expired:
            self.renewed = time.monotonic()
            hostdir.renew(self.path)
        return not self.expired

    async def held(self) -> bool:
        """Is the lease still held? Asked by the load tasks, which stop when it is not."""
        return not self.expired

    def start(self, cell: Cell, lab: LabSettings) -> Started | Refused:
        self.stop()
        self._check()
        host, adapter, launch = worker_host(), ADAPTERS[cell.server], Launch.for_cell(lab, cell)
        h2c = cell.h2c
        assert isinstance(h2c, tuple), "the controller serves no h2 cell to a server without h2c"
        try:
            server = start(
                lambda port: adapter.argv(sys.executable, launch.app, host, port,
                                          cell.workers, dict(cell.options), h2c),
                host, cell.workers, self.path / "logs" / f"{cell.id}.log",
                lab.start_timeout_s, check=self._check, ledger=self.ledger, env=launch.env,
                readiness=launch.readiness, app_dir=launch.app_dir)
        except AppNotReady as e:
            return Refused("app", e.reason, e.log_tail)
        except ServerExited as e:
            return Refused("exited", e.reason, e.log_tail)
        except ServerStartError as e:
            return Refused("start", e.reason, e.log_tail)
        with self._lock:
            if self.expired:  # the watcher came first: this server is not watched
                server.stop(self.grace_s)
                raise LeaseExpired(self._expired_text())
            self.server = server
        assert server.ready_s is not None
        return Started(host, server.port, server.pids(), server.ready_s, server.argv,
                       server.env, str(server.cwd), server.command)

    def pids(self) -> list[int]:
        return self.server.pids() if self.server else []

    def answers(self) -> bool:
        return self.server is not None and self.server.answers()

    def log(self) -> str:
        """The running server's log so far ("" without one)."""
        if self.server is None:
            return ""
        try:
            return self.server.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self) -> str:
        return log_tail(self.server.log_path) if self.server else ""

    def check_app(self, experiments: Sequence[Experiment]) -> list[appcheck.Answer]:
        """The app check of the run's first server, asked on this host (it times the
        server's CPU per request)."""
        assert self.server is not None
        return loop.run(appcheck.ask(self.server.base_url, sorted(self.server.pids()),
                                     experiments))

    def settle(self, timeout_s: float) -> float:
        assert self.server is not None
        return Window(self.server.pids(), self.server.meter).settle(timeout_s, self._check)

    def begin(self, loop_meter: bool) -> None:
        """A load host's window begins: the server's side of it too."""
        assert self.server is not None
        server = self.server
        self.window = Window(server.pids(), server.meter, server.loop if loop_meter else None)
        self.window.start()

    def end(self) -> Usage:
        assert self.window is not None, "end() without begin()"
        window, self.window = self.window, None
        return window.end()

    def stop(self, hurry: bool = False) -> StopReport | None:
        """Stop the running server (None when none runs)."""
        with self._lock:
            server, self.server = self.server, None
            return server.stop(0.0 if hurry else self.grace_s) if server else None

    def close(self) -> StopReport | None:
        """The run is over: stop its server and the lease's watcher."""
        report = self.stop()
        self._closed.set()
        return report

    def _check(self) -> None:
        if self.expired:
            raise LeaseExpired(self._expired_text())

    def _expired_text(self) -> str:
        return (f"the controller's lease expired ({self.lease_s:g} s without renewal): "
                "this host stopped the run's server")

    def _watch(self) -> None:
        while not self._closed.wait(min(0.5, self.lease_s / 4)):
            if time.monotonic() - self.renewed > self.lease_s:
                with self._lock:
                    self.expired = True
                    server, self.server = self.server, None
                if server is not None:
                    server.stop(self.grace_s)
                return
