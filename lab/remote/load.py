"""A load host's side of a run on remote hosts: a Dask task that sends one cell's load (or
its share of it) with the lab's own engines, wrk included, from where it runs.

The task checks from its own host that the server answers, waits behind the cell's barrier
with the other load hosts, and measures. Latencies are taken on this host's monotonic clock
only; the first host's window also marks the server's (``RemoteWindow``), so the server's
CPU and the wrapper's figures cover the window the load was sent in. The task keeps its own
deadline (the cell timeout; wrk's ``-d`` and a subprocess timeout) and stops when the
controller says so: a task Dask has let go of keeps running otherwise.
"""

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import httpx

from lab.load import cell as load_cell
from lab.load.cell import Leash
from lab.load.histogram import Histogram
from lab.load.monitor import Usage, Window
from lab.load.processes import merge as merge_samples
from lab.load.samples import Measurement, Tally
from lab.load.stats import MachineShare
from lab.matrix.config import Cell
from lab.remote import hostdir
from lab.store.schema import LoadHostsFigures
from lab.supervise.process import Group
from lab.supervise.reaper import Ledger

ACTOR_TIMEOUT_S = 30.0  # a window mark on the server host: a round trip, not a wait
BARRIER_TIMEOUT_S = 60.0  # the other load hosts check the server and get ready
STOP_POLL_S = 0.25
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
    started: float  # time.time() when this host passed the barrier
    worker: str


class RemoteWindow(Window):
    """This host's window that also marks the server's on its host (``ServerHost``)."""

    def __init__(self, server: Any, loop_meter: bool) -> None:
        super().__init__()
        self._server, self._loop_meter = server, loop_meter
        self._begun: Any = None

    def settle(self, timeout_s: float, check: Any) -> float:
        return float(self._server.settle(timeout_s).result(timeout_s + ACTOR_TIMEOUT_S))

    def start(self) -> None:
        self._begun = self._server.begin(self._loop_meter)  # not waited for: a round trip
        super().start()

    def end(self) -> Usage:
        mine = super().end()
        self._begun.result(ACTOR_TIMEOUT_S)
        theirs: Usage = self._server.end().result(ACTOR_TIMEOUT_S)
        self.usage = replace(theirs, wall_s=mine.wall_s, client_cpu_s=mine.client_cpu_s,
                             max_gap_s=mine.max_gap_s)
        return self.usage


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
    from distributed import Event, Queue, get_worker

    deadline = time.monotonic() + order.cell_timeout_s
    stop = Event(order.barrier + "-stop")
    stopped = threading.Event()
    why = ["stopped by the controller"]

    def watch() -> None:
        """Stop when the controller says so or its lease on the server host is gone (a
        controller killed says nothing); keep this host's own lease while loading."""
        while not stopped.wait(STOP_POLL_S) and time.monotonic() < deadline:
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
    Queue(order.barrier).put(order.index)
    if not Event(order.barrier).wait(timeout=BARRIER_TIMEOUT_S):
        raise RuntimeError("the cell's other load hosts did not get ready")
    started = time.time()
    threading.Thread(target=watch, daemon=True).start()
    cell, i = order.cell, order.index
    leash = Leash(check, deadline, threads=len(os.sched_getaffinity(0)), spawn=lambda argv, name:
                  Group(argv, path / "logs" / f"{cell.id}.{name}.{i}.log", Ledger(path),
                        rusage_path=path / "logs" / f"{cell.id}.{name}.{i}.cpu.json"))

    def window() -> Window:
        return RemoteWindow(server, order.loop_meter) if i == 0 else Window()

    try:
        m = load_cell.measure(cell, order.engine, order.base_url, window, leash,
                              order.machine, load=order.share)
    finally:
        stopped.set()
    return Sent(m, started, get_worker().address)


def merge(sent: list[Sent], spread_limit: float) -> Measurement:
    """k load hosts' measurements as one: samples and counts summed, histograms merged, the
    server's side from the first host's window; the busiest host decides whether the load
    was the limit. One host's is its own, unchanged."""
    if len(sent) == 1:
        return sent[0].measurement
    first = sent[0].measurement
    starts = [s.started for s in sent]
    spread = max(starts) - min(starts)
    window_s = first.usage.wall_s
    hosts = LoadHostsFigures(len(sent), spread, spread > spread_limit * window_s)
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
