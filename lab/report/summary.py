""""In short": the report's answers to the three questions — `def` or `async def`, which
server, how many workers — in a few sentences, each computed from the comparisons."""

from lab.report.findings import serialised, stalled
from lab.report.groups import Comparison
from lab.report.tables import baseline, fmt, verdicts


def _largest_burst(comps: list[Comparison], endpoint: str) -> Comparison | None:
    found = [c for c in comps if c.kind == "burst" and c.endpoint == endpoint and c.delay]
    return max(found, key=lambda c: c.n, default=None)


def _blocking(comps: list[Comparison]) -> list[str]:
    out = []
    for endpoint, code in (("/blocking", "`def` + `time.sleep`"),
                           ("/async-blocking", "`async def` + `time.sleep`")):
        comp = _largest_burst(comps, endpoint)
        if comp is None or comp.delay is None:
            continue
        verdicts_ = [v for row in comp.rows if (v := serialised(row, comp.delay))]
        walls = [s.median for row in comp.rows if (s := row.spread())]
        if not verdicts_ or not walls:
            continue
        serial, n = sum(v[0] for v in verdicts_), len(verdicts_)
        if serial == 0:
            verdict = f"they overlapped on all {n} configurations: it does not block the app"
        elif serial == n:
            verdict = (f"they ran one after another (per worker) on all {n} configurations: "
                       "it blocks the worker it runs on")
        else:
            verdict = f"they ran one after another on {serial} of {n} configurations"
        out.append(
            f"{code} (`{endpoint}`): {comp.n} requests of {fmt(comp.delay)} s took "
            f"{fmt(min(walls))}–{fmt(max(walls))} s (one after another: "
            f"{fmt(comp.n * comp.delay)} s); {verdict}.")
    for comp in comps:
        if comp.kind == "interference" and comp.endpoint == "/async-blocking":
            flags = [stalled(row, comp) for row in comp.rows]
            known = [f for f in flags if f is not None]
            if known:
                out.append(f"With `{comp.endpoint}` busy ({comp.n} users), an unrelated "
                           f"`{comp.load.get('probe', 'probe')}` request stalled on "
                           f"{sum(known)} of {len(known)} configurations.")
    return out


def _which_server(comps: list[Comparison], noise: dict[str, float],
                  preferred: str | None) -> list[str]:
    out = []
    for comp in comps:
        if comp.kind != "closed":
            continue
        best = baseline(comp, None)
        if best is None:
            continue
        v = verdicts(comp, noise.get(comp.kind, 0.0), None)
        others = {sid: x for sid, x in v.items() if sid != best.server_id}
        slower = [f"{sid} ({x.ratio:.2f}×)" for sid, x in others.items() if x.significant]
        unclear = [sid for sid, x in others.items() if x.significant is False]
        median = best.spread()
        assert median is not None
        text = (f"`{comp.endpoint}`, {comp.n} users: most req/s on {best.server_id} "
                f"({fmt(median.median, 4)})")
        if unclear:
            text += f"; no clear difference from {', '.join(unclear)}"
        if slower:
            text += f"; significantly fewer on {', '.join(slower)}"
        if all(x.significant is None for x in others.values()):
            text += " (single runs: no verdicts)"
        if any(r["figures"].get("client_limited") or r["figures"].get("machine_saturated")
               for row in comp.rows for r in row.ok):
            text += ". Client or machine was at its limit in some cells: lower bounds"
        out.append(text + ".")
    return out


def in_short(comps: list[Comparison], noise: dict[str, float],
             preferred: str | None = None) -> list[str]:
    return _blocking(comps) + _which_server(comps, noise, preferred)
