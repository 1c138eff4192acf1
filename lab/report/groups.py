"""Group result lines into the comparisons the report shows.

A comparison is one experiment × endpoint × load; its rows are server configurations;
a row holds every repeat of that cell.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lab.config import KINDS
from lab.stats import Spread

# What "better" means for each kind's headline figure.
HEADLINE = {"burst": ("wall_s", "lower"), "closed": ("rps", "higher")}


@dataclass
class Row:
    server_id: str
    server: str
    workers: int
    options: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["figures"] and r["status"] == "ok"]

    def spread(self, key: str) -> Spread | None:
        values = [r["figures"][key] for r in self.ok]
        return Spread.of(values) if values else None

    def typical(self, key: str) -> dict[str, Any] | None:
        """The repeat whose figure is nearest the median: its split and latencies are shown."""
        s = self.spread(key)
        if s is None:
            return None
        return min(self.ok, key=lambda r: abs(r["figures"][key] - s.median))


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
    def headline(self) -> tuple[str, str]:
        return HEADLINE[self.kind]

    @property
    def delay(self) -> float | None:
        d = self.params.get("delay")
        return float(d) if isinstance(d, int | float) and not isinstance(d, bool) else None

    @property
    def n(self) -> int:
        """The load axis value: N for a burst, users for a closed loop."""
        return int(self.load[KINDS[self.kind].load_key])


def comparisons(records: Iterable[dict[str, Any]]) -> list[Comparison]:
    out: dict[tuple[Any, ...], Comparison] = {}
    for r in records:
        key = (r["experiment"], r["endpoint"], tuple(sorted(r["load"].items())))
        comp = out.setdefault(key, Comparison(r["experiment"], r["kind"], r["endpoint"],
                                              r["load"], r["params"], r["engine"]))
        row = next((x for x in comp.rows if x.server_id == r["server_id"]), None)
        if row is None:
            row = Row(r["server_id"], r["server"], r["workers"], r["options"])
            comp.rows.append(row)
        row.records.append(r)
    return list(out.values())
