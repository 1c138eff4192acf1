"""Group results into the comparisons the report shows.

A comparison is one experiment × endpoint × load; its rows are server configurations;
a row holds every repeat of that cell.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lab.kinds import Headline, get
from lab.load.histogram import Histogram, latency_figures
from lab.load.stats import Spread
from lab.report.verdict import noise_floor_pct
from lab.servers.base import THREADS
from lab.store.schema import Figures, Result

Getter = Callable[[Figures], float | None]

# A percentile is stated only from enough samples: the 1 % above p99 must be ≥ 10 of them.
MIN_SAMPLES = {"p99": 1_000, "p99.9": 10_000}


SPREAD_SHARE = 0.05  # a burst's sends may spread over 5 % of its delay...
SPREAD_FLOOR_MS = 5.0  # ...or 5 ms where it has none


def searched(kind: str, load: Mapping[str, Any]) -> bool:
    """Cells of searched loads (an open model's rates = "auto"): their knees."""
    k = get(kind)
    return k.searchable and load.get(k.load_key) == "auto"


def headline_of(kind: str, load: Mapping[str, Any]) -> Headline:
    k = get(kind)
    return k.searched_headline if k.searched_headline and searched(kind, load) \
        else k.headline


def delay_of(params: Mapping[str, Any]) -> float | None:
    d = params.get("delay")
    return float(d) if isinstance(d, int | float) and not isinstance(d, bool) else None


def spread_bar_ms(delay: float | None) -> float:
    return 1e3 * SPREAD_SHARE * delay if delay else SPREAD_FLOOR_MS


def client_limits(f: Figures, delay: float | None) -> list[str]:
    """Why a figure may be the client's, not the server's — one rule for every kind: the
    client's CPU at its limit, a burst whose sends spread too far, an open-model schedule
    the client could not hold, connections the client could not open."""
    out = []
    if f.client_limited:
        out.append("CPU at its limit" if f.client_cpu_pct is None
                   else f"CPU {fmt_num(f.client_cpu_pct)} %")
    # A cold burst's writes wait for their connections: that wait is what it measures.
    if f.burst and f.burst.connect != "cold" and f.burst.send_spread_ms is not None \
            and f.burst.send_spread_ms > spread_bar_ms(delay):
        out.append(f"sends spread over {fmt_num(f.burst.send_spread_ms)} ms "
                   f"(> {fmt_num(spread_bar_ms(delay))} ms)")
    if f.open and f.open.client_behind:
        out.append(f"client sent late (lag p99 {fmt_num(f.open.send_lag_p99_ms)} ms)")
    if f.errors.get("connect"):
        out.append(f"{f.errors['connect']} connections not opened")
    return out


# On shared, saturated cores the server could have had at most the client's CPU more. Under
# a tenth of the server's own CPU that is within a noisy spread (`model.NOISY_SPREAD_PCT`):
# the figure is the server's. At 2 cores wrk at 9 % of a core beside a server at 1.9 cores
# passes; a Python client at 60 % beside 1.3 cores does not.
CLIENT_SHARE_BAR = 0.10


def machine_limits(f: Figures) -> list[str]:
    """Why a figure may be the shared machine's: client and server together used every
    core, and the client's CPU was ≥ `CLIENT_SHARE_BAR` of the server's (or unknown)."""
    if not f.machine_saturated:
        return []
    client, server = f.client_cpu_pct, f.server_cores_used
    if client is not None and server and client / 100 < CLIENT_SHARE_BAR * server:
        return []
    return [f"client used {fmt_num(client)} % of a core"
            + (f" beside the server's {fmt_num(server)} cores" if server else "")]


def fmt_num(x: float | None) -> str:
    return "?" if x is None else f"{x:.3g}"


@dataclass(frozen=True)
class Row:
    server_id: str
    server: str
    workers: int
    options: Mapping[str, Any]
    headline: Headline
    results: tuple[Result, ...]

    @property
    def ok(self) -> list[Figures]:
        """The figures of the repeats that give a headline."""
        return [r.figures for r in self.results
                if r.ok and r.figures and self.headline.get(r.figures) is not None]

    def values(self, get: Getter | None = None) -> list[float]:
        get = get or self.headline.get
        return [v for f in self.ok if (v := get(f)) is not None]

    def spread(self, get: Getter | None = None) -> Spread | None:
        vals = self.values(get)
        return Spread.of(vals) if vals else None

    def typical(self) -> Figures | None:
        """The repeat whose headline is nearest the median: its split is the one shown."""
        s = self.spread()
        if s is None:
            return None
        return min(self.ok, key=lambda f: abs((self.headline.get(f) or 0.0) - s.median))

    def split(self) -> list[int]:
        """Requests per worker process in the typical repeat, largest share first."""
        typical = self.typical()
        return sorted(typical.pids.values(), reverse=True) if typical else []

    def peaks(self) -> list[int]:
        """The most requests in flight at once in each worker, counted inside it by the
        wrapper (typical repeat), largest first."""
        typical = self.typical()
        return sorted(typical.inflight_peak.values(), reverse=True) if typical else []

    def latency(self) -> dict[str, float | None]:
        """Latency percentiles over every successful repeat, from merged histograms, with
        ``n`` the samples behind them; p99 and p99.9 are None without enough samples."""
        hists = [f.histogram for f in self.ok]
        if not hists or any(h is None for h in hists):
            typical = self.typical()
            figures = dict(typical.latency_ms) if typical else {}
            n = typical.latency_samples if typical else 0
        else:
            merged = Histogram()
            for h in hists:
                assert h is not None
                merged = merged.merge(h)
            figures, n = latency_figures(merged), merged.total
        for key, minimum in MIN_SAMPLES.items():
            if n < minimum:
                figures[key] = None
        return {**figures, "n": n}

    def limit(self) -> str | None:
        """Why this row's figures may not be the server's: "client" (the load generator was
        at its limit: `client_limits`) or "machine" (client and server together used every
        shared core, the client enough of them to matter: `machine_limits`)."""
        if any(client_limits(f, self.delay) for f in self.ok):
            return "client"
        if any(machine_limits(f) for f in self.ok):
            return "machine"
        return None

    def limit_reasons(self) -> list[str]:
        """Each distinct reason, over the repeats, that the client was the limit; else the
        machine's, from the repeat whose client took the most CPU."""
        found: list[str] = []
        for f in self.ok:
            found += [x for x in client_limits(f, self.delay) if x not in found]
        saturated = [f for f in self.ok if machine_limits(f)]
        if found or not saturated:
            return found
        return machine_limits(max(saturated, key=lambda f: f.client_cpu_pct or 0.0))

    @property
    def delay(self) -> float | None:
        return delay_of(self.results[0].params) if self.results else None

    def error_rate(self) -> float:
        """Failed requests over all requests of the row's finished repeats."""
        figures = [r.figures for r in self.results if r.figures]
        total = sum(f.requests for f in figures)
        return sum(f.failed for f in figures) / total if total else 0.0

    def errors(self) -> dict[str, int]:
        """Failed requests by kind over every repeat."""
        counts: dict[str, int] = {}
        for r in self.results:
            for kind, n in (r.figures.errors if r.figures else {}).items():
                counts[kind] = counts.get(kind, 0) + n
        return counts

    def failures(self) -> list[str]:
        """Why repeats failed, by kind: server_start, cell_timeout…"""
        return sorted({r.failure.kind for r in self.results if r.failure})

    @property
    def wrapped(self) -> bool:
        return all(r.wrap for r in self.results)

    @property
    def engines(self) -> set[str]:
        return {r.engine or "?" for r in self.results if r.ok}

    @property
    def threads(self) -> str | None:
        """Its thread limiter's tokens (lab.threads) as run; None where the config left them."""
        return self.results[0].settings.get(THREADS) if self.results else None

    @property
    def variant(self) -> tuple[str, str, str | None]:
        """A server, its options and its threads: rows that differ only in workers share it."""
        return self.server, repr(sorted(self.options.items())), self.threads


@dataclass(frozen=True)
class Comparison:
    experiment: str
    kind: str
    endpoint: str
    load: Mapping[str, Any]
    params: Mapping[str, Any]
    engine: str
    rows: tuple[Row, ...]

    @property
    def headline(self) -> Headline:
        return headline_of(self.kind, self.load)

    @property
    def searched(self) -> bool:
        """A comparison of searched loads (an open model's rates = "auto"): its knees."""
        return searched(self.kind, self.load)

    @property
    def delay(self) -> float | None:
        return delay_of(self.params)

    @property
    def n(self) -> int:
        """The load axis value: N, users, rate or background users (0: a searched rate)."""
        value = self.load[get(self.kind).load_key]
        return value if isinstance(value, int) else 0

    @property
    def measured(self) -> tuple[Row, ...]:
        """The rows with a headline figure."""
        return tuple(r for r in self.rows if r.values())


def comparisons(results: Iterable[Result]) -> list[Comparison]:
    """In the order of their first result; a row's repeats in the order they were read."""
    grouped: dict[tuple[Any, ...], dict[str, list[Result]]] = {}
    for r in results:
        key = (r.experiment, r.endpoint, tuple(sorted(r.load.items())))
        grouped.setdefault(key, {}).setdefault(r.server_id, []).append(r)
    out = []
    for rows in grouped.values():
        first = next(iter(rows.values()))[0]
        headline = headline_of(first.kind, first.load)
        out.append(Comparison(
            first.experiment, first.kind, first.endpoint, first.load, first.params,
            first.engine or "?", tuple(Row(r[0].server_id, r[0].server, r[0].workers,
                                           r[0].options, headline, tuple(r))
                                       for r in rows.values())))
    return out


def noise_by_kind(comps: Iterable[Comparison]) -> dict[str, float]:
    """Each kind's noise floor: the median spread of its repeated cells."""
    spreads: dict[str, list[Spread]] = {}
    for comp in comps:
        for row in comp.rows:
            if (s := row.spread()) is not None:
                spreads.setdefault(comp.kind, []).append(s)
    return {kind: noise_floor_pct(ss) for kind, ss in spreads.items()}
