"""What a row's figures show beyond its verdict, as facts with no wording: whether a burst
ran one after another, what a busy endpoint did to the probe, how req/s scaled with
workers, where a fixed-rate open model met its SLO. `lab.report.model` computes each once;
every renderer reads them from there.

Each burst with a known ``delay`` is checked against physics: a worker that runs its
requests one after another needs (its share of N) × delay; anything well below that
overlapped.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from lab.kinds import Fact, get
from lab.load.stats import Spread
from lab.report.groups import Comparison, Row
from lab.report.verdict import Verdict, compare

SERIAL_FRACTION = 0.8  # wall ≥ 80 % of (busiest worker's share × delay) counts as serialised

Effect = Literal["stalled", "stalled some", "slowed", "as idle"]


@dataclass(frozen=True)
class Serialised:
    serial: bool  # the busiest worker ran its requests one after another
    serial_s: float  # the wall time that takes: its share of N × delay


@dataclass(frozen=True)
class Scaling:
    """A closed row's req/s against its variant's (server and options) 1-worker row."""

    ratio: float  # req/s at w workers ÷ req/s at 1
    efficiency: float  # ratio ÷ w
    verdict: Verdict  # the two rows' repeats compared, as a table compares with its baseline
    workers_used: int  # workers that got requests in the typical repeat
    limited: bool  # either row's figure may be the client's or the machine's


@dataclass(frozen=True)
class Knee:
    """Per fixed-rate open experiment and configuration: the highest rate tried whose
    median p99 met the SLO with no errors and the client on schedule, and the first that
    did not (None: every rate tried met it)."""

    experiment: str
    server_id: str
    slo_p99_ms: float
    held: int | None
    over: int | None


def serialised(row: Row, delay: float) -> Serialised | None:
    """None for a row without results or without a per-worker split (the app was not
    wrapped)."""
    s, typical = row.spread(), row.typical()
    if s is None or typical is None or not typical.pids:
        return None
    serial_s = max(typical.pids.values(), default=0) * delay
    return Serialised(s.median >= SERIAL_FRACTION * serial_s, serial_s)


def probe_p50(row: Row) -> tuple[Spread, Spread] | None:
    """(probe p50 under load, probe p50 idle) over the repeats, or None without data."""
    loaded = row.spread()
    idle = row.spread(lambda f: f.idle_ms("p50"))
    return None if loaded is None or idle is None else (loaded, idle)


def _stall_bar_ms(delay: float | None, idle: Spread) -> float:
    """A probe this slow was stalled: half the delay (10× idle without a delay)."""
    return 500 * delay if delay else 10 * idle.median


def probe_effect(row: Row, delay: float | None) -> Effect | None:
    """What the loaded endpoint did to the probe: "stalled" (its p50 under load at the
    stall bar or above), "stalled some" (its p90 under load at that bar and at 10× idle's
    p90: a probe in ten or more stalled, as those that reach the blocked worker of two
    do), "as idle" (p50 under load within idle's own spread: no higher than the idle
    probes' p90, a value one idle probe in ten exceeds anyway; its p50 where no p90 was
    recorded) or "slowed" (in between). None: no data."""
    p50 = probe_p50(row)
    if p50 is None:
        return None
    loaded, idle = p50
    if loaded.median >= _stall_bar_ms(delay, idle):
        return "stalled"
    # The tail against idle's own tail too: a 4 ms p90 beside a 0.4 ms idle p50 is one
    # query's wait behind a thread's GIL, not a stall (10× idle's p90 is the bar then).
    tail = row.latency().get("p90")  # of every repeat's probes merged, as the finding says
    idle_p90 = row.spread(lambda f: f.idle_ms("p90"))
    tail_bar = max(_stall_bar_ms(delay, idle), 10 * idle_p90.median if idle_p90 else 0.0)
    if tail is not None and tail >= tail_bar:
        return "stalled some"
    return "as idle" if loaded.median <= (idle_p90 or idle).median else "slowed"


def scaling(row: Row, one: Row, noise_pct: float) -> Scaling | None:
    """None for a 1-worker row, or without both figures."""
    s, base = row.spread(), one.spread()
    if s is None or base is None or not base.median or row.workers == 1:
        return None
    ratio = s.median / base.median
    typical = row.typical()
    return Scaling(ratio, ratio / row.workers,
                   compare(row.values(), one.values(), True, noise_pct),
                   len(typical.pids) if typical else row.workers,
                   one.limit() is not None or row.limit() is not None)


def knees(comps: Iterable[Comparison]) -> tuple[Knee, ...]:
    by: dict[tuple[str, str], list[tuple[int, Row]]] = {}
    slo: dict[str, float] = {}
    for comp in comps:
        if Fact.KNEES not in get(comp.kind).facts or comp.searched \
                or comp.load.get("slo_p99_ms") is None:
            continue
        slo[comp.experiment] = float(comp.load["slo_p99_ms"])
        for row in comp.rows:
            by.setdefault((comp.experiment, row.server_id), []).append((comp.n, row))
    out = []
    for (exp, sid), rates in by.items():
        held: int | None = None
        over: int | None = None
        for rate, row in sorted(rates, key=lambda x: x[0]):
            s = row.spread()
            ok = s is not None and s.median <= slo[exp] and not any(
                f.errors or f.open and f.open.client_behind for f in row.ok)
            if over is None:
                if ok:
                    held = rate
                else:
                    over = rate
        out.append(Knee(exp, sid, slo[exp], held, over))
    return tuple(out)
