"""Per-cell figures from raw samples, and the spread of a figure over repeats."""

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lab.histogram import Histogram, latency_figures
from lab.load.samples import Measurement
from lab.monitor import Usage

CLIENT_LIMITED_CPU_PCT = 90.0  # of one core, for the busiest client process
SATURATED_PCT = 90.0  # of all usable cores, client and server together


def usage_figures(u: Usage, ok: int, busiest_pct: float | None = None) -> dict[str, Any]:
    """Client and server resources over the window. With several client processes the
    busiest one decides whether the client was the limit."""
    wall = u.wall_s if u.wall_s > 0 else float("nan")
    client_pct = 100.0 * u.client_cpu_s / wall
    server_pct = 100.0 * u.server_cpu_s / wall if u.server_cpu_s is not None else None
    cores = len(os.sched_getaffinity(0))
    return {
        "client_cpu_pct": client_pct,
        "client_limited": (client_pct if busiest_pct is None else busiest_pct)
        >= CLIENT_LIMITED_CPU_PCT,
        "server_cpu_pct": server_pct,
        "server_cpu_s_per_1000": (1000 * u.server_cpu_s / ok
                                  if u.server_cpu_s is not None and ok else None),
        "server_peak_rss_mb": u.server_peak_rss_mb,
        "server_processes": u.server_processes,
        # Client and server share the machine: when together they use (nearly) every core,
        # neither figure is the server's ceiling.
        "cores": cores,
        "machine_saturated": client_pct + (server_pct or 0.0) >= SATURATED_PCT * cores,
    }


def summarize(m: Measurement) -> dict[str, Any]:
    """The figures of one cell. Latency percentiles are over successful requests only;
    failed ones are counted by kind, never dropped."""
    ok = [s for s in m.samples if s.error is None]
    hist = Histogram()
    for s in ok:
        hist.record(s.latency_s)
    wall = m.usage.wall_s if m.usage.wall_s > 0 else float("nan")
    span = float(m.info.get("answer_span_s", wall))
    busiest = m.info.get("client_cpu_busiest_pct")
    return {
        "requests": len(m.samples),
        "ok": len(ok),
        "errors": dict(Counter(s.error for s in m.samples if s.error is not None)),
        "wall_s": m.usage.wall_s,
        "rps": len(ok) / span,
        "latency_ms": latency_figures(hist),
        "histogram": hist.to_json(),
        "pids": {str(pid): n for pid, n in Counter(s.pid for s in ok).most_common()},
        **usage_figures(m.usage, len(ok), float(busiest) if busiest is not None else None),
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
