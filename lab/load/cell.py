"""One cell's load, wherever it is sent from: the engine, the knee search, client processes.

The runner calls it with the local server's window; a load host of a run on remote hosts
(``lab.remote.load``) calls it with a window that marks the remote server's. Both keep the
cell on the same leash (``wrk.Supervision``): a check that raises to abandon it, a deadline,
and how a native load generator is spawned.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any, TypeVar

from lab.kinds import get
from lab.load import h2load, knee, loop, processes, wrk
from lab.load.monitor import Window
from lab.load.samples import Measurement
from lab.load.stats import MachineShare, summarize
from lab.load.window import quiet_gc
from lab.matrix.config import Cell, Experiment

T = TypeVar("T")
NATIVE = {"wrk": wrk.run, "h2load": h2load.run}  # supervised load generators: engine → run


async def unguarded(aw: Awaitable[T]) -> T:
    return await aw


Guard = Callable[[Awaitable[Any]], Coroutine[Any, Any, Any]]


def measure(cell: Cell, engine: str, base_url: str, window: Callable[[], Window],
            sup: wrk.Supervision, machine: MachineShare, guard: Guard = unguarded,
            load: float | None = None) -> Measurement:
    """The cell's measurement at ``load`` (default: the cell's own), with ``engine``;
    ``window()`` gives each measured window (a knee search measures several). ``sup`` keeps
    every engine on the cell's leash (native ones run as its supervised groups); ``guard``
    runs the in-process engines' coroutine so that a signal cancels it."""
    exp = replace(cell.experiment, engine=engine)
    endpoint = cell.endpoint.closing() if exp.connection == "close" else cell.endpoint
    load = cell.load if load is None else load
    if exp.engine in NATIVE:
        return NATIVE[exp.engine](base_url, exp, endpoint, int(load), window(), sup)

    def at(load: float, e: Experiment, w: Window) -> Measurement:
        with quiet_gc():
            if e.clients > 1:  # only a kind that splits its load accepts clients = k
                return processes.run(e.kind, base_url, e, endpoint, load, w, sup.check)
            coro = get(e.kind).runner(base_url, e, endpoint, load, w)
            left = max(0.0, sup.deadline - time.monotonic())
            return loop.run(guard(asyncio.wait_for(coro, left)))

    if not cell.searched:
        return at(load, exp, window())
    assert exp.slo_p99_ms is not None, "the config requires slo_p99_ms with rates = auto"

    def limited(m: Measurement) -> bool:
        f = summarize(m, machine)
        return f.client_limited or bool(f.open and f.open.client_behind)

    def probe(rate: float, seconds: float) -> Measurement:
        w = window()
        w.settle(exp.timeout_s, sup.check)  # an overloaded probe's backlog is not the next's
        return at(rate, replace(exp, duration_s=seconds), w)

    m, found = knee.search(probe, limited, exp.slo_p99_ms, exp.knee_window_s,
                           exp.duration_s, exp.knee_max_rps)
    m.parts = replace(m.parts, knee=found)
    return m
