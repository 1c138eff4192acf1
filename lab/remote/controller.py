"""The controller of a run on remote hosts: a placement whose servers run on the worker with
the ``server`` resource and whose load comes from the workers with ``loadgen``.

The runner drives cells as it does locally; only the two sides move. Servers start in the
run's ``ServerHost`` actor on the server host (``lab.remote.server``); each cell's load is a
task on each load host (``lab.remote.load``), which sends its share behind a barrier and
measures there. The controller renews the actor's lease while it lives, sweeps every worker
before and after, and stops what runs when it stops, Ctrl-C included.
"""

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.kinds import get
from lab.load.processes import shares
from lab.load.stats import MachineShare, summarize
from lab.matrix.config import Cell, Experiment, LabSettings, Matrix
from lab.matrix.remote import Remote
from lab.remote import load, sweep
from lab.remote.cluster import Host, connect, hosts, live_workers
from lab.remote.hosts import differences, without_wrk
from lab.remote.server import Refused, ServerHost, Started, daemon_cpu_pct
from lab.store.schema import Figures
from lab.supervise import appcheck
from lab.supervise.process import AppNotReady, ServerExited, ServerStartError, StopReport

POLL_S = 0.1
WORKERS_EVERY_S = 1.0  # how often a cell asks the scheduler whether its load hosts are there
ACTOR_TIMEOUT_S = 30.0  # an actor call that is a round trip, not a wait
DAEMON_SAMPLE_S = 1.0  # the server host's worker daemon, idle, before the run


class NoHost(LabError):
    """The cluster lacks a role the run needs."""


@dataclass(frozen=True)
class Sides:
    """Where the run's two sides are: the server host and the load hosts."""

    server: Host
    load: tuple[Host, ...]

    @classmethod
    def of(cls, seen: Sequence[Host], scheduler: str) -> "Sides":
        servers = [h for h in seen if "server" in h.roles]
        loaders = [h for h in seen if "loadgen" in h.roles and h.worker != servers[0].worker] \
            if servers else []
        if not servers or not loaders:
            missing = "server=1" if not servers else "loadgen=1"
            raise NoHost(f"scheduler {scheduler} has no worker with resources {missing} "
                         f"(workers: {', '.join(h.worker for h in seen) or 'none'}); start "
                         f"one with: dask worker {scheduler} --resources \"{missing}\"")
        return cls(servers[0], tuple(loaders))

    @property
    def shared(self) -> bool:
        """A load host is the server host itself."""
        return any((h.name, h.address) == (self.server.name, self.server.address)
                   for h in self.load)

    def record(self, scheduler: str, daemon_cpu_pct: float | None) -> dict[str, Any]:
        """The results lines' placement: the local keys (each side has every CPU of its
        host), each side's host added, and the Dask daemon's idle CPU on the server host."""
        return {"server_cpus": "all", "client_cpus": "all",
                "server_cores": self.server.cores, "shared": self.shared,
                "scheduler": scheduler, "server_host": self.server.record(),
                "load_hosts": [h.record() for h in self.load],
                **({"daemon_cpu_pct": round(daemon_cpu_pct, 2)}
                   if daemon_cpu_pct is not None else {})}


class Lease(threading.Thread):
    """Renews the server host's lease every ``lease_s / 4`` while the controller lives."""

    def __init__(self, actor: Any, lease_s: float) -> None:
        super().__init__(name="lab-lease", daemon=True)
        self.actor, self.every = actor, lease_s / 4
        self.done = threading.Event()
        self.expired = False

    def run(self) -> None:
        while not self.done.wait(self.every):
            try:
                self.expired = not self.actor.renew().result(ACTOR_TIMEOUT_S)
            except Exception:  # a missed renewal is the lease's business: the next one tries
                continue


@dataclass
class RemoteServer:
    """A server on the server host, as the runner sees a local one."""

    actor: Any
    started: Started
    base_url: str
    log_path: Path  # the local copy of its log, written when it stops
    ready_s: float | None = field(init=False)

    def __post_init__(self) -> None:
        s = self.started
        self.ready_s, self.port, self.argv, self.env = s.ready_s, s.port, s.argv, s.env
        self.cwd, self.command = s.cwd, s.command

    def pids(self) -> list[int]:
        return list(self.actor.pids().result(ACTOR_TIMEOUT_S))

    def answers(self) -> bool:
        return bool(self.actor.answers().result(ACTOR_TIMEOUT_S))

    def log_tail(self) -> str:
        return str(self.actor.log_tail().result(ACTOR_TIMEOUT_S))

    def stop(self, grace_s: float, hurry: Callable[[], bool] = lambda: False) -> StopReport:
        text = str(self.actor.log().result(ACTOR_TIMEOUT_S))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text(text)
        report = self.actor.stop(hurry()).result(grace_s + ACTOR_TIMEOUT_S)
        return report or StopReport(0.0, False, None)


class RemoteRun:
    """What a run on remote hosts holds while it measures."""

    def __init__(self, remote: Remote, client: Any, sides: Sides, actor: Any,
                 run_id: str, machine: MachineShare, daemon_cpu_pct: float | None) -> None:
        self.remote, self.client, self.sides = remote, client, sides
        self.actor, self.run_id, self.machine = actor, run_id, machine
        self.placement = sides.record(remote.scheduler, daemon_cpu_pct)
        # what engine "auto" may use: the native load generators every load host has
        self.tools = frozenset.intersection(*(frozenset(h.tools) for h in sides.load))

    def start(self, cell: Cell, lab: LabSettings, log_path: Path) -> RemoteServer:
        """A ready server for ``cell`` on the server host; raises as the local start does."""
        outcome: Started | Refused = self.actor.start(cell, lab).result(
            lab.start_timeout_s + ACTOR_TIMEOUT_S)
        if isinstance(outcome, Refused):
            kind = {"app": AppNotReady, "exited": ServerExited}.get(outcome.kind,
                                                                   ServerStartError)
            raise kind(outcome.reason, outcome.log_tail)
        host = self.sides.server.address
        assert outcome.host == host, "the server binds the address the scheduler reports"
        url_host = f"[{host}]" if ":" in host else host
        return RemoteServer(self.actor, outcome, f"http://{url_host}:{outcome.port}",
                            log_path)

    def check_app(self, experiments: Sequence[Experiment]) -> list[appcheck.Answer]:
        return list(self.actor.check_app(experiments).result(ACTOR_TIMEOUT_S * 4))

    def measure(self, cell: Cell, server: RemoteServer, engine: str, lab: LabSettings,
                check: Callable[[], None]) -> Figures:
        """The cell's figures: its load split over the load hosts (1/k of the users or
        of the rate each), sent behind a barrier; ``check`` raises on Ctrl-C."""
        from distributed import Event, Queue

        loaders = self._live_loaders()
        exp = cell.experiment
        split = get(exp.kind).split if not cell.searched else None
        # users are whole (a closed loop's engines take an int), a rate is split exactly
        parts = [p if split == "rate" else int(p) for p in shares(cell.load, len(loaders),
                                                                  exp.kind)] \
            if split else [cell.load]
        loaders = loaders[:len(parts)]
        barrier = f"lab-{self.run_id}-{cell.id}-{uuid.uuid4().hex[:8]}"
        futures = [self.client.submit(
            load.run, load.Order(cell, engine, server.base_url, share, i, len(parts),
                                 self.run_id, barrier, lab.ready_path, lab.ready_status,
                                 lab.start_timeout_s, lab.cell_timeout_s,
                                 self.remote.lease_s, lab.loop_meter, self.machine),
            self.actor, workers=[h.worker], resources={"loadgen": 1},
            allow_other_workers=False, pure=False, key=f"{barrier}-load-{i}")
            for i, (h, share) in enumerate(zip(loaders, parts, strict=True))]
        stop = Event(barrier + "-stop", client=self.client)
        # Warm-ups start together; with k hosts, so does the window (one: a split kind's).
        gates = [barrier, *([f"{barrier}-w0"] if len(parts) > 1 else [])]
        try:
            for gate in gates:
                arrived = Queue(gate, client=self.client)
                for _ in futures:
                    self._wait(partial(_got, arrived), futures, loaders,
                               lab.start_timeout_s + 60, check)
                Event(gate, client=self.client).set()
            self._wait(lambda: all(f.done() for f in futures), futures, loaders,
                       lab.cell_timeout_s + 30, check)
            sent = [f.result() for f in futures]
        except BaseException:
            stop.set()  # a running task is not stopped for us: it is told to stop
            raise
        finally:
            self.client.cancel(futures)
        return summarize(load.merge(sent, self.remote.start_spread), self.machine)

    def _live_loaders(self) -> list[Host]:
        workers = live_workers(self.client)
        alive = [h for h in self.sides.load if h.worker in workers]
        if not alive:
            raise RuntimeError("no load host is left in the cluster: "
                               + ", ".join(f"{h.name} ({h.worker})" for h in self.sides.load))
        return alive

    def _wait(self, done: Callable[[], bool], futures: list[Any], loaders: list[Host],
              timeout_s: float, check: Callable[[], None]) -> None:
        """Until ``done()``; raises the first task's error, a load host that left the
        cluster, TimeoutError after ``timeout_s``, or what ``check`` raises."""
        deadline, asked = time.monotonic() + timeout_s, 0.0
        while not done():
            check()
            for f, h in zip(futures, loaders, strict=True):
                if f.status == "error":
                    e = f.exception()
                    raise RuntimeError(f"load host {h.name} ({h.address}): "
                                       f"{type(e).__name__}: {e}")
            if time.monotonic() - asked >= WORKERS_EVERY_S:  # a call to the scheduler
                asked, workers = time.monotonic(), live_workers(self.client)
                for f, h in zip(futures, loaders, strict=True):
                    if h.worker not in workers and not f.done():
                        raise RuntimeError(f"load host {h.name} ({h.worker}) left the "
                                           "cluster during the cell")
            if time.monotonic() > deadline:
                raise TimeoutError
            time.sleep(POLL_S)


def _got(queue: Any) -> bool:
    """One more host passed the barrier's queue (False when none came within a poll)."""
    try:
        queue.get(timeout=POLL_S)
        return True
    except TimeoutError:
        return False


@contextmanager
def running(matrix: Matrix, run_id: str, grace_s: float,
            out: Callable[[str], None]) -> Iterator[RemoteRun]:
    """Connect, choose the sides, sweep every worker, hold the server host's actor under
    its lease; on the way out stop everything and sweep again."""
    remote = matrix.lab.remote
    assert remote is not None
    client = connect(remote)
    try:
        seen = hosts(client)
        sides = Sides.of(seen, remote.scheduler)
        for line in differences([sides.server, *sides.load]) + without_wrk(list(sides.load)):
            out(f"warning: {line}")
        for message in _sweep(client):
            out(message)
        # Before any server starts: what the daemon alone takes from the server host.
        idle = client.run(daemon_cpu_pct, DAEMON_SAMPLE_S, workers=[sides.server.worker])
        daemon = idle.get(sides.server.worker)
        with client.as_current():  # the actor's handle binds to the client current now
            actor: Any = client.submit(ServerHost, run_id, remote.lease_s, grace_s, actor=True,
                                  workers=[sides.server.worker], allow_other_workers=False,
                                  pure=False).result(ACTOR_TIMEOUT_S)
        lease = Lease(actor, remote.lease_s)
        lease.start()
        try:
            cores = sides.server.cores
            yield RemoteRun(remote, client, sides, actor, run_id,
                            MachineShare(cores, sides.shared), daemon)
        finally:
            lease.done.set()
            try:
                actor.close().result(grace_s + ACTOR_TIMEOUT_S)
            finally:
                for message in _sweep(client, finished=run_id):
                    out(message)
    finally:
        client.close()


def _sweep(client: Any, finished: str | None = None) -> list[str]:
    return [m for messages in client.run(sweep.sweep, finished).values() for m in messages]
