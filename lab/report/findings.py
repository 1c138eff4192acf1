"""What the numbers show, in plain words, computed from the results only.

Each burst with a known ``delay`` is checked against physics: a worker that runs its
requests one after another needs (its share of N) × delay; anything well below that
overlapped. What an endpoint is, and what anyone claimed about it, is for
`lab.report.article` to say: these findings hold for any app.
"""

from collections.abc import Callable

from lab.load.stats import Spread
from lab.report.fmt import fmt
from lab.report.groups import CLIENT_SHARE_BAR, Comparison, Row, client_limits, machine_limits
from lab.report.tables import peaks, split
from lab.store.schema import Figures

SERIAL_FRACTION = 0.8  # wall ≥ 80 % of (busiest worker's share × delay) counts as serialised


def serialised(row: Row, delay: float) -> tuple[bool, float] | None:
    """(did the busiest worker run its requests one after another, the wall time that
    takes: its share of N × delay), or None for a row without results or without a
    per-worker split (the app was not wrapped)."""
    s, typical = row.spread(), row.typical()
    if s is None or typical is None or not typical.pids:
        return None
    serial_s = max(typical.pids.values(), default=0) * delay
    return s.median >= SERIAL_FRACTION * serial_s, serial_s


def burst_finding(comp: Comparison) -> str | None:
    delay = comp.delay
    if delay is None:
        return None
    parts, serial_rows, overlap_rows, walls = [], [], [], []
    for row in comp.rows:
        s, typical, verdict = row.spread(), row.typical(), serialised(row, delay)
        if s is None or typical is None or verdict is None:
            continue
        is_serial, serial_s = verdict
        walls.append(s.median)
        if is_serial:
            serial_rows.append(row.server_id)
            parts.append(f"{row.server_id} {fmt(s.median)} s (serialised: split "
                         f"{split(row)}, busiest worker × delay = {fmt(serial_s)} s)")
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
        held = [p for row in comp.rows if (p := _peak(row)) is not None]
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


def _peak(row: Row) -> int | None:
    """The most requests one worker held at once (typical repeat), counted inside it."""
    typical = row.typical()
    return max(typical.inflight_peak.values()) if typical and typical.inflight_peak else None


def _held(row: Row, s: Spread, n: int, delay: float) -> str:
    if _peak(row) is not None:
        return f"peak {peaks(row)} in flight per worker"
    return f"≈{n * delay / s.median:.0f}× (estimated as N·delay/wall)"


def _probe_p50(row: Row) -> tuple[Spread, Spread] | None:
    """(probe p50 under load, probe p50 idle) over the repeats, or None without data."""
    loaded = row.spread()
    idle = row.spread(lambda f: f.idle_ms("p50"))
    return None if loaded is None or idle is None else (loaded, idle)


def _stall_bar_ms(comp: Comparison, idle: Spread) -> float:
    """A probe this slow was stalled: half the delay (10× idle without a delay)."""
    return 500 * comp.delay if comp.delay else 10 * idle.median


def _stalled(comp: Comparison, loaded: Spread, idle: Spread) -> bool:
    """Probe p50 under load at the stall bar or above."""
    return loaded.median >= _stall_bar_ms(comp, idle)


def stalled(row: Row, comp: Comparison) -> bool | None:
    """Did the slow endpoint stall the probe on this row, its median or its tail (one probe
    in ten)? None: no data."""
    effect = probe_effect(row, comp)
    return None if effect is None else effect in ("stalled", "stalled some")


def probe_effect(row: Row, comp: Comparison) -> str | None:
    """What the loaded endpoint did to the probe: "stalled" (its p50 under load: see
    ``_stalled``), "stalled some" (its p90 under load at that bar and at 10× idle's p90: a
    probe in ten or more stalled, as those that reach the blocked worker of two do), "as
    idle" (p50 under load within idle's own spread: no higher than the idle probes' p90, a
    value one idle probe in ten exceeds anyway; its p50 where no p90 was recorded) or
    "slowed" (in between). None: no data."""
    p50 = _probe_p50(row)
    if p50 is None:
        return None
    loaded, idle = p50
    if _stalled(comp, loaded, idle):
        return "stalled"
    # The tail against idle's own tail too: a 4 ms p90 beside a 0.4 ms idle p50 is one
    # query's wait behind a thread's GIL, not a stall (10× idle's p90 is the bar then).
    tail = row.latency().get("p90")  # of every repeat's probes merged, as the finding says
    idle_p90 = row.spread(lambda f: f.idle_ms("p90"))
    tail_bar = max(_stall_bar_ms(comp, idle), 10 * idle_p90.median if idle_p90 else 0.0)
    if tail is not None and tail >= tail_bar:
        return "stalled some"
    return "as idle" if loaded.median <= (idle_p90 or idle).median else "slowed"


def interference_finding(comp: Comparison) -> str | None:
    """Stalled, slowed or as fast as idle (see ``probe_effect``), per configuration, with
    the probe's p90 and max under load: a tail the median hides."""
    said: dict[str, list[str]] = {"stalled": [], "stalled some": [], "slowed": [],
                                  "as idle": []}
    for row in comp.rows:
        p50, effect = _probe_p50(row), probe_effect(row, comp)
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


def knees(comps: list[Comparison]) -> list[tuple[str, str, float, float | None, str]]:
    """Per open experiment and configuration: (experiment, configuration, SLO, highest
    rate tried whose median p99 met the SLO with no errors, first rate that did not)."""
    by: dict[tuple[str, str], list[tuple[int, Row]]] = {}
    slo: dict[str, float] = {}
    for comp in comps:
        if comp.kind != "open" or comp.searched or comp.load.get("slo_p99_ms") is None:
            continue
        slo[comp.experiment] = float(comp.load["slo_p99_ms"])
        for row in comp.rows:
            by.setdefault((comp.experiment, row.server_id), []).append((comp.n, row))
    out = []
    for (exp, sid), rates in by.items():
        best: float | None = None
        over = "none tried"
        for rate, row in sorted(rates, key=lambda x: x[0]):
            s = row.spread()
            ok = s is not None and s.median <= slo[exp] and not any(
                f.errors or f.open and f.open.client_behind for f in row.ok)
            if ok and over == "none tried":
                best = rate
            elif over == "none tried":
                over = str(rate)
        out.append((exp, sid, slo[exp], best, over))
    return out


def _cells(comps: list[Comparison], why: Callable[[Figures, Comparison], list[str]]
           ) -> list[str]:
    """Each successful cell with a reason, as "cell id (reasons)"."""
    return sorted({f"{r.cell_id} ({'; '.join(reasons)})" for c in comps for row in c.rows
                   for r in row.results if r.ok and r.figures
                   and (reasons := why(r.figures, c))})


def client_limit_finding(comps: list[Comparison]) -> str | None:
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


def unwrapped_finding(comps: list[Comparison]) -> str | None:
    """Said once, first: without the wrapper there is no per-worker split."""
    if all(row.wrapped for c in comps for row in c.rows):
        return None
    return ("**No per-worker split:** the app was served unwrapped (`wrap = false`), so no "
            "response named its worker; *requests per worker* is not shown, and whether "
            "requests ran one after another on a worker is not stated.")


def findings(comps: list[Comparison]) -> list[str]:
    out = [unwrapped_finding(comps)]
    for comp in comps:
        if comp.kind == "burst":
            out.append(burst_finding(comp))
        elif comp.kind == "interference":
            out.append(interference_finding(comp))
    out.append(client_limit_finding(comps))
    return [x for x in out if x]
