"""Numbers as the report writes them: three significant digits, never an exponent, and
a repeated figure as ``median (min–max)``."""

from lab.load.stats import Spread
from lab.report.groups import MIN_SAMPLES, Row
from lab.report.model import noisy


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    text = f"{x:.{digits}g}"
    return f"{x:.0f}" if "e" in text else text  # never 1e+02 for 99.6


def fmt_spread(s: Spread | None, digits: int = 3) -> str:
    """'median' for one run; 'median (min–max)' for repeats, ⚠ when the spread is large."""
    if s is None:
        return "–"
    if s.n == 1:
        return fmt(s.median, digits)
    flag = " ⚠ noisy" if noisy(s) else ""
    return f"{fmt(s.median, digits)} ({fmt(s.low, digits)}–{fmt(s.high, digits)}){flag}"


def pct(lat: dict[str, float | None], key: str) -> str:
    """A percentile, or why it is not stated: too few samples behind it."""
    value = lat.get(key)
    if value is None and key in MIN_SAMPLES:
        return f"– (n={int(lat.get('n') or 0)})"
    return fmt(value)


def rate(fraction: float) -> str:
    return "0" if fraction == 0 else f"{100 * fraction:.2g} %"


def split(row: Row) -> str:
    """How the typical repeat's requests split across worker processes, largest share
    first: '63/37'."""
    if not row.wrapped:
        return "– (not wrapped: wrap = false)"
    return "/".join(map(str, row.split())) or "–"


def peaks(row: Row) -> str:
    """The most requests in flight at once in each worker (typical repeat): '50' or
    '31/19'."""
    return "/".join(map(str, row.peaks())) or "–"
