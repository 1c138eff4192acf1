"""Who holds the event loop: the endpoints the wrapper's loop meter (``lab.loop_meter``)
timed inside every worker, ranked by how long each call held its worker's loop, with the
longest step and where the watchdog found a long step blocked; and the lines that name, in
"In short", the endpoints that block their worker and what to do about it."""

from itertools import groupby

from tabulate import tabulate

from lab.report.facts import HOLD_MS, Hold, merged
from lab.report.fmt import fmt
from lab.report.model import Report

FIX = "make it `def` (FastAPI runs it in a thread), or await an async driver instead"


def _site(site: tuple[str, int, float]) -> str:
    name, steps, seconds = site
    return f"`{name}` ({steps} steps, {fmt(seconds)} s)"


def _row(h: Hold) -> list[str]:
    return [f"`{h.endpoint}`", h.server_id, str(h.calls), fmt(h.loop_ms_per_call),
            fmt(h.cpu_ms_per_call), f"{fmt(h.longest_p99_ms)} / {fmt(h.longest_max_ms)}",
            "; ".join(map(_site, h.sites[:2])) or "–"]


def warning(report: Report) -> list[str]:
    """Said first when the meter ran: its cost is in every figure of the run."""
    if not report.holds:
        return []
    return ["> **The loop meter was on** (`lab.loop_meter = true`): driving each request's "
            "coroutine step by step cost 14–20 % of a trivial endpoint's req/s on a 2-core "
            "machine (`python -m benchmarks.wrap_cost --loop-meter`, docs/benchmarks.md). "
            "Compare this run's throughput only with runs that had it on too.", ""]


def section(report: Report) -> list[str]:
    if not report.holds:
        return []
    lines = ["## Who holds the event loop", "",
             "Measured inside every worker by the wrapper (`lab.loop_meter = true`): each "
             "synchronous step of a request's coroutine, timed on the event loop. A call that "
             f"holds the loop ≥ {HOLD_MS:g} ms (or whose step was caught blocking) stalls every "
             "other request of its worker meanwhile; a *site* is where the watchdog found such a "
             "step, in the app's code. Over every cell and repeat of the experiment.", ""]
    for experiment, group in groupby(report.holds, key=lambda h: h.experiment):
        rows = sorted(group, key=lambda h: (-h.loop_ms_per_call, h.server_id))
        lines += [f"### `{experiment}`", "",
                  tabulate([_row(h) for h in rows],
                           headers=["endpoint", "configuration", "calls", "loop ms per call",
                                    "CPU ms per call", "longest step p99 / max ms",
                                    "blocking sites"],
                           tablefmt="github", disable_numparse=True), ""]
    return lines


def short(report: Report) -> list[str]:
    """One line per endpoint that held its worker's loop over the run, with its site and
    the fix; one saying none did, when the meter ran and none did."""
    if not report.holds:
        return []
    by: dict[str, dict[str, list[Hold]]] = {}
    for h in report.holds:
        by.setdefault(h.endpoint, {}).setdefault(h.server_id, []).append(h)
    out = []
    for endpoint, configurations in sorted(by.items()):
        # Over the run: a `def` endpoint's first call, alone in an experiment, is one call.
        blocking = [h for h in map(merged, configurations.values()) if h.blocks]
        if not blocking:
            continue
        ms = [h.loop_ms_per_call for h in blocking]
        span = fmt(min(ms)) if min(ms) == max(ms) else f"{fmt(min(ms))}–{fmt(max(ms))}"
        where = next((h.sites[0][0] for h in blocking if h.sites), None)
        out.append(f"`{endpoint}` holds its worker's event loop {span} ms per call"
                   + (f", at `{where}`" if where else "")
                   + f" (on {len(blocking)} of {len(configurations)} configurations): {FIX}.")
    if not out:
        out.append(f"No endpoint held its worker's event loop ≥ {HOLD_MS:g} ms per call "
                   f"({len(by)} measured inside the workers).")
    return out
