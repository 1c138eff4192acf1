"""What the numbers show, in plain words, computed from the results only.

Each burst with a known ``delay`` is checked against physics: a worker that runs its
requests one after another needs (its share of N) × delay; anything well below that
overlapped. The article's claims are stated next to what was measured, never assumed.
"""

from lab.report.groups import Comparison, Row
from lab.report.tables import fmt, split

# What the article's app endpoints are, and what is claimed about them.
ENDPOINTS = {
    "/blocking": ("`def` + `time.sleep`",
                  "the article says it blocks the whole app"),
    "/non-blocking": ("`async def` + `await asyncio.sleep`",
                      "the article says requests run concurrently"),
    "/compare": ("`asyncio.gather` of 2 sleeps",
                 "the article says the fan-out costs about one delay"),
    "/benchmark": ("`asyncio.gather` of 10 sleeps",
                   "the article says the fan-out costs about one delay"),
    "/async-blocking": ("`async def` + `time.sleep`",
                        "not in the article: it blocks the event loop"),
    "/cpu": ("`def` + pure-Python CPU work", "threads share one GIL"),
    "/hello": ("trivial `async def` JSON", "server and framework overhead only"),
}
SERIAL_FRACTION = 0.8  # wall ≥ 80 % of (busiest worker's share × delay) counts as serialised


def _serialised(row: Row, delay: float) -> tuple[bool, float] | None:
    """(was it serialised per worker, the wall time that would mean)."""
    typical = row.typical("wall_s")
    if typical is None:
        return None
    f = typical["figures"]
    busiest = max(f["pids"].values(), default=0)
    serial_s = busiest * delay
    return f["wall_s"] >= SERIAL_FRACTION * serial_s, serial_s


def burst_finding(comp: Comparison) -> str | None:
    delay = comp.delay
    if delay is None or not comp.rows:
        return None
    what, claim = ENDPOINTS.get(comp.endpoint, (f"`{comp.endpoint}`", ""))
    parts, serial_rows, overlap_rows = [], [], []
    for row in comp.rows:
        verdict = _serialised(row, delay)
        s = row.spread("wall_s")
        if verdict is None or s is None:
            continue
        serialised, serial_s = verdict
        (serial_rows if serialised else overlap_rows).append(row.server_id)
        typical = row.typical("wall_s")
        assert typical is not None
        parts.append(f"{row.server_id} {fmt(s.median)} s "
                     + (f"(serialised: split {split(typical)}, busiest worker × delay = "
                        f"{fmt(serial_s)} s)" if serialised
                        else f"(overlapped ≈{comp.n * delay / s.median:.0f}×)"))
    if not parts:
        return None
    if serial_rows and not overlap_rows:
        summary = "requests ran one after another on every configuration"
    elif overlap_rows and not serial_rows:
        summary = "requests overlapped on every configuration"
    else:
        summary = f"serialised on {', '.join(serial_rows)}; overlapped on " \
                  f"{', '.join(overlap_rows)}"
    lead = f"**{comp.endpoint}** ({what}{'; ' + claim if claim else ''}), " \
           f"N = {comp.n} × {fmt(delay)} s (one after another: {fmt(comp.n * delay)} s)"
    return f"{lead}: {summary}. " + "; ".join(parts) + "."


def scaling_finding(comp: Comparison) -> str | None:
    """req/s at more workers over req/s at one, per server and options."""
    by_base: dict[tuple[str, str], dict[int, Row]] = {}
    for row in comp.rows:
        by_base.setdefault((row.server, repr(sorted(row.options.items()))), {})[row.workers] = row
    parts = []
    for (server, _), rows in by_base.items():
        one = rows.get(1)
        s1 = one.spread("rps") if one else None
        for w, row in sorted(rows.items()):
            sw = row.spread("rps")
            if w == 1 or s1 is None or sw is None or not s1.median:
                continue
            ratio = sw.median / s1.median
            parts.append(f"{server} ×{ratio:.2f} at {w} workers "
                         f"(efficiency {100 * ratio / w:.0f} %)")
    if not parts:
        return None
    what, _ = ENDPOINTS.get(comp.endpoint, (f"`{comp.endpoint}`", ""))
    return (f"**{comp.endpoint}** ({what}), {comp.n} users: req/s relative to 1 worker: "
            + "; ".join(parts) + ".")


def client_limit_finding(comps: list[Comparison]) -> str | None:
    limited = sorted({r["cell_id"] for c in comps for row in c.rows for r in row.ok
                      if r["figures"]["client_limited"]})
    if not limited:
        return None
    return (f"**Client-limited:** in {len(limited)} cell(s) the lab's client used ≥ 90 % of a "
            "core, so their req/s are lower bounds on what the server can do: "
            + ", ".join(limited) + ".")


def findings(comps: list[Comparison]) -> list[str]:
    out = []
    for comp in comps:
        line = burst_finding(comp) if comp.kind == "burst" else scaling_finding(comp)
        if line:
            out.append(line)
    if (limit := client_limit_finding(comps)):
        out.append(limit)
    return out
