"""What the numbers show, in plain words, from the model's facts (`lab.report.facts`):
these findings hold for any app. What an endpoint is, and what anyone claimed about it, is
for `lab.report.article` to say.
"""

from collections.abc import Callable, Sequence

from lab.kinds import Fact, get
from lab.load.stats import Spread
from lab.report.facts import probe_p50
from lab.report.fmt import fmt, peaks, split
from lab.report.groups import CLIENT_SHARE_BAR, Comparison, Row, client_limits, machine_limits
from lab.report.model import ComparisonFacts
from lab.store.schema import Figures


def burst_finding(comp: ComparisonFacts) -> str | None:
    delay = comp.delay
    if delay is None:
        return None
    parts, serial_rows, overlap_rows, walls = [], [], [], []
    for row in comp.rows:
        s, found = row.spread(), row.serialised
        if s is None or found is None:
            continue
        walls.append(s.median)
        if found.serial:
            serial_rows.append(row.server_id)
            parts.append(f"{row.server_id} {fmt(s.median)} s (serialised: split "
                         f"{split(row)}, busiest worker × delay = {fmt(found.serial_s)} s)")
        else:
            overlap_rows.append(row.server_id)
            parts.append(f"{row.server_id} {fmt(s.median)} s "
                         f"(overlapped: {_held(row, s, comp.n, delay)})")
    if not parts:
        return None
    if not overlap_rows:
        summary = "requests ran one after another on every configuration"
    elif not serial_rows:  # the common case, said once: the table has each row
        low, high = min(walls), max(walls)
        held = [max(p) for row in comp.rows if (p := row.peaks())]
        at_once = (f"the busiest worker held {min(held)}–{max(held)} of them at once "
                   "(counted in the workers)" if held else
                   f"≈{comp.n * delay / high:.0f}–{comp.n * delay / low:.0f} in progress "
                   "at once (estimated as N·delay/wall)")
        return (f"**{comp.endpoint}**, N = {comp.n} × {fmt(delay)} s (one after another: "
                f"{fmt(comp.n * delay)} s): requests overlapped on every configuration "
                f"({len(walls)}): {fmt(low)}–{fmt(high)} s; {at_once}.")
    else:
        summary = (f"serialised on {', '.join(serial_rows)}; overlapped on "
                   f"{', '.join(overlap_rows)}")
    lead = (f"**{comp.endpoint}**, "
            f"N = {comp.n} × {fmt(delay)} s (one after another: {fmt(comp.n * delay)} s)")
    return f"{lead}: {summary}. " + "; ".join(parts) + "."


def _held(row: Row, s: Spread, n: int, delay: float) -> str:
    if row.peaks():
        return f"peak {peaks(row)} in flight per worker"
    return f"≈{n * delay / s.median:.0f}× (estimated as N·delay/wall)"


def interference_finding(comp: ComparisonFacts) -> str | None:
    """Stalled, slowed or as fast as idle (`lab.report.facts.probe_effect`), per
    configuration, with the probe's p90 and max under load: a tail the median hides."""
    said: dict[str, list[str]] = {"stalled": [], "stalled some": [], "slowed": [],
                                  "as idle": []}
    for row in comp.rows:
        p50, effect = probe_p50(row), row.effect
        if p50 is None or effect is None:
            continue
        loaded, idle = p50
        lat = row.latency()
        said[effect].append(f"{row.server_id} {fmt(loaded.median)} ms vs {fmt(idle.median)} "
                            f"ms idle (p90 {fmt(lat.get('p90'))} ms, max {fmt(lat.get('max'))} ms)")
    if not any(said.values()):
        return None
    probe = comp.load.get("probe", "the probe")
    head = (f"**{comp.endpoint} in the background** ({comp.n} users"
            + (f", delay {fmt(comp.delay)} s" if comp.delay else "") + f"), probe `{probe}` p50: ")
    parts = []
    if said["stalled"]:
        parts.append("it **stalled unrelated requests** on " + "; ".join(said["stalled"]))
    if said["stalled some"]:
        parts.append("it **stalled some of them** (one in ten or more: p90), its median as "
                     "fast as idle, on " + "; ".join(said["stalled some"]))
    if said["slowed"]:
        parts.append("it slowed them, short of a stall, on " + "; ".join(said["slowed"]))
    if said["as idle"]:
        parts.append("it left them as fast as idle on " + "; ".join(said["as idle"]))
    return head + "; ".join(parts) + "."


def _cells(comps: Sequence[Comparison], why: Callable[[Figures, Comparison], list[str]]
           ) -> list[str]:
    """Each successful cell with a reason, as "cell id (reasons)"."""
    return sorted({f"{r.cell_id} ({'; '.join(reasons)})" for c in comps for row in c.rows
                   for r in row.results if r.ok and r.figures
                   and (reasons := why(r.figures, c))})


def client_limit_finding(comps: Sequence[Comparison]) -> str | None:
    limited = _cells(comps, lambda f, c: client_limits(f, c.delay))
    saturated = [x for x in _cells(comps, lambda f, _: machine_limits(f))
                 if x.split(" (")[0] not in {y.split(" (")[0] for y in limited}]
    parts = []
    if limited:
        parts.append(f"**Client-limited:** in {len(limited)} cell(s) the lab's client, not "
                     "the server, may have set the figure (its CPU at 90 % of a core, a "
                     "burst's sends spread over more than 5 % of the delay, an open-model "
                     "schedule it could not hold, or connections it could not open); they "
                     "get no verdict: " + ", ".join(limited) + ".")
    if saturated:
        parts.append(f"**Machine saturated:** in {len(saturated)} more cell(s) client and "
                     "server together used ≥ 90 % of all cores and the client's CPU was ≥ "
                     f"{100 * CLIENT_SHARE_BAR:.0f} % of the server's: the server might have "
                     "done better with it, so they get no verdict: " + ", ".join(saturated) + ".")
    return " ".join(parts) or None


def unwrapped_finding(comps: Sequence[Comparison]) -> str | None:
    """Said once, first: without the wrapper there is no per-worker split."""
    if all(row.wrapped for c in comps for row in c.rows):
        return None
    return ("**No per-worker split:** the app was served unwrapped (`wrap = false`), so no "
            "response named its worker; *requests per worker* is not shown, and whether "
            "requests ran one after another on a worker is not stated.")


def findings(comps: Sequence[ComparisonFacts]) -> list[str]:
    out = [unwrapped_finding(comps)]
    for comp in comps:
        has = get(comp.kind).facts
        if Fact.SERIALISED in has:
            out.append(burst_finding(comp))
        if Fact.PROBE_EFFECT in has:
            out.append(interference_finding(comp))
    out.append(client_limit_finding(comps))
    return [x for x in out if x]
