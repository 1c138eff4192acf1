"""A load host's side of a run on remote hosts: a Dask task that sends one cell's load (or
its share of it) with the lab's own engines, wrk included, from where it runs.

The task checks from its own host that the server answers, waits behind the cell's barrier
with the other load hosts, and measures. Latencies are taken on this host's monotonic clock
only; the first host's window also marks the server's (``HostWindow``), so the server's
CPU and the wrapper's figures cover the window the load was sent in. The task keeps its own
deadline (the cell timeout; wrk's ``-d`` and a subprocess timeout) and stops when the
controller says so: a task Dask has let go of keeps running otherwise.
"""

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx

from lab.load import cell as load_cell
from lab.load.histogram import Histogram
from lab.load.monitor import Usage, Window
from lab.load.processes import merge as merge_samples
from lab.load.samples import Measurement, Tally
from lab.load.stats import MachineShare
from lab.load.wrk import Supervision
from lab.matrix.config import Cell
from lab.remote import hostdir
from lab.store.schema import LoadHostsFigures
from lab.supervise.process import Group
from lab.supervise.reaper import Ledger

ACTOR_TIMEOUT_S = 30.0  # a window mark on the server host: a round trip, not a wait
BARRIER_TIMEOUT_S = 60.0  # the other load hosts check the server and get ready
POLL_S = 0.25  # how often a wait (a barrier, the server host, the watch) looks again
HELD_TIMEOUT_S = 2.0  # an actor dropped with its controller never answers: not held


@dataclass(frozen=True)
class Order:
    """What one load host is asked to send: its ``share`` of the cell's load (users or a
    rate), as host ``index`` of ``hosts``."""

    cell: Cell
    engine: str
    base_url: str
    share: float
    index: int
    hosts: int
    run_id: str
    barrier: str  # the cell's Dask Queue (ready hosts) and Events (go; "-stop": stop)
    ready_path: str
    ready_status: int
    start_timeout_s: float
    cell_timeout_s: float
    lease_s: float
    loop_meter: bool
    machine: MachineShare


@dataclass
class Sent:
    measurement: Measurement
    started: float | None  # time.time() when its window passed the barrier (k > 1)
    worker: str


def answer(call: Any, timeout_s: float, check: Callable[[], None]) -> Any:
    """An actor call's result, waited for in slices so that ``check`` can abandon the wait:
    an actor dropped with its controller never answers (its call's future never resolves)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call.result(POLL_S)
        except TimeoutError:
            check()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the server host did not answer within {timeout_s:g} s") from None


class HostWindow(Window):
    """A load host's window. With several load hosts it starts when theirs do (``aligned``
    waits at the cell's window barrier and gives the wall time it passed it); on the first
    host it also marks the server's window on its host (``ServerHost``) and settles it.
    ``check`` raises to abandon a wait for the server host."""

    def __init__(self, server: Any | None, loop_meter: bool,
                 aligned: Callable[[], float] | None, check: Callable[[], None]) -> None:
        super().__init__()
        self._server, self._loop_meter, self._aligned = server, loop_meter, aligned
        self._check = check
        self._begun: Any = None
        self.started: float | None = None  # time.time() when it passed the window barrier

    def settle(self, timeout_s: float, check: Callable[[], None]) -> float:
        if self._server is None:
            return 0.0  # the first host settles the server for all
        return float(answer(self._server.settle(timeout_s), timeout_s + ACTOR_TIMEOUT_S,
                            check))

    def start(self) -> None:
        if self._aligned is not None:
            self.started = self._aligned()
        if self._server is not None:
            self._begun = self._server.begin(self._loop_meter)  # not waited for: a round trip
        super().start()

    def end(self) -> Usage:
        mine = super().end()
        if self._server is None:
            return mine
        answer(self._begun, ACTOR_TIMEOUT_S, self._check)
        theirs: Usage = answer(self._server.end(), ACTOR_TIMEOUT_S, self._check)
        self.usage = replace(theirs, wall_s=mine.wall_s, client_cpu_s=mine.client_cpu_s,
                             max_gap_s=mine.max_gap_s)
        return self.usage


def barrier(name: str, index: int, check: Callable[[], None]) -> float:
    """Say this host is at barrier ``name`` and wait until the controller lets every host
    through (``check`` raises meanwhile to abandon it); the wall time it passed."""
    from distributed import Event, Queue

    Queue(name).put(index)
    go, waited = Event(name), 0.0
    while not go.wait(timeout=POLL_S):
        check()
        waited += POLL_S
        if waited > BARRIER_TIMEOUT_S:
            raise RuntimeError(f"the cell's other load hosts did not reach {name}")
    return time.time()


def ready(url: str, status: int, timeout_s: float) -> None:
    """Wait until ``url`` answers ``status`` from this host; RuntimeError after ``timeout_s``."""
    deadline, last = time.monotonic() + timeout_s, "no answer"
    with httpx.Client(timeout=httpx.Timeout(2.0), trust_env=False) as client:
        while time.monotonic() < deadline:
            try:
                answer = client.get(url)
                if answer.status_code == status:
                    return
                last = f"HTTP {answer.status_code}"
            except httpx.HTTPError as e:
                last = type(e).__name__
            time.sleep(0.05)
    raise RuntimeError(f"{url} does not answer {status} from load host {os.uname().nodename} "
                       f"within {timeout_s:g} s (last: {last})")


def run(order: Order, server: Any) -> Sent:
    """The Dask task: ``server`` is the run's ``ServerHost`` actor."""
    from distributed import Event, get_worker

    deadline = time.monotonic() + order.cell_timeout_s
    stop = Event(order.barrier + "-stop")
    stopped = threading.Event()
    why = ["stopped by the controller"]

    def watch() -> None:
        """Stop when the controller says so or its lease on the server host is gone (a
        controller killed says nothing); keep this host's own lease while loading."""
        while not stopped.wait(POLL_S) and time.monotonic() < deadline:
            try:
                if stop.is_set():
                    stopped.set()
                elif not server.held().result(HELD_TIMEOUT_S):
                    why[0] = "the controller's lease on the server host expired"
                    stopped.set()
            except Exception as e:  # the actor is gone with its controller, or its host
                why[0] = f"the server host's actor did not answer ({type(e).__name__})"
                stopped.set()
            if not stopped.is_set():
                hostdir.renew(path)

    def check() -> None:
        if stopped.is_set():
            raise RuntimeError(why[0])
        if time.monotonic() > deadline:
            raise TimeoutError

    path = hostdir.folder(order.run_id, order.lease_s)
    ready(order.base_url + order.ready_path, order.ready_status, order.start_timeout_s)
    threading.Thread(target=watch, daemon=True).start()
    barrier(order.barrier, order.index, check)  # warm-ups together, then each window
    cell, i = order.cell, order.index
    logs = path / "logs"
    sup = Supervision(
        spawn=lambda argv, name: Group(argv, logs / f"{cell.id}.{name}.{i}.log", Ledger(path),
                                       rusage_path=logs / f"{cell.id}.{name}.{i}.cpu.json"),
        check=check, deadline=deadline, threads=len(os.sched_getaffinity(0)))
    windows: list[HostWindow] = []

    def window() -> Window:
        gate = f"{order.barrier}-w{len(windows)}"  # the controller's k-host window: -w0
        aligned = (lambda: barrier(gate, i, check)) if order.hosts > 1 else None
        windows.append(HostWindow(server if i == 0 else None, order.loop_meter, aligned,
                                  check))
        return windows[-1]

    try:
        m = load_cell.measure(cell, order.engine, order.base_url, window, sup,
                              order.machine, load=order.share)
    finally:
        stopped.set()
    return Sent(m, windows[-1].started if windows else None, get_worker().address)


def merge(sent: list[Sent], spread_limit: float) -> Measurement:
    """k load hosts' measurements as one: samples and counts summed, histograms merged, the
    server's side from the first host's window; the busiest host decides whether the load
    was the limit. One host's is its own, unchanged."""
    if len(sent) == 1:
        return sent[0].measurement
    first = sent[0].measurement
    starts = [s.started for s in sent if s.started is not None]
    spread = max(starts) - min(starts) if len(starts) == len(sent) else None
    window_s = first.usage.wall_s
    hosts = LoadHostsFigures(len(sent), spread,
                             spread is not None and spread > spread_limit * window_s)
    ms = [s.measurement for s in sent]
    merged = merge_samples(ms, first.usage)
    parts = replace(first.parts, open=merged.parts.open, processes=merged.parts.processes,
                    load_hosts=hosts)
    counted = None
    if all(m.counted is not None for m in ms):  # wrk, h2load: counts, no samples
        counted = Tally(0, Counter(), Counter(), Histogram())
        for m in ms:
            assert m.counted is not None
            counted = Tally(counted.ok + m.counted.ok, counted.errors + m.counted.errors,
                            counted.pids + m.counted.pids,
                            counted.histogram.merge(m.counted.histogram))
    walls = [m.wall_s for m in ms if m.wall_s is not None]
    return Measurement(merged.samples, merged.usage, parts, counted,
                       max(walls) if walls else None)
