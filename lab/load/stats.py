"""Per-cell figures from raw samples, and the spread of a figure over repeats."""

import os
from collections.abc import Iterable
from dataclasses import dataclass, fields

from lab.load.histogram import latency_figures
from lab.load.samples import Measurement
from lab.servers import loopmeter
from lab.servers.loopmeter import Snapshot
from lab.store.schema import (
    Figures,
    KindFigures,
    LoopEndpoint,
    LoopFigures,
    LoopSite,
    LoopThreads,
    LoopWorker,
)

CLIENT_LIMITED_CPU_PCT = 90.0  # of one core, for the busiest client process
SATURATED_PCT = 90.0  # of all usable cores, client and server together


@dataclass(frozen=True)
class MachineShare:
    """The CPUs client and server ran on: how many in all, and whether they shared them."""

    cores: int
    shared: bool


def summarize(m: Measurement, machine: MachineShare | None = None) -> Figures:
    """The figures of one cell. Latency percentiles are over successful requests only;
    failed ones are counted by kind, never dropped. With several client processes the
    busiest one decides whether the client was the limit; a client of t threads (wrk) is
    at its limit at t cores."""
    t, u = m.tally(), m.usage
    errors = sum(t.errors.values())
    machine = machine or MachineShare(len(os.sched_getaffinity(0)), shared=True)
    wall = u.wall_s if u.wall_s > 0 else float("nan")
    client_pct = 100.0 * u.client_cpu_s / wall
    server_pct = 100.0 * u.server_cpu_s / wall if u.server_cpu_s is not None else None
    busiest = m.parts.processes.client_cpu_busiest_pct if m.parts.processes else None
    threads = (m.parts.wrk.client_threads if m.parts.wrk
               else m.parts.h2load.h2load_threads if m.parts.h2load else 1)
    # When client and server share the cores and together use (nearly) all of them, the
    # server competed with the client: not its ceiling. With cores of its own, a server
    # that uses them all has met its budget, which is a fair figure.
    busy = client_pct + (server_pct or 0.0) if machine.shared else 0.0
    return Figures(
        **{f.name: getattr(m.parts, f.name) for f in fields(KindFigures)  # as measured
           if f.name != "loop"},
        loop=loop_figures(u.loop, u.wall_s) if u.loop is not None else None,
        requests=t.ok + errors, ok=t.ok, errors=dict(t.errors),
        error_rate=errors / (t.ok + errors) if t.ok + errors else 0.0,
        wall_s=u.wall_s if m.wall_s is None else m.wall_s,
        rps=t.ok / (m.span_s or float("nan")),
        latency_ms=latency_figures(t.histogram), latency_samples=t.histogram.total,
        histogram=t.histogram, pids={str(pid): n for pid, n in t.pids.most_common()},
        client_cpu_pct=client_pct,
        client_limited=(client_pct if busiest is None else busiest)
        >= CLIENT_LIMITED_CPU_PCT * threads,
        client_max_gap_s=u.max_gap_s, machine_saturated=busy >= SATURATED_PCT * machine.cores,
        cores=machine.cores, server_cpu_pct=server_pct,
        server_cores_used=server_pct / 100 if server_pct is not None else None,
        rps_per_server_core=(t.ok / u.server_cpu_s
                             if u.server_cpu_s and u.server_cpu_s > 0 else None),
        server_cpu_s_per_1000=(1000 * u.server_cpu_s / t.ok
                               if u.server_cpu_s is not None and t.ok else None),
        server_peak_rss_mb=u.server_peak_rss_mb, server_processes=u.server_processes,
        inflight_peak={str(pid): n for pid, n in sorted(u.inflight_peak.items())},
        connections={str(pid): n for pid, n in sorted(u.connections.items())},
        tcp_opens=u.tcp_opens)


def _ms(seconds: float | None) -> float | None:
    return round(1000 * seconds, 3) if seconds is not None else None


def _sites(table: dict[str, list[float]]) -> tuple[LoopSite, ...]:
    """A snapshot's sites ([count, seconds] by site), most seconds first."""
    return tuple(LoopSite(site, int(n), round(seconds, 6)) for site, (n, seconds)
                 in sorted(table.items(), key=lambda kv: -kv[1][1]))


def _bucket_ms(counts: dict[str, int]) -> dict[str, float | None]:
    """p50, p99 and max of a bucket histogram (``loopmeter.bucket_index``), in ms."""
    return {name: _ms(loopmeter.quantile_s(counts, q))
            for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))}


def loop_figures(windows: dict[int, Snapshot], wall_s: float) -> LoopFigures:
    """Each worker's loop meter window (``lab.servers.loopmeter.diff``) as figures, rounded to
    a µs: a line holds one table per worker and endpoint."""

    def endpoint(e: loopmeter.Endpoint) -> LoopEndpoint:
        top = e["max_step_s"]

        def longest(q: float) -> float | None:  # a bucket's value may lie above the max
            at = loopmeter.quantile_s(e["longest"], q)
            return _ms(min(at, top) if at is not None else None)

        return LoopEndpoint(
            e["calls"], _ms(e["loop_s"] / e["calls"]), _ms(e["cpu_s"] / e["calls"]),
            {"p50": longest(0.5), "p99": longest(0.99), "max": _ms(top)}, _sites(e["sites"]),
            _ms(e["thread_wait_s"] / e["calls"]) if e["thread_calls"] else None)

    def share(seconds: float | None) -> float | None:
        return round(seconds / wall_s, 4) if seconds is not None and wall_s > 0 else None

    def worker(w: Snapshot) -> LoopWorker:
        requests_cpu = sum(e["cpu_s"] for e in w["endpoints"].values())
        outside = (max(w["loop_cpu_s"] - requests_cpu, 0.0) if w["loop_cpu_s"] is not None
                   else None)
        beats = w["beats"]
        return LoopWorker(share(w["busy_s"]),
                          {name: endpoint(e) for name, e in w["endpoints"].items()},
                          share(outside), _bucket_ms(beats["lag"]) if beats["lag"] else {},
                          # a hold that began before the window is counted up to its length
                          share(min(beats["held_s"], wall_s)), _sites(beats["sites"]),
                          threads(w["threads"]) if w["threads"] is not None else None)

    return LoopFigures({str(pid): worker(w) for pid, w in sorted(windows.items())})


def threads(t: loopmeter.Threads) -> LoopThreads:
    """The limiter's window: time-weighted means of what the watchdog saw, and the waits of
    the requests' runs."""
    seen = sum(t["in_use_s"].values())

    def mean(hist: dict[str, float]) -> float | None:
        return round(sum(int(k) * s for k, s in hist.items()) / seen, 2) if seen > 0 else None

    full = sum(s for k, s in t["in_use_s"].items() if int(k) >= t["tokens"])
    return LoopThreads(t["tokens"], mean(t["in_use_s"]),
                       round(full / seen, 4) if seen > 0 else None, mean(t["waiting_s"]),
                       max(map(int, t["waiting_s"]), default=0), sum(t["waits"].values()),
                       _bucket_ms(t["waits"]))


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
