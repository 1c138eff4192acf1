"""A mergeable latency histogram: log-bucketed with 1 % relative precision, like
HdrHistogram with two significant digits, so repeats and client processes merge exactly
and percentiles up to p99.9 come out of it."""

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PRECISION = 0.01
_LOG_BASE = math.log1p(PRECISION)
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@dataclass
class Histogram:
    """Counts of latencies in microseconds, bucket i covering [(1+p)^i, (1+p)^(i+1))."""

    counts: Counter[int] = field(default_factory=Counter)
    min_us: float = math.inf
    max_us: float = 0.0
    sum_us: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def record(self, seconds: float, count: int = 1) -> None:
        """``count`` latencies of ``seconds`` each (wrk gives its histogram this way)."""
        us = max(seconds * 1e6, 1.0)
        self.counts[int(math.log(us) / _LOG_BASE)] += count
        self.min_us, self.max_us = min(self.min_us, us), max(self.max_us, us)
        self.sum_us += us * count

    def merge(self, other: "Histogram") -> "Histogram":
        return Histogram(self.counts + other.counts, min(self.min_us, other.min_us),
                         max(self.max_us, other.max_us), self.sum_us + other.sum_us)

    def percentile_ms(self, q: float) -> float | None:
        """The q-th percentile (nearest rank) within 1 %; exact at 0 and 100."""
        total = self.total
        if not total:
            return None
        if q >= 100:
            return self.max_us / 1e3
        if q <= 0:
            return self.min_us / 1e3
        rank, seen = max(1, math.ceil(q / 100 * total)), 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                mid = math.exp((index + 0.5) * _LOG_BASE)
                return min(max(mid, self.min_us), self.max_us) / 1e3
        raise AssertionError("unreachable: ranks sum to total")

    def to_json(self) -> dict[str, object]:
        return {"precision": PRECISION, "unit": "us",
                "counts": {str(k): v for k, v in sorted(self.counts.items())},
                "min": self.min_us if self.counts else None, "max": self.max_us,
                "sum": self.sum_us}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Histogram":
        return cls(Counter({int(k): int(v) for k, v in data["counts"].items()}),
                   math.inf if data["min"] is None else float(data["min"]),
                   float(data["max"]), float(data["sum"]))


def latency_figures(h: Histogram) -> dict[str, float | None]:
    figures: dict[str, float | None] = {
        f"p{q:g}": h.percentile_ms(q) for q in PERCENTILES
    }
    figures["max"] = h.max_us / 1e3 if h.total else None
    figures["mean"] = h.sum_us / h.total / 1e3 if h.total else None
    return figures
