"""When one experiment measures several endpoints, say per configuration how each did and
which stalled the probe, from the data. Only where the config says they are several ways of
writing the same thing (`ways = true`, as apps.realistic's `def` / `async def` /
aiosqlite) are they ranked, best first, and answer "`def` or `async def`?"; otherwise they
are endpoints compared side by side. It assumes nothing about the app."""

from collections import defaultdict
from collections.abc import Sequence

from lab.report.fmt import fmt
from lab.report.model import ComparisonFacts, RowFacts

# The kinds whose endpoints are compared as ways, and their headline's unit. The wording
# below is theirs too (a burst's batch wall time, a probe's p50): a kind == test here.
UNITS = {"burst": " s", "interference": " ms"}


def ways_findings(comps: Sequence[ComparisonFacts]) -> list[str]:
    """One line per experiment of kind burst or interference with ≥ 2 endpoints at a load."""
    return [line for (experiment, n), group in _groups(comps).items()
            if (line := _line(experiment, n, group))]


def _ways(group: list[ComparisonFacts]) -> bool:
    """The config said these endpoints are ways of one thing (`ways = true`)."""
    return all(r.ways for comp in group for row in comp.rows for r in row.results)


def _groups(comps: Sequence[ComparisonFacts]
            ) -> dict[tuple[str, int], list[ComparisonFacts]]:
    """(experiment, load) → its comparisons, where they measured ≥ 2 endpoints."""
    groups: dict[tuple[str, int], list[ComparisonFacts]] = defaultdict(list)
    for comp in comps:
        if comp.kind in UNITS:
            groups[(comp.experiment, comp.n)].append(comp)
    return {key: g for key, g in groups.items() if len({c.endpoint for c in g}) > 1}


def _line(experiment: str, n: int, group: list[ComparisonFacts]) -> str | None:
    kind = group[0].kind
    rows: dict[str, list[tuple[float, str, RowFacts]]] = defaultdict(list)
    for comp in group:
        for row in comp.rows:
            if (s := row.spread()) is not None:
                rows[row.server_id].append((s.median, comp.endpoint, row))
    parts = []
    ranked = _ways(group)
    for sid, ways in rows.items():
        if ranked:
            ways.sort(key=lambda w: w[0])
        text = ", ".join(f"`{e}` {fmt(v)}{UNITS[kind]}" for v, e, _ in ways)
        if kind == "interference":
            stalls = [e for _, e, row in ways if row.stalled]
            text += (f" — stalled by {', '.join(f'`{e}`' for e in stalls)}" if stalls
                     else " — none stalled it")
        parts.append(f"{sid}: {text}")
    if not parts:
        return None
    title, order = ("Ways", "best first, ") if ranked else ("Endpoints", "")
    what = (f"{n} requests at once, batch wall time" if kind == "burst"
            else f"probe `{group[0].load.get('probe', 'probe')}` p50 while {n} users load "
                 f"each {title.lower().rstrip('s')}")
    return (f"**{title} compared, `{experiment}`** ({what}; {order}medians of the "
            "repeats): " + "; ".join(parts) + ".")


def ways_short(comps: Sequence[ComparisonFacts]) -> list[str]:
    """The same, one line per experiment for "In short": each way's range over the
    configurations, best first, and how often it stalled the probe."""
    out = []
    for (experiment, n), group in _groups(comps).items():
        if not _ways(group):
            continue
        ways = []
        for comp in group:
            medians = [s.median for row in comp.rows if (s := row.spread()) is not None]
            if not medians:
                continue
            text = f"`{comp.endpoint}` {fmt(min(medians))}–{fmt(max(medians))}{UNITS[comp.kind]}"
            if comp.kind == "interference":
                known = [f for row in comp.rows if (f := row.stalled) is not None]
                text += f" (stalled it on {sum(known)} of {len(known)})" if any(known) else ""
            ways.append((sorted(medians)[len(medians) // 2], text))
        if len(ways) < 2:
            continue
        what = (f"{n} requests at once" if group[0].kind == "burst" else
                f"probe `{group[0].load.get('probe', 'probe')}` p50 while {n} users load "
                "each way")
        out.append(f"`{experiment}` ({what}; range over the configurations, by median, best "
                   "first): " + ", ".join(text for _, text in sorted(ways)) + ".")
    return out
