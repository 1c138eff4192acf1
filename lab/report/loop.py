"""Who holds the event loop: the endpoints the wrapper's loop meter (``lab.loop_meter``)
timed inside every worker, ranked by how long each call held its worker's loop, with the
longest step and where the watchdog found a long step blocked; what held the loop outside
any request; how `def` endpoints queued for anyio's threads; and the lines that name, in
"In short", the endpoints that block their worker or queue for threads and what to do."""

from collections.abc import Iterable

from tabulate import tabulate

from lab.report.article import ARTICLE_APP
from lab.report.fmt import fmt
from lab.report.groups import delay_of
from lab.report.loopfacts import HOLD_MS, OUTSIDE_SHARE, Hold, Outside, Pool, merged
from lab.report.loopfacts import NO_APP_FRAME as NO_APP
from lab.report.model import Report

FIX = ("make {it} `def` (FastAPI runs a `def` endpoint, dependency or background task in a "
       "thread), or await an async driver instead")
FIX_OUTSIDE = ("run that work in a thread (`await asyncio.to_thread(...)`) or make it await; "
               "until then it stalls every request of its worker")
FIX_POOL = "raise `threads` (`[lab] threads = [40, 100]` measures it) or add workers"


def _pct(share: float | None) -> str:
    return f"{fmt(100 * share)} %" if share is not None else "–"


def _site(site: tuple[str, int, float], unit: str = "steps") -> str:
    name, count, seconds = site
    return f"`{name}` ({count} {unit}, {fmt(seconds)} s)"


def _hold(site: tuple[str, int, float]) -> str:
    return _site(site, "holds")


def _row(h: Hold) -> list[str]:
    return [f"`{h.endpoint}`", h.server_id, str(h.calls), fmt(h.loop_ms_per_call),
            fmt(h.cpu_ms_per_call), f"{fmt(h.longest_p99_ms)} / {fmt(h.longest_max_ms)}",
            "; ".join(map(_site, h.sites[:2])) or "–"]


def warning(report: Report) -> list[str]:
    """Said first when the meter ran: its cost is in every figure of the run."""
    if not report.holds:
        return []
    return ["> **The loop meter was on** (`lab.loop_meter = true`): driving each request's "
            "coroutine step by step and its watchdog cost 7–19 % of a trivial endpoint's "
            "req/s on a 2-core machine (uvicorn 0.81×, hypercorn 0.93×, granian 0.85×: "
            "`python -m benchmarks.wrap_cost --loop-meter`, docs/benchmarks.md). Compare this "
            "run's throughput only with runs that had it on too.", ""]


def _outside_row(o: Outside) -> list[str]:
    return [o.server_id, _pct(o.held_share), _pct(o.outside_cpu_share), fmt(o.lag_p99_ms),
            "; ".join(map(_hold, o.sites[:2])) or "–"]


def _pool_row(p: Pool) -> list[str]:
    return [p.server_id, p.load, ", ".join(f"`{e}`" for e in p.endpoints), str(p.tokens),
            str(p.runs), _pct(p.saturated_share), str(p.peak_waiting),
            f"{fmt(p.wait_ms_per_call)} / {fmt(p.wait_p99_ms)}"]


def _table(rows: list[list[str]], headers: list[str]) -> list[str]:
    return [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]


def section(report: Report) -> list[str]:
    if not report.holds:
        return []
    lines = ["## Who holds the event loop", "",
             "Measured inside every worker by the wrapper (`lab.loop_meter = true`): each "
             "synchronous step of a request's coroutine, timed on the event loop. A call that "
             f"holds the loop ≥ {HOLD_MS:g} ms (or whose step was caught blocking) stalls every "
             "other request of its worker meanwhile; a *site* is where the watchdog found such a "
             "step, in the app's code. Over every cell and repeat of the experiment. *Outside "
             "the requests*: a heartbeat the watchdog posts to the loop every "
             f"{HOLD_MS:g} ms, late past that while no request's step ran — a task the app "
             "started, the downstream of a `BaseHTTPMiddleware`, the server's own work. "
             "*Threads*: anyio's default limiter, where FastAPI runs `def` endpoints and sync "
             "dependencies (40 threads per worker unless `threads` says otherwise); a call's "
             "wait runs from asking for a thread to running in one, over each of its runs "
             "(FastAPI also validates a `def` endpoint's response in a thread), and includes "
             "starting a thread while none is idle.", ""]
    experiments = dict.fromkeys(h.experiment for h in report.holds)
    for experiment in experiments:
        rows = sorted((h for h in report.holds if h.experiment == experiment),
                      key=lambda h: (-h.loop_ms_per_call, h.server_id))
        lines += [f"### `{experiment}`", ""]
        lines += _table([_row(h) for h in rows],
                        ["endpoint", "configuration", "calls", "loop ms per call",
                         "CPU ms per call", "longest step p99 / max ms", "blocking sites"])
        outside = [o for o in report.outside if o.experiment == experiment]
        if any(o.sites or o.held_share for o in outside):
            lines += ["Outside the requests:", ""]
            lines += _table([_outside_row(o) for o in outside],
                            ["configuration", "held (share of window)",
                             "loop CPU outside requests", "heartbeat lag p99 ms", "sites"])
        pools = [p for p in report.pools if p.experiment == experiment]
        if pools:
            lines += ["Threads for `def` endpoints:", ""]
            lines += _table([_pool_row(p) for p in pools],
                            ["configuration", "load", "endpoints", "threads", "runs",
                             "all threads busy", "peak waiting",
                             "wait for a thread: ms per call / p99 of a run"])
    return lines


def _function(site: str | None) -> str:
    """The app's function a site names (``… at main.py:31 in send_email``: the endpoint, or
    the dependency or background task it ran), as the fix names it; "it" when none."""
    if site is None or site.endswith(NO_APP) or " in " not in site:
        return "it"
    return f"`{site.rsplit(' in ', 1)[1]}`"


def _span(ms: list[float]) -> str:
    return fmt(min(ms)) if min(ms) == max(ms) else f"{fmt(min(ms))}–{fmt(max(ms))}"


def _per_configuration(holds: Iterable[Hold]) -> list[Hold]:
    """One endpoint's holds merged per configuration, over experiments, cells and workers."""
    by: dict[str, list[Hold]] = {}
    for h in holds:
        by.setdefault(h.server_id, []).append(h)
    return [merged(hs) for hs in by.values()]


def short(report: Report) -> list[str]:
    """One line per endpoint that held its worker's loop over the run, with its site and
    the fix; one saying none did, when the meter ran and none did."""
    if not report.holds:
        return []
    by: dict[str, list[Hold]] = {}
    for h in report.holds:
        by.setdefault(h.endpoint, []).append(h)
    out = []
    for endpoint, holds in sorted(by.items()):
        # Over the run: a `def` endpoint's first call, alone in an experiment, is one call.
        configurations = _per_configuration(holds)
        blocking = [h for h in configurations if h.blocks]
        if not blocking:
            continue
        span = _span([h.loop_ms_per_call for h in blocking])
        where = next((h.sites[0][0] for h in blocking if h.sites), None)
        out.append(f"`{endpoint}` holds its worker's event loop {span} ms per call"
                   + (f", at `{where}`" if where else "")
                   + f" (on {len(blocking)} of {len(configurations)} configurations): "
                   + FIX.format(it=_function(where)) + ".")
    if not out:
        out.append(f"No endpoint held its worker's event loop ≥ {HOLD_MS:g} ms per call "
                   f"({len(by)} measured inside the workers).")
    return out + _outside_short(report) + _pool_short(report)


def _outside_short(report: Report) -> list[str]:
    """One line per site of the app's that held the loops outside the requests."""
    held = [o for o in report.outside if o.blocks]
    out = []
    for site in dict.fromkeys(s for o in held for s, _, _ in o.sites if not s.endswith(NO_APP)):
        mine = [o for o in held if any(s == site for s, _, _ in o.sites)]
        worst = max(mine, key=lambda o: o.held_share)
        configurations = {o.server_id for o in mine}
        out.append(f"Outside any request, `{site}` held the event loop up to "
                   f"{_pct(worst.held_share)} of a window (`{worst.experiment}` on "
                   f"{worst.server_id}; ≥ {_pct(OUTSIDE_SHARE)} on {len(configurations)} "
                   f"configuration{'s' * (len(configurations) > 1)}): work the app handed to "
                   "another task (`asyncio.create_task`, a `BaseHTTPMiddleware`'s downstream) "
                   f"blocks its worker: {FIX_OUTSIDE}.")
    return out


def _pool_short(report: Report) -> list[str]:
    """One line per `def` endpoint that queued for a thread: where, how long, at which load,
    and what more threads did where the run measured them."""
    out = []
    for endpoint in dict.fromkeys(e for p in report.pools for e in p.endpoints):
        mine = [p for p in report.pools if endpoint in p.endpoints]
        queued = [p for p in mine if p.queues]
        if not queued:
            continue
        worst = max(queued, key=lambda p: p.wait_ms_per_call or 0.0)
        calm = [p for p in mine if not p.queues and p.experiment == worst.experiment
                and p.server_id == worst.server_id]
        line = (f"`{endpoint}` (`def`) waited {fmt(worst.wait_ms_per_call)} ms per call for a "
                f"thread at {worst.load} on {worst.server_id} (all {worst.tokens} threads busy "
                f"{_pct(worst.saturated_share)} of the window, up to {worst.peak_waiting} "
                "waiting)")
        if calm:
            line += f"; {fmt(calm[0].wait_ms_per_call)} ms at {calm[0].load}"
        more = [p for p in mine if not p.queues and p.experiment == worst.experiment
                and p.load == worst.load and p.tokens > worst.tokens
                and p.base == worst.base]
        if more:
            best = min(more, key=lambda p: p.wait_ms_per_call or 0.0)
            line += (f"; with {best.tokens} threads ({best.server_id}) it waited "
                     f"{fmt(best.wait_ms_per_call)} ms")
        out.append(line + f": {FIX_POOL}.")
    return out


def article(report: Report) -> list[str]:
    """The article's two blocking endpoints as the meter saw them inside the workers: the
    trap holds the loop a delay per call at its `time.sleep`; `def` holds it for ≈ 0 and
    queues for threads instead."""
    mine = {r.experiment for r in report.results if r.app == ARTICLE_APP}
    out = []
    for endpoint in ("/async-blocking", "/blocking"):
        each = _per_configuration(h for h in report.holds
                                  if h.experiment in mine and h.endpoint == endpoint)
        if not each:
            continue
        span = _span([h.loop_ms_per_call for h in each])
        delays = {d for r in report.results if r.experiment in mine and r.endpoint == endpoint
                  and (d := delay_of(r.params)) is not None}
        delay = f" against a {fmt(1e3 * delays.pop())} ms delay" if len(delays) == 1 else ""
        line = (f"`{endpoint}` inside the workers: each call held its worker's event loop "
                f"{span} ms{delay} on {len(each)} configurations")
        if endpoint == "/async-blocking":
            where = next((h.sites[0][0] for h in each if h.sites), None)
            out.append(line + (f", at `{where}`" if where else "")
                       + ": every other request of that worker waited meanwhile.")
            continue
        pools = [p for p in report.pools if p.experiment in mine and endpoint in p.endpoints]
        queued = [p for p in pools if p.queues]
        if queued:
            worst = max(queued, key=lambda p: p.wait_ms_per_call or 0.0)
            line += (f" — its sleep runs in a thread; at {worst.load} it queued for one of the "
                     f"{worst.tokens} threads instead: {fmt(worst.wait_ms_per_call)} ms per "
                     f"call on {worst.server_id}, all threads busy "
                     f"{_pct(worst.saturated_share)} of the window, up to {worst.peak_waiting} "
                     "waiting")
        elif pools:
            line += (" — its sleep runs in a thread, and no burst here filled the "
                     f"{pools[0].tokens} threads")
        out.append(line + ".")
    return out


def explained(report: Report) -> list[str]:
    """A stalled probe or a serialised burst, next to what held the loop in the same
    experiment: the endpoint's own hold and site, or a hold outside the requests."""
    out, seen = [], set()
    for comp in report.comparisons:
        if (comp.experiment, comp.endpoint) in seen:
            continue  # one line for an endpoint's bursts at every N
        if comp.kind == "interference":
            hit = [r.server_id for r in comp.rows if r.stalled]
            what = "stalled the probe"
        elif comp.kind == "burst":
            hit = [r.server_id for r in comp.rows if r.serialised and r.serialised.serial]
            what = "ran a burst's requests one after another"
        else:
            continue
        if not hit:
            continue
        seen.add((comp.experiment, comp.endpoint))
        own = [h for h in report.holds if h.experiment == comp.experiment
               and h.endpoint == comp.endpoint and h.server_id in hit and h.blocks]
        if own:
            h = merged(own)
            where = f" at `{h.sites[0][0]}`" if h.sites else ""
            out.append(f"**Why `{comp.endpoint}` {what}** (`{comp.experiment}`, "
                       f"{len(own)} of {len(hit)} configurations): inside the workers each "
                       f"call held its worker's event loop {fmt(h.loop_ms_per_call)} ms{where}; "
                       "every other request of that worker waited behind it.")
            continue
        held = [o for o in report.outside if o.experiment == comp.experiment
                and o.server_id in hit and o.blocks]
        if held:
            site = next(s for o in held for s, _, _ in o.sites if not s.endswith(NO_APP))
            out.append(f"**Why `{comp.endpoint}` {what}** (`{comp.experiment}`): outside any "
                       f"request, `{site}` held the event loop up to "
                       f"{_pct(max(o.held_share for o in held))} of a window.")
    return out
