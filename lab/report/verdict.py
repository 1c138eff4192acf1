"""Is a difference real? Repeats of a cell give a range; a verdict needs two things:

1. the two rows' ranges (min–max over repeats) do not overlap — for 3 repeats each that is
   the exact Mann–Whitney U test at its most extreme (U = 0, two-sided p = 0.1): two
   configurations that are really the same get "significant" from this test alone in 2 of
   C(6, 3) = 20 orderings, a 10 % false-positive rate per table (less with more repeats:
   2/C(8, 4) = 2.9 % at 4), and
2. the difference is larger than the noise floor: the typical spread that repeats of the
   *same* cell show on this machine in this run, which lowers that rate further
   (`tests/test_verdict.py` runs an A/A matrix and counts).

Otherwise the report says "no clear difference": never a winner inside the noise. Fewer
than 3 repeats on either side give no verdict at all.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lab.load.stats import Spread, median

MIN_REPEATS = 3


@dataclass(frozen=True)
class Verdict:
    ratio: float  # ≥ 1: how many times worse the row is than the baseline
    significant: bool | None  # None: too few repeats to tell
    text: str


def noise_floor_pct(spreads: Iterable[Spread]) -> float:
    """Median relative spread (max−min over median, %) of cells that were repeated."""
    pcts = [s.spread_pct for s in spreads if s.n >= 2]
    return median(pcts) if pcts else 0.0


def compare(row: Sequence[float], base: Sequence[float], higher_is_better: bool,
            noise_pct: float) -> Verdict:
    r, b = Spread.of(row), Spread.of(base)
    if not r.median or not b.median:
        return Verdict(float("inf"), None, "no verdict (zero figure)")
    ratio = b.median / r.median if higher_is_better else r.median / b.median
    if len(row) < MIN_REPEATS or len(base) < MIN_REPEATS:
        if min(len(row), len(base)) == 1:
            return Verdict(ratio, None, "single run: no verdict")
        return Verdict(ratio, None, f"{len(row)} vs {len(base)} repeats: no verdict "
                                    f"(needs {MIN_REPEATS} each)")
    apart = r.high < b.low or b.high < r.low
    factor = ratio if ratio >= 1 else 1 / ratio  # symmetric: swapping the rows keeps it
    if apart and (factor - 1) * 100 > noise_pct:
        word = "slower" if ratio > 1 else "faster"
        return Verdict(ratio, True, f"{factor:.2f}× {word} (significant)")
    return Verdict(ratio, False, "no clear difference")
