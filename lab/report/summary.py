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
    """Per closed comparison: the baseline (the preferred configuration, else the best row
    that may win) and what the verdicts say of the others. No winner from a row whose
    figure may be the client's or the machine's."""
    out = []
    for comp in comps:
        if comp.kind != "closed":
            continue
        base = baseline(comp, preferred)
        if base is None:
            continue
        v = verdicts(comp, noise.get(comp.kind, 0.0), preferred)
        s = base.spread()
        assert s is not None
        head = f"`{comp.endpoint}`, {comp.n} users"
        limited = sorted(row.server_id for row in comp.rows
                         if row.values() and row.limit() is not None)
        note = (f" Not comparable (client or machine at its limit): {', '.join(limited)}."
                if limited else "")
        if base.limit() is not None:
            out.append(f"{head}: no verdict — every configuration's figure may be the client's "
                       f"or the machine's, not the server's.{note}")
            continue
        others = {sid: x for sid, x in v.items() if sid != base.server_id
                  and sid not in limited}
        better = [sid for sid, x in others.items() if x.significant and x.ratio < 1]
        worse = [f"{sid} ({x.ratio:.2f}×)" for sid, x in others.items()
                 if x.significant and x.ratio > 1]
        unclear = [sid for sid, x in others.items() if x.significant is False]
        who = ("baseline " if preferred == base.server_id else "most req/s on ")
        text = f"{head}: {who}{base.server_id} ({fmt(s.median, 4)} req/s)"
        if better:
            text += f"; significantly more on {', '.join(better)}"
        if unclear:
            text += f"; no clear difference from {', '.join(unclear)}"
        if worse:
            text += f"; significantly fewer on {', '.join(worse)}"
        if others and all(x.significant is None for x in others.values()):
            text += " (too few repeats: no verdicts)"
        out.append(text + "." + note)
    return out


def in_short(comps: list[Comparison], noise: dict[str, float],
             preferred: str | None = None) -> list[str]:
    return _blocking(comps) + _which_server(comps, noise, preferred)
