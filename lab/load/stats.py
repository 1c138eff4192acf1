"""Per-cell figures from raw samples, and the spread of a figure over repeats."""

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lab.load.histogram import latency_figures
from lab.load.monitor import Usage
from lab.load.samples import Measurement

CLIENT_LIMITED_CPU_PCT = 90.0  # of one core, for the busiest client process
SATURATED_PCT = 90.0  # of all usable cores, client and server together


@dataclass(frozen=True)
class MachineShare:
    """The CPUs client and server ran on: how many in all, and whether they shared them."""

    cores: int
    shared: bool


def usage_figures(u: Usage, ok: int, busiest_pct: float | None = None,
                  machine: MachineShare | None = None, client_threads: int = 1
                  ) -> dict[str, Any]:
    """Client and server resources over the window. With several client processes the
    busiest one decides whether the client was the limit; a client of t threads (wrk) is
    at its limit at t cores."""
    machine = machine or MachineShare(len(os.sched_getaffinity(0)), shared=True)
    wall = u.wall_s if u.wall_s > 0 else float("nan")
    client_pct = 100.0 * u.client_cpu_s / wall
    server_pct = 100.0 * u.server_cpu_s / wall if u.server_cpu_s is not None else None
    # When client and server share the cores and together use (nearly) all of them, the
    # server competed with the client: not its ceiling. With cores of its own, a server
    # that uses them all has met its budget, which is a fair figure.
    busy = client_pct + (server_pct or 0.0) if machine.shared else 0.0
    return {
        "client_cpu_pct": client_pct,
        "client_limited": (client_pct if busiest_pct is None else busiest_pct)
        >= CLIENT_LIMITED_CPU_PCT * client_threads,
        "server_cpu_pct": server_pct,
        "server_cores_used": server_pct / 100 if server_pct is not None else None,
        "rps_per_server_core": (ok / u.server_cpu_s
                                if u.server_cpu_s and u.server_cpu_s > 0 else None),
        "server_cpu_s_per_1000": (1000 * u.server_cpu_s / ok
                                  if u.server_cpu_s is not None and ok else None),
        "server_peak_rss_mb": u.server_peak_rss_mb,
        "server_processes": u.server_processes,
        "cores": machine.cores,
        "client_max_gap_s": u.max_gap_s,
        "inflight_peak": {str(pid): n for pid, n in sorted(u.inflight_peak.items())},
        "machine_saturated": busy >= SATURATED_PCT * machine.cores,
    }


def summarize(m: Measurement, machine: MachineShare | None = None) -> dict[str, Any]:
    """The figures of one cell. Latency percentiles are over successful requests only;
    failed ones are counted by kind, never dropped."""
    t = m.tally()
    wall = m.usage.wall_s if m.usage.wall_s > 0 else float("nan")
    span = float(m.info.get("answer_span_s", wall))
    busiest = m.info.get("client_cpu_busiest_pct")
    errors = sum(t.errors.values())
    return {
        "requests": t.ok + errors,
        "ok": t.ok,
        "errors": dict(t.errors),
        "error_rate": errors / (t.ok + errors) if t.ok + errors else 0.0,
        "wall_s": m.usage.wall_s,
        "rps": t.ok / span,
        "latency_ms": latency_figures(t.histogram),
        "latency_samples": t.histogram.total,
        "histogram": t.histogram.to_json(),
        "pids": {str(pid): n for pid, n in t.pids.most_common()},
        **usage_figures(m.usage, t.ok, float(busiest) if busiest is not None else None,
                        machine, int(m.info.get("client_threads", 1))),
        **m.info,
    }


def median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        raise ValueError("median of nothing")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass(frozen=True)
class Spread:
    """A figure over repeats: median, min and max."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> "Spread":
        vals = list(values)
        return cls(median(vals), min(vals), max(vals), len(vals))

    @property
    def spread_pct(self) -> float:
        """(max − min) as a percentage of the median."""
        return 100.0 * (self.high - self.low) / self.median if self.median else 0.0
