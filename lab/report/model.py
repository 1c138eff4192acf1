"""The report's model: every comparison of a run with its baseline, each row's verdict,
flags and facts (`lab.report.facts`), and each kind's noise floor — computed once from the
results into frozen values, then read by every renderer (markdown tables, charts,
findings, In short, the article's claims, `compare`); no renderer reads another's."""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from lab.kinds import Fact, get
from lab.load.stats import Spread
from lab.report import facts, loopfacts
from lab.report.facts import Effect, Knee, Scaling, Serialised
from lab.report.groups import Comparison, Row, comparisons, noise_by_kind
from lab.report.loopfacts import Hold, Outside, Pool
from lab.report.verdict import Verdict, compare
from lab.store.schema import Result

NOISY_SPREAD_PCT = 10.0


class Flag(Enum):
    """Why a row's figure needs a second look; the value is what a reader is told."""

    CLIENT_LIMITED = "client-limited"
    MACHINE_SATURATED = "machine saturated"
    CLIENT_BEHIND = "client behind schedule"
    MISSING_REPEATS = "repeats missing"


LIMIT_FLAGS = {"client": Flag.CLIENT_LIMITED, "machine": Flag.MACHINE_SATURATED}
LIMIT_TEXT = {"client": "not comparable: client at its limit",
              "machine": "not comparable: machine saturated"}
NO_BASELINE = "no verdict: no configuration can be the baseline (each lacks repeats or was limited)"


def noisy(s: Spread) -> bool:
    """Repeats whose range is wide against their median: their differences are suspect."""
    return s.n > 1 and s.spread_pct >= NOISY_SPREAD_PCT


def _flags(row: Row) -> list[Flag]:
    out = []
    if (limit := row.limit()) is not None:
        out.append(LIMIT_FLAGS[limit])
    if any(f.open and f.open.client_behind for f in row.ok):
        out.append(Flag.CLIENT_BEHIND)
    if 0 < len(row.values()) < len(row.results):
        out.append(Flag.MISSING_REPEATS)
    return out


def _runs(row: Row) -> set[str | None]:
    return {r.source_run for r in row.results}


def _eligible(row: Row, comp: Comparison) -> bool:
    """May this row win? Not when its figure may be the client's or the shared machine's,
    nor, for a time figure, when some of its requests failed (a fast failure is not fast
    service)."""
    if row.limit() is not None:
        return False
    return comp.headline.higher_is_better or row.error_rate() == 0


def _complete(row: Row) -> bool:
    """Every repeat the row ran gave its headline: its range is the whole of it."""
    return len(row.values()) == len(row.results)


def baseline(comp: Comparison, preferred: str | None) -> Row | None:
    """The row others are compared with, among those with every repeat ok and a figure that
    is the server's (not limited): the preferred configuration, else the best of them that
    may win, else the best of them. None when no row qualifies."""
    rows = [r for r in comp.measured if _complete(r) and r.limit() is None]
    if not rows:
        return None
    for row in rows:
        if row.server_id == preferred:
            return row
    pick = max if comp.headline.higher_is_better else min
    candidates = [r for r in rows if _eligible(r, comp)] or rows
    return pick(candidates, key=lambda r: r.spread().median)  # type: ignore[union-attr]


def _limit_text(row: Row, limit: str) -> str:
    reasons = row.limit_reasons()
    return LIMIT_TEXT[limit] + (f" ({'; '.join(reasons)})" if reasons else "")


def judge(comp: Comparison, base: Row | None, noise_pct: float) -> dict[str, Verdict]:
    """Each row against ``base``; no "significant" from a row or baseline that was limited
    by the client or the machine, or that won a time figure with failures. Without a
    baseline, no verdict at all: each row says why it could not be one."""
    if base is None:
        return {row.server_id: Verdict(math.nan, None, _limit_text(row, limit)
                                       if (limit := row.limit()) else NO_BASELINE)
                for row in comp.measured}
    out = {}
    for row in comp.measured:
        v = compare(row.values(), base.values(), comp.headline.higher_is_better, noise_pct)
        if row is base:
            v = Verdict(v.ratio, None, "baseline")
        elif (limit := row.limit()) is not None:
            v = Verdict(v.ratio, None, _limit_text(row, limit))
        elif v.ratio < 1 and v.significant is not None and not _eligible(row, comp):
            v = Verdict(v.ratio, None, f"no verdict: {100 * row.error_rate():.2g} % of its "
                                       "requests failed")
        if row is not base and _runs(row) != _runs(base):  # a merged report: weaker
            v = Verdict(v.ratio, v.significant, f"{v.text}; rows from different runs")
        out[row.server_id] = v
    return out


@dataclass(frozen=True)
class RowFacts(Row):
    """A row with what the model derived from it, beside its data (as hyperfine wraps a
    result with its relative speed): the kind's facts are None where they do not apply."""

    verdict: Verdict | None  # against the baseline; None: the row has no headline figure
    flags: tuple[Flag, ...]
    is_baseline: bool
    serialised: Serialised | None  # burst with a delay
    effect: Effect | None  # interference: what the busy endpoint did to the probe
    scaling: Scaling | None  # closed, > 1 worker, beside a 1-worker row of its variant
    knee_bounds: frozenset[str | None]  # open, rates = "auto": how each repeat's search ended

    @property
    def limit_flags(self) -> list[Flag]:
        """The flags that make the figure possibly the client's or the machine's."""
        return [f for f in self.flags if f in LIMIT_FLAGS.values()]

    @property
    def stalled(self) -> bool | None:
        """Did the busy endpoint stall the probe, its median or its tail? None: no data."""
        return None if self.effect is None else self.effect in ("stalled", "stalled some")


@dataclass(frozen=True)
class ComparisonFacts(Comparison):
    """A comparison whose rows carry their facts, with its baseline (None: no row
    qualified)."""

    rows: tuple[RowFacts, ...]
    baseline: RowFacts | None

    @property
    def measured(self) -> tuple[RowFacts, ...]:
        return tuple(r for r in self.rows if r.values())


def judged(comp: Comparison, noise_pct: float, preferred: str | None = None
           ) -> ComparisonFacts:
    """One comparison's baseline, verdicts and facts."""
    base = baseline(comp, preferred)
    verdicts = judge(comp, base, noise_pct)
    ones = {r.variant: r for r in comp.measured if r.workers == 1}
    has = get(comp.kind).facts
    rows = tuple(RowFacts(
        **vars(row), verdict=verdicts.get(row.server_id), flags=tuple(_flags(row)),
        is_baseline=row is base,
        serialised=facts.serialised(row, comp.delay)
        if Fact.SERIALISED in has and comp.delay else None,
        effect=facts.probe_effect(row, comp.delay) if Fact.PROBE_EFFECT in has else None,
        scaling=facts.scaling(row, ones[row.variant], noise_pct)
        if Fact.SCALING in has and row.variant in ones else None,
        knee_bounds=frozenset(f.knee.knee_bound if f.knee else None for f in row.ok)
        if comp.searched else frozenset(),
    ) for row in comp.rows)
    return ComparisonFacts(**{**vars(comp), "rows": rows},
                           baseline=next((r for r in rows if r.is_baseline), None))


@dataclass(frozen=True)
class Report:
    results: tuple[Result, ...]
    comparisons: tuple[ComparisonFacts, ...]
    noise: Mapping[str, float]  # kind → noise floor, %
    preferred: str | None  # lab.baseline, if the config named one
    knees: tuple[Knee, ...]  # fixed-rate open experiments: where each met its SLO
    holds: tuple[Hold, ...] = ()  # the loop meter's endpoints, per experiment and configuration
    outside: tuple[Outside, ...] = ()  # what held the loops outside any request
    pools: tuple[Pool, ...] = ()  # the thread limiter, per experiment, configuration and load

    @classmethod
    def of(cls, lines: Iterable[Mapping[str, Any]], preferred: str | None = None
           ) -> "Report":
        """From the lines `lab.store.results.RunDir.load` returned."""
        return cls.of_results([Result.from_json(line) for line in lines], preferred)

    @classmethod
    def of_results(cls, results: Iterable[Result], preferred: str | None = None
                   ) -> "Report":
        """From typed records (as `lab.store.results.RunDir.read` streams them)."""
        results = tuple(results)
        comps = comparisons(results)
        noise = noise_by_kind(comps)
        return cls(results, tuple(judged(c, noise.get(c.kind, 0.0), preferred)
                                  for c in comps), noise, preferred, facts.knees(comps),
                   loopfacts.holds(results), loopfacts.outside(results),
                   loopfacts.pools(results))
