"""One markdown table per comparison: a row per server configuration, with its headline
figure over repeats, a relative column (baseline = 1.00) and an honest verdict."""

from collections.abc import Callable
from typing import Any

from tabulate import tabulate

from lab.report.groups import MIN_SAMPLES, Comparison, Row
from lab.stats import Spread
from lab.verdict import Verdict, compare

NOISY_SPREAD_PCT = 10.0


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
    flag = " ⚠ noisy" if s.spread_pct >= NOISY_SPREAD_PCT else ""
    return f"{fmt(s.median, digits)} ({fmt(s.low, digits)}–{fmt(s.high, digits)}){flag}"


def split(record: dict[str, Any] | None) -> str:
    """How requests split across worker processes, largest share first: '63/37'."""
    if record is None:
        return "–"
    if record.get("wrap") is False:
        return "– (not wrapped: wrap = false)"
    counts = sorted(record["figures"]["pids"].values(), reverse=True)
    return "/".join(map(str, counts)) or "–"


def errors(row: Row) -> str:
    counts: dict[str, int] = {}
    for r in row.records:
        for kind, n in ((r["figures"] or {}).get("errors") or {}).items():
            counts[kind] = counts.get(kind, 0) + n
    if not counts:
        return "0"
    return f"{sum(counts.values())} (" + ", ".join(f"{k} {n}" for k, n in counts.items()) + ")"


LIMIT_TEXT = {"client": "not comparable: client at its limit",
              "machine": "not comparable: machine saturated"}


def _eligible(row: Row, comp: Comparison) -> bool:
    """May this row win? Not when its figure may be the client's or the shared machine's,
    nor, for a time figure, when some of its requests failed (a fast failure is not fast
    service)."""
    if row.limit() is not None:
        return False
    return comp.headline.higher_is_better or row.error_rate() == 0


def baseline(comp: Comparison, preferred: str | None) -> Row | None:
    """The row others are compared with: the preferred configuration, else the best of the
    rows that may win, else the best of all."""
    rows = [r for r in comp.rows if r.values()]
    if not rows:
        return None
    for row in rows:
        if row.server_id == preferred:
            return row
    h = comp.headline
    pick = max if h.higher_is_better else min
    candidates = [r for r in rows if _eligible(r, comp)] or rows
    return pick(candidates, key=lambda r: Spread.of(r.values()).median)


def verdicts(comp: Comparison, noise_pct: float, preferred: str | None
             ) -> dict[str, Verdict]:
    """Each row against the baseline; no "significant" from a row or baseline that was
    limited by the client or the machine, or that won a time figure with failures."""
    base = baseline(comp, preferred)
    if base is None:
        return {}
    out = {}
    for row in comp.rows:
        if not row.values():
            continue
        v = compare(row.values(), base.values(), comp.headline.higher_is_better, noise_pct)
        limit = row.limit() or base.limit()
        if row is base:
            v = Verdict(v.ratio, None, "baseline" + (f"; {LIMIT_TEXT[limit]}" if limit else ""))
        elif limit is not None:
            v = Verdict(v.ratio, None, LIMIT_TEXT[limit])
        elif v.ratio < 1 and v.significant is not None and not _eligible(row, comp):
            v = Verdict(v.ratio, None, f"no verdict: {100 * row.error_rate():.2g} % of its "
                                       "requests failed")
        out[row.server_id] = v
    return out


def _mean(row: Row, key: str) -> float | None:
    vals = [r["figures"].get(key) for r in row.ok]
    nums = [v for v in vals if isinstance(v, int | float)]
    return sum(nums) / len(nums) if nums else None


def _cpu(row: Row) -> str:
    typical = row.typical()
    assert typical is not None
    f = typical["figures"]
    flag = " ⚠ client-limited" if f["client_limited"] else (
        " ⚠ machine saturated" if f.get("machine_saturated") else "")
    return fmt(f["client_cpu_pct"], 2) + flag


def _resources(row: Row) -> list[str]:
    return [fmt(_mean(row, "server_cores_used"), 3), fmt(_mean(row, "rps_per_server_core"), 4),
            fmt(_mean(row, "server_peak_rss_mb"), 3)]


RESOURCE_HEADERS = ["server cores used", "req/s per server core", "peak RSS MB"]


def pct(lat: dict[str, float | None], key: str) -> str:
    """A percentile, or why it is not stated: too few samples behind it."""
    value = lat.get(key)
    if value is None and key in MIN_SAMPLES:
        return f"– (n={int(lat.get('n') or 0)})"
    return fmt(value)


def error_rate(row: Row) -> str:
    rate = row.error_rate()
    return "0" if rate == 0 else f"{100 * rate:.2g} %"
Columns = tuple[list[str], Callable[[Comparison, Row], list[str]]]


def _burst(comp: Comparison) -> Columns:
    headers = ["wall s"] + (["concurrency ≈ N·delay/wall"] if comp.delay else []) + [
        "p50 ms", "p99 ms", "max ms", "errors", "requests per worker", "client CPU %"]

    def cells(comp: Comparison, row: Row) -> list[str]:
        s = row.spread()
        assert s is not None
        lat = row.latency()
        conc = [fmt(comp.n * comp.delay / s.median, 2)] if comp.delay else []
        return [fmt_spread(s), *conc, fmt(lat["p50"]), pct(lat, "p99"), fmt(lat["max"]),
                errors(row), split(row.typical()), _cpu(row)]
    return headers, cells


def _variant(row: Row) -> tuple[str, str]:
    """A server and its options: rows that differ only in workers share it."""
    return row.server, repr(sorted(row.options.items()))


def _closed(comp: Comparison) -> Columns:
    one = {_variant(r): r.spread() for r in comp.rows if r.workers == 1 and r.values()}
    headers = ["req/s", "error rate", *RESOURCE_HEADERS[:2], "scaling vs 1 worker", "p50 ms",
               "p99 ms", "p99.9 ms", "errors", "requests per worker", "engine",
               "client CPU %", RESOURCE_HEADERS[2]]

    def cells(comp: Comparison, row: Row) -> list[str]:
        s = row.spread()
        assert s is not None
        lat = row.latency()
        base = one.get(_variant(row))
        scaling = "–"
        if base and base.median and row.workers > 1:
            ratio = s.median / base.median
            scaling = f"{ratio:.2f}× ({100 * ratio / row.workers:.0f} % eff.)"
        cores, per_core, rss = _resources(row)
        return [fmt_spread(s, 4), error_rate(row), cores, per_core, scaling, fmt(lat["p50"]),
                pct(lat, "p99"), pct(lat, "p99.9"), errors(row), split(row.typical()),
                ", ".join(sorted(row.engines)), _cpu(row), rss]
    return headers, cells


def _open(comp: Comparison) -> Columns:
    headers = ["p99 ms", "achieved req/s", "p50 ms", "p99.9 ms", "max ms", "errors",
               "client send lag p99 ms", "client CPU %", *RESOURCE_HEADERS]

    def cells(comp: Comparison, row: Row) -> list[str]:
        lat = row.latency()
        behind = any(r["figures"].get("client_behind") for r in row.ok)
        lag = fmt(max(r["figures"]["send_lag_p99_ms"] for r in row.ok), 2) \
            + (" ⚠ client behind schedule" if behind else "")
        return [fmt_spread(row.spread()), fmt_spread(row.spread(lambda f: f["rps"]), 4),
                fmt(lat["p50"]), pct(lat, "p99.9"), fmt(lat["max"]), errors(row), lag,
                _cpu(row), *_resources(row)]
    return headers, cells


def _interference(comp: Comparison) -> Columns:
    headers = ["probe p50 ms (loaded)", "probe p50 ms (idle)", "× idle", "probe p90 ms",
               "probe max ms", "errors", "background requests"]

    def cells(comp: Comparison, row: Row) -> list[str]:
        s = row.spread()
        assert s is not None
        idle = row.spread(lambda f: f["idle_latency_ms"]["p50"])
        lat = row.latency()
        times = f"{s.median / idle.median:.0f}×" if idle and idle.median else "–"
        bg = sum(int(r["figures"]["background_requests"]) for r in row.ok)
        return [fmt_spread(s), fmt_spread(idle), times, fmt(lat["p90"]), fmt(lat["max"]),
                errors(row), str(bg)]
    return headers, cells


KIND_COLUMNS: dict[str, Callable[[Comparison], Columns]] = {
    "burst": _burst, "closed": _closed, "open": _open, "interference": _interference,
}


def table(comp: Comparison, noise_pct: float, preferred: str | None = None) -> str:
    kind_headers, cells = KIND_COLUMNS[comp.kind](comp)
    verdict = verdicts(comp, noise_pct, preferred)
    headers = ["configuration", *kind_headers, "relative", "verdict"]
    body = []
    for row in comp.rows:
        if not row.values():
            reasons = sorted({r["failure"]["kind"] for r in row.records if r["failure"]})
            why = ("failed: " + ", ".join(reasons) if reasons else
                   f"– (n={max(int(r['figures'].get('latency_samples', 0)) for r in row.ok)}:"
                   " too few samples for the headline)")
            body.append([row.server_id, why] + [""] * (len(headers) - 2))
            continue
        v = verdict[row.server_id]
        used, ran = len(row.values()), len(row.records)
        text = v.text + (f" ({used} of {ran} repeats ok)" if used < ran else "")
        body.append([row.server_id, *cells(comp, row), f"{v.ratio:.2f}", text])
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)
