"""One markdown table per comparison: a row per server configuration, best = 1.00."""

from typing import Any

from tabulate import tabulate

from lab.report.groups import Comparison, Row
from lab.stats import Spread

NOISY_SPREAD_PCT = 10.0


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:.0f}"


def fmt_spread(s: Spread | None, digits: int = 3) -> str:
    if s is None:
        return "–"
    if s.n == 1:
        return fmt(s.median, digits)
    flag = " ⚠" if s.spread_pct >= NOISY_SPREAD_PCT else ""
    return f"{fmt(s.median, digits)} ({fmt(s.low, digits)}–{fmt(s.high, digits)}){flag}"


def split(record: dict[str, Any]) -> str:
    """How requests split across worker processes, largest share first: '63/37'."""
    counts = sorted(record["figures"]["pids"].values(), reverse=True)
    return "/".join(map(str, counts)) or "–"


def errors(rows: Row) -> str:
    counts: dict[str, int] = {}
    for r in rows.records:
        for kind, n in ((r["figures"] or {}).get("errors") or {}).items():
            counts[kind] = counts.get(kind, 0) + n
    if not counts:
        return "0"
    return f"{sum(counts.values())} (" + ", ".join(f"{k} {n}" for k, n in counts.items()) + ")"


def relative(comp: Comparison) -> dict[str, float]:
    """Each row's headline median over the best one, so that 1.00 is best and 2.00 is
    twice as slow whichever way the headline figure points."""
    key, better = comp.headline
    medians = {r.server_id: s.median for r in comp.rows if (s := r.spread(key))}
    if not medians:
        return {}
    best = min(medians.values()) if better == "lower" else max(medians.values())
    return {sid: (m / best if better == "lower" else best / m) if m and best else float("inf")
            for sid, m in medians.items()}


def table(comp: Comparison) -> str:
    rel = relative(comp)
    key, _ = comp.headline
    burst = comp.kind == "burst"
    headers = ["server", "workers", "wall s" if burst else "req/s"]
    if burst and comp.delay:
        headers.append("concurrency ≈ N·delay/wall")
    headers += ["p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "requests per worker",
                "client CPU %", "relative"]
    body = []
    for row in comp.rows:
        s = row.spread(key)
        typical = row.typical(key)
        if s is None or typical is None:
            reasons = {r["failure"]["kind"] for r in row.records if r["failure"]}
            body.append([row.server_id, row.workers, "failed: " + ", ".join(sorted(reasons))]
                        + [""] * (len(headers) - 3))
            continue
        f = typical["figures"]
        lat = f["latency_ms"]
        cells: list[Any] = [row.server_id, row.workers,
                            fmt_spread(s, 3 if burst else 4)]
        if burst and comp.delay:
            cells.append(fmt(comp.n * comp.delay / s.median, 2))
        cpu = fmt(f["client_cpu_pct"], 2) + (" ⚠ client-limited" if f["client_limited"] else "")
        cells += [fmt(lat["p50"]), fmt(lat["p90"]), fmt(lat["p99"]), fmt(lat["max"]),
                  errors(row), split(typical), cpu, f"{rel.get(row.server_id, 0):.2f}"]
        body.append(cells)
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)
