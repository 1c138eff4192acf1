"""When one experiment measures several endpoints — several ways of writing the same thing,
as apps.realistic's `def` / `async def` / aiosqlite — say per configuration which way did
best and which stalled, from the data. It assumes nothing about the app."""

from collections import defaultdict

from lab.report.findings import stalled
from lab.report.fmt import fmt
from lab.report.groups import Comparison, Row

UNITS = {"burst": " s", "interference": " ms"}


def ways_findings(comps: list[Comparison]) -> list[str]:
    """One line per experiment of kind burst or interference with ≥ 2 endpoints at a load."""
    return [line for (experiment, n), group in _groups(comps).items()
            if (line := _line(experiment, n, group))]


def _groups(comps: list[Comparison]) -> dict[tuple[str, int], list[Comparison]]:
    """(experiment, load) → its comparisons, where they measured ≥ 2 endpoints (ways)."""
    groups: dict[tuple[str, int], list[Comparison]] = defaultdict(list)
    for comp in comps:
        if comp.kind in UNITS:
            groups[(comp.experiment, comp.n)].append(comp)
    return {key: g for key, g in groups.items() if len({c.endpoint for c in g}) > 1}


def _line(experiment: str, n: int, group: list[Comparison]) -> str | None:
    kind = group[0].kind
    rows: dict[str, list[tuple[float, str, Row, Comparison]]] = defaultdict(list)
    for comp in group:
        for row in comp.rows:
            if (s := row.spread()) is not None:
                rows[row.server_id].append((s.median, comp.endpoint, row, comp))
    parts = []
    for sid, ways in rows.items():
        ways.sort(key=lambda w: w[0])
        text = ", ".join(f"`{e}` {fmt(v)}{UNITS[kind]}" for v, e, _, _ in ways)
        if kind == "interference":
            stalls = [e for _, e, row, comp in ways if stalled(row, comp)]
            text += (f" — stalled by {', '.join(f'`{e}`' for e in stalls)}" if stalls
                     else " — none stalled it")
        parts.append(f"{sid}: {text}")
    if not parts:
        return None
    what = (f"{n} requests at once, batch wall time" if kind == "burst"
            else f"probe `{group[0].load.get('probe', 'probe')}` p50 while {n} users load "
                 "each way")
    return (f"**Ways compared, `{experiment}`** ({what}; best first, medians of the "
            "repeats): " + "; ".join(parts) + ".")


def ways_short(comps: list[Comparison]) -> list[str]:
    """The same, one line per experiment for "In short": each way's range over the
    configurations, best first, and how often it stalled the probe."""
    out = []
    for (experiment, n), group in _groups(comps).items():
        ways = []
        for comp in group:
            medians = [s.median for row in comp.rows if (s := row.spread()) is not None]
            if not medians:
                continue
            text = f"`{comp.endpoint}` {fmt(min(medians))}–{fmt(max(medians))}{UNITS[comp.kind]}"
            if comp.kind == "interference":
                known = [f for row in comp.rows if (f := stalled(row, comp)) is not None]
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
