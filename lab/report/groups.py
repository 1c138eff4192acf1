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


@dataclass(frozen=True)
class Headline:
    """The one figure a kind's rows are ranked by."""

    get: Callable[[dict[str, Any]], float | None]  # from a record's figures
    higher_is_better: bool


HEADLINES = {
    "burst": Headline(lambda f: f["wall_s"], False),
    "closed": Headline(lambda f: f["rps"], True),
    "open": Headline(lambda f: f["latency_ms"]["p99"], False),
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
        """Latency percentiles over every successful repeat, from merged histograms; an
        external engine that gives percentiles only shows its typical repeat's."""
        if any(not r["figures"].get("histogram") for r in self.ok):
            typical = self.typical()
            return typical["figures"]["latency_ms"] if typical else {}
        merged = Histogram()
        for r in self.ok:
            merged = merged.merge(Histogram.from_json(r["figures"]["histogram"]))
        return latency_figures(merged)


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
                                              r["load"], r["params"], r["engine"]))
        row = next((x for x in comp.rows if x.server_id == r["server_id"]), None)
        if row is None:
            row = Row(r["server_id"], r["server"], r["workers"], r["options"], comp.headline)
            comp.rows.append(row)
        row.records.append(r)
    return list(out.values())
