"""Group result lines into the comparisons the report shows.

A comparison is one experiment × endpoint × load; its rows are server configurations;
a row holds every repeat of that cell.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lab.config import KINDS
from lab.histogram import Histogram, latency_figures
from lab.stats import Spread
from lab.verdict import noise_floor_pct


@dataclass(frozen=True)
class Headline:
    """The one figure a kind's rows are ranked by."""

    get: Callable[[dict[str, Any]], float | None]  # from a record's figures
    higher_is_better: bool


# A percentile is stated only from enough samples: the 1 % above p99 must be ≥ 10 of them.
MIN_SAMPLES = {"p99": 1_000, "p99.9": 10_000}


def samples(f: dict[str, Any]) -> int:
    """Latencies behind a cell's percentiles (older results: its successful requests)."""
    return int(f.get("latency_samples", f.get("ok", 0)))


def _p99(f: dict[str, Any]) -> float | None:
    return f["latency_ms"]["p99"] if samples(f) >= MIN_SAMPLES["p99"] else None


HEADLINES = {
    "burst": Headline(lambda f: f["wall_s"], False),
    "closed": Headline(lambda f: f["rps"], True),
    "open": Headline(_p99, False),
    "interference": Headline(lambda f: f["latency_ms"]["p50"], False),
}


@dataclass
class Row:
    server_id: str
    server: str
    workers: int
    options: dict[str, Any]
    headline: Headline
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.records
                if r["status"] == "ok" and self.headline.get(r["figures"]) is not None]

    def values(self, get: Callable[[dict[str, Any]], float | None] | None = None
               ) -> list[float]:
        get = get or self.headline.get
        return [v for r in self.ok if (v := get(r["figures"])) is not None]

    def spread(self, get: Callable[[dict[str, Any]], float | None] | None = None
               ) -> Spread | None:
        vals = self.values(get)
        return Spread.of(vals) if vals else None

    def typical(self) -> dict[str, Any] | None:
        """The repeat whose headline is nearest the median: its split is the one shown."""
        s = self.spread()
        if s is None:
            return None
        return min(self.ok, key=lambda r: abs((self.headline.get(r["figures"]) or 0.0)
                                              - s.median))

    def latency(self) -> dict[str, float | None]:
        """Latency percentiles over every successful repeat, from merged histograms, with
        ``n`` the samples behind them; p99 and p99.9 are None without enough samples."""
        if any(not r["figures"].get("histogram") for r in self.ok):
            typical = self.typical()
            figures = dict(typical["figures"]["latency_ms"]) if typical else {}
            n = samples(typical["figures"]) if typical else 0
        else:
            merged = Histogram()
            for r in self.ok:
                merged = merged.merge(Histogram.from_json(r["figures"]["histogram"]))
            figures, n = latency_figures(merged), merged.total
        for key, minimum in MIN_SAMPLES.items():
            if n < minimum:
                figures[key] = None
        return {**figures, "n": n}

    def limit(self) -> str | None:
        """Why this row's figures may not be the server's: "client" (the load generator was
        at its limit) or "machine" (client and server together used every shared core)."""
        figures = [r["figures"] for r in self.ok]
        if any(f.get("client_limited") for f in figures):
            return "client"
        if any(f.get("machine_saturated") for f in figures):
            return "machine"
        return None

    def error_rate(self) -> float:
        """Failed requests over all requests of the row's finished repeats."""
        total = sum(int((r["figures"] or {}).get("requests", 0)) for r in self.records)
        failed = sum(sum(((r["figures"] or {}).get("errors") or {}).values())
                     for r in self.records)
        return failed / total if total else 0.0

    @property
    def engines(self) -> set[str]:
        return {r.get("engine") or r.get("engine_requested", "?") for r in self.ok}


@dataclass
class Comparison:
    experiment: str
    kind: str
    endpoint: str
    load: dict[str, Any]
    params: dict[str, Any]
    engine: str
    rows: list[Row] = field(default_factory=list)

    @property
    def headline(self) -> Headline:
        return HEADLINES[self.kind]

    @property
    def delay(self) -> float | None:
        d = self.params.get("delay")
        return float(d) if isinstance(d, int | float) and not isinstance(d, bool) else None

    @property
    def n(self) -> int:
        """The load axis value: N, users, rate or background users."""
        return int(self.load[KINDS[self.kind].load_key])


def comparisons(records: Iterable[dict[str, Any]]) -> list[Comparison]:
    out: dict[tuple[Any, ...], Comparison] = {}
    for r in records:
        key = (r["experiment"], r["endpoint"], tuple(sorted(r["load"].items())))
        comp = out.setdefault(key, Comparison(r["experiment"], r["kind"], r["endpoint"],
                                              r["load"], r["params"], r.get("engine", "?")))
        row = next((x for x in comp.rows if x.server_id == r["server_id"]), None)
        if row is None:
            row = Row(r["server_id"], r["server"], r["workers"], r["options"], comp.headline)
            comp.rows.append(row)
        row.records.append(r)
    return list(out.values())


def noise_by_kind(comps: list[Comparison]) -> dict[str, float]:
    """Each kind's noise floor: the median spread of its repeated cells."""
    spreads: dict[str, list[Spread]] = {}
    for comp in comps:
        for row in comp.rows:
            if (s := row.spread()) is not None:
                spreads.setdefault(comp.kind, []).append(s)
    return {kind: noise_floor_pct(ss) for kind, ss in spreads.items()}
