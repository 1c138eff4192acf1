"""Several client processes for one closed or open cell (``clients = k``).

One Python process tops out near one core; k processes share the load (users, or the
arrival rate) and their samples merge exactly. They start first, say they are ready, and
are then given one common ``begin`` on the shared monotonic clock, so all measure the same
window. They ignore Ctrl-C (the lab stops them) and die with the lab (PR_SET_PDEATHSIG).
"""

import ctypes
import multiprocessing as mp
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection

from lab.kinds import get
from lab.load import loop
from lab.load.monitor import Usage, Window
from lab.load.samples import Measurement
from lab.load.window import quiet_gc
from lab.matrix.config import Experiment
from lab.matrix.endpoint import Endpoint
from lab.store.schema import KindFigures, OpenFigures, ProcessesFigures

READY_TIMEOUT_S = 30.0
PR_SET_PDEATHSIG = 1


def _child(conn: Connection, kind: str, base_url: str, exp: Experiment, endpoint: Endpoint,
           load: float) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    conn.send("ready")
    begin = conn.recv()
    with quiet_gc():
        m = loop.run(get(kind).runner(base_url, exp, endpoint, load, Window(), begin))
    conn.send(m)


def shares(load: float, k: int, kind: str) -> list[float]:
    """Users split as evenly as integers allow; a rate split exactly."""
    if get(kind).split == "rate":
        return [load / k] * k
    load = int(load)
    return [float(load // k + (i < load % k)) for i in range(k) if load // k + (i < load % k)]


def _sleep_until(t: float, check: Callable[[], None]) -> None:
    while (left := t - time.perf_counter()) > 0:
        check()
        time.sleep(min(left, 0.05))


def _wait(conn: Connection, timeout_s: float, check: Callable[[], None]) -> bool:
    deadline = time.perf_counter() + timeout_s
    while not conn.poll(0.05):
        check()
        if time.perf_counter() >= deadline:
            return False
    return True


def run(kind: str, base_url: str, exp: Experiment, endpoint: Endpoint, load: float,
        window: Window, check: Callable[[], None]) -> Measurement:
    """``check`` is called while waiting and raises to abandon the cell (Ctrl-C)."""
    ctx = mp.get_context("spawn")  # no fork: the lab may have threads
    parts = shares(load, exp.clients, kind)
    by_rate = get(kind).split == "rate"
    pipes, procs = [], []
    try:
        for part in parts:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_child, args=(child, kind, base_url, exp, endpoint,
                                                  part if by_rate else int(part)),
                            daemon=True)
            p.start()
            pipes.append(parent)
            procs.append(p)
        for conn in pipes:
            if not _wait(conn, READY_TIMEOUT_S, check) or conn.recv() != "ready":
                raise RuntimeError("a client process did not start")
        begin = time.perf_counter() + 0.05
        for i, conn in enumerate(pipes):
            # A rate (open model): stagger the processes' schedules so arrivals interleave.
            conn.send(begin + (i / load if by_rate else 0.0))
        start = begin + exp.warmup_s
        _sleep_until(start, check)
        window.start()
        _sleep_until(start + exp.duration_s, check)
        usage = window.end()
        deadline = exp.timeout_s + 10.0
        results: list[Measurement] = []
        for conn in pipes:
            if not _wait(conn, deadline, check):
                raise RuntimeError("a client process did not finish")
            results.append(conn.recv())
    finally:
        for p in procs:
            p.kill()
            p.join()
    return merge(results, usage)


def merge(results: list[Measurement], usage: Usage) -> Measurement:
    samples = [s for m in results for s in m.samples]
    client_cpu = sum(m.usage.client_cpu_s for m in results)
    opens = [o for m in results if (o := m.parts.open) is not None]
    merged = OpenFigures(
        target_rps=sum(o.target_rps or 0.0 for o in opens),
        scheduled=sum(o.scheduled for o in opens),
        send_lag_p99_ms=max(o.send_lag_p99_ms or 0.0 for o in opens),
        send_lag_max_ms=max(o.send_lag_max_ms or 0.0 for o in opens),
        client_behind=any(o.client_behind for o in opens),
        answer_span_s=max(o.answer_span_s or 0.0 for o in opens)) if opens else None
    # The busiest client process decides whether the client was the limit.
    busiest = max((m.usage.client_cpu_s for m in results), default=0.0)
    clients = ProcessesFigures(len(results),
                               100.0 * busiest / usage.wall_s if usage.wall_s else 0.0)
    return Measurement(samples, replace(usage, client_cpu_s=client_cpu),
                       KindFigures(open=merged, processes=clients))
