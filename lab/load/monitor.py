"""CPU and memory of the server's process tree and of the lab itself, over a window.

Experiments call ``start()`` and ``end()`` around their measured window; between the two
a thread samples the server tree's resident memory, so a warm-up never counts. The kernel's
count of accepted TCP connections over the window is the server side's own figure of how
many connections the load opened (``connection = "close"`` must open one per request).
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import psutil

from lab.load.inflight import Reading
from lab.load.loopreader import LoopReader
from lab.servers.loopmeter import Snapshot

SAMPLE_S = 0.1
SETTLE_POLL_S = 0.01
# A backlog that a blocked loop serves one by one leaves the meter at 0 for a moment between
# two requests (the next still in its socket): drained is 0 for this long.
SETTLE_QUIET_S = 0.05
SNMP = "/proc/net/snmp"


@dataclass
class Usage:
    wall_s: float
    client_cpu_s: float  # the lab process (the load client), all threads
    server_cpu_s: float | None  # the server's whole tree: main process and workers
    server_peak_rss_mb: float | None
    server_processes: int
    max_gap_s: float = 0.0  # the longest the lab went unscheduled (SIGSTOP, a paused VM)
    # the most requests in flight at once in each worker (pid), counted inside it
    inflight_peak: dict[int, int] = field(default_factory=dict)
    # each worker's loop meter over the window (lab.servers.loopmeter.diff); None: not metered
    loop: dict[int, Snapshot] | None = None
    # the client connections that sent each worker a request in the window
    connections: dict[int, int] = field(default_factory=dict)
    # TCP connections accepted in the window by any socket of the network namespace
    tcp_opens: int | None = None


class Meter(Protocol):
    """What the workers count from inside (``lab.load.inflight``): a window begins, what each
    worker counted in it."""

    def begin(self) -> None: ...

    def window(self) -> dict[int, Reading]: ...

    def in_flight(self) -> int: ...


class Window:
    """Measures one window. Without a server pid (unit tests) it measures the client only."""

    def __init__(self, server_pids: list[int] | None = None, meter: Meter | None = None,
                 loop: LoopReader | None = None) -> None:
        self._meter, self._loop = meter, loop
        self._loop0: dict[int, Snapshot] = {}
        self._procs = [p for pid in server_pids or [] if (p := _process(pid))]
        self._peak_rss = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._t0 = self._cpu0 = 0.0
        self._max_gap = 0.0
        self._last_tick = time.perf_counter()
        self._server_cpu0: dict[int, float] = {}
        self._server_cpu_seen: dict[int, float] = {}  # last reading of each pid
        self._opens0: int | None = None
        self.usage: Usage | None = None

    def start(self) -> None:
        if self._meter is not None:
            self._meter.begin()
        if self._loop is not None:
            self._loop0 = self._loop.snapshots()
        self._server_cpu0 = self._server_cpu()
        self._opens0 = passive_opens()
        self._t0, self._cpu0 = time.perf_counter(), time.process_time()
        self._max_gap = 0.0
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def settle(self, timeout_s: float, check: Callable[[], None]) -> float:
        """Wait, at most ``timeout_s``, until the server has had no request in flight for
        ``SETTLE_QUIET_S``; the seconds waited. Requests a client has let go of (the last of
        a warm-up run, a timed-out one) still run in the server and would be charged to the
        next window."""
        t0 = time.perf_counter()
        quiet_since: float | None = None
        while self._meter is not None and time.perf_counter() - t0 < timeout_s:
            now = time.perf_counter()
            if self._meter.in_flight() > 0:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= SETTLE_QUIET_S:
                break
            check()
            time.sleep(SETTLE_POLL_S)
        return time.perf_counter() - t0

    def end(self) -> Usage:
        wall, cpu = time.perf_counter() - self._t0, time.process_time() - self._cpu0
        opens = passive_opens()
        counted = self._meter.window() if self._meter is not None else {}  # one read of each
        last_gap = time.perf_counter() - self._last_tick - SAMPLE_S  # a stop after the last tick
        self._stop.set()
        if self._sampler:
            self._sampler.join()
        server_cpu = None
        if self._procs:
            # A process that exited inside the window keeps the CPU last sampled for it.
            now = {**self._server_cpu_seen, **self._server_cpu()}
            server_cpu = sum(now[pid] - self._server_cpu0.get(pid, 0.0) for pid in now)
        self.usage = Usage(wall, cpu, server_cpu,
                           self._peak_rss / 2**20 if self._procs else None, len(self._procs),
                           max(self._max_gap, last_gap),
                           {pid: r.peak for pid, r in counted.items()},
                           self._loop.window(self._loop0) if self._loop is not None else None,
                           {pid: r.connections for pid, r in counted.items()},
                           None if opens is None or self._opens0 is None
                           else opens - self._opens0)
        return self.usage

    def _server_cpu(self) -> dict[int, float]:
        out = {}
        for p in self._procs:
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
            except psutil.Error:
                continue  # exited: its last sample stands (see end())
        return out

    def _sample(self) -> None:
        """Every SAMPLE_S: the server tree's CPU and memory, and how late this wake-up came
        (a lab stopped and continued sees one long gap: its figures are not the server's)."""
        self._last_tick = time.perf_counter()
        while True:
            now = time.perf_counter()
            self._max_gap = max(self._max_gap, now - self._last_tick - SAMPLE_S)
            self._last_tick = now
            self._server_cpu_seen.update(self._server_cpu())
            total = 0
            for p in self._procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    continue
            self._peak_rss = max(self._peak_rss, total)
            if self._stop.wait(SAMPLE_S):
                return


class Stalls:
    """The longest the lab went unscheduled while it measured a cell, warm-up included.

    A window's own sampler sees only the window: a stop that began in the warm-up and
    outlasted the window left it with no answers and no gap, a failure the lab caused
    and charged to the server. This ticks from the cell's first request to its end."""

    def __init__(self) -> None:
        self.max_gap_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)

    def __enter__(self) -> "Stalls":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _tick(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(SAMPLE_S):
            now = time.perf_counter()
            self.max_gap_s = max(self.max_gap_s, now - last - SAMPLE_S)
            last = now
        self.max_gap_s = max(self.max_gap_s, time.perf_counter() - last - SAMPLE_S)


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def passive_opens() -> int | None:
    """The kernel's TCP PassiveOpens: connections accepted by any listening socket of this
    network namespace since boot (None where /proc has no such counter)."""
    try:
        with open(SNMP) as f:
            names, values = (line.split() for line in f if line.startswith("Tcp:"))
        return int(values[names.index("PassiveOpens")])
    except (OSError, ValueError):  # no file, not two Tcp lines, or no such column
        return None
