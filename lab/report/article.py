"""The article "FastAPI: async vs blocking I/O", checked: what its endpoints are, what it
claims about them, and what this run measured. Speaks only about comparisons of the
article's own app (`apps.article`); for any other app it has nothing to say."""

from collections.abc import Sequence

from lab.report.fmt import fmt
from lab.report.model import ComparisonFacts

# Its claims are about bursts and probes of named endpoints: the kind == tests below are
# the article's experiments, not a rule about kinds.
ARTICLE_APP = "apps.article:app"
# The lab's own apps that are FastAPI: the report knows an app's framework only from these
# names (the results hold the app spec, not what it imported).
FASTAPI_APPS = (ARTICLE_APP, "apps.realistic:app")
THREAD_POOL = ("FastAPI runs `def` endpoints in anyio's thread pool (40 threads) on every "
               "server. ")


def thread_pool_note(apps: set[str]) -> str:
    """The thread pool's size, said only of apps known to be FastAPI."""
    return THREAD_POOL if apps and apps <= set(FASTAPI_APPS) else ""


# endpoint → (the code behind it, what the article claims, fan-out: sleeps gathered)
CLAIMS = {
    "/blocking": ("`def` + `time.sleep`", "it blocks the whole app", 1),
    "/non-blocking": ("`async def` + `await asyncio.sleep`", "its requests run concurrently",
                      1),
    "/compare": ("`asyncio.gather` of 2 sleeps", "it costs about one delay, not two", 2),
    "/benchmark": ("`asyncio.gather` of 10 sleeps", "it costs about one delay, not ten", 10),
    "/async-blocking": ("`async def` + `time.sleep`", "", 1),  # the trap it never shows
}


def _article(comps: Sequence[ComparisonFacts]) -> list[ComparisonFacts]:
    return [c for c in comps if c.rows and all(r.app == ARTICLE_APP
                                               for row in c.rows for r in row.results)]


def _largest_burst(comps: list[ComparisonFacts], endpoint: str) -> ComparisonFacts | None:
    found = [c for c in comps if c.kind == "burst" and c.endpoint == endpoint and c.delay]
    return max(found, key=lambda c: c.n, default=None)


def _serialised(comp: ComparisonFacts) -> tuple[int, int] | None:
    """(configurations that ran the burst one after another per worker, configurations)."""
    found = [v.serial for row in comp.rows if (v := row.serialised)]
    return (sum(found), len(found)) if found else None


def in_short(comps: Sequence[ComparisonFacts]) -> list[str]:
    """`def` or `async def`: the article's two blocking endpoints, and whether blocking the
    event loop stalled unrelated requests."""
    comps = _article(comps)
    out = []
    for endpoint in ("/blocking", "/async-blocking"):
        comp = _largest_burst(comps, endpoint)
        counted = _serialised(comp) if comp else None
        walls = [s.median for row in comp.rows if (s := row.spread())] if comp else []
        if comp is None or comp.delay is None or counted is None or not walls:
            continue
        serial, n = counted
        if serial == 0:
            verdict = f"they overlapped on all {n} configurations: it does not block the app"
        elif serial == n:
            verdict = (f"they ran one after another (per worker) on all {n} configurations: "
                       "it blocks the worker it runs on")
        else:
            verdict = f"they ran one after another on {serial} of {n} configurations"
        out.append(
            f"{CLAIMS[endpoint][0]} (`{endpoint}`): {comp.n} requests of {fmt(comp.delay)} s "
            f"took {fmt(min(walls))}–{fmt(max(walls))} s (one after another: "
            f"{fmt(comp.n * comp.delay)} s); {verdict}.")
    for comp in comps:
        if comp.kind == "interference" and comp.endpoint == "/async-blocking":
            known = [f for row in comp.rows if (f := row.stalled) is not None]
            if known:
                out.append(f"With `{comp.endpoint}` busy ({comp.n} users), an unrelated "
                           f"`{comp.load.get('probe', 'probe')}` request stalled on "
                           f"{sum(known)} of {len(known)} configurations.")
    return out


def _fan_out(comps: list[ComparisonFacts], endpoint: str, sleeps: int) -> str | None:
    """A gather of k sleeps against one sleep (`/non-blocking`), in the smallest burst
    both ran (the least queueing): k sleeps in turn would add (k − 1) delays."""
    fan = {c.n: c for c in comps if c.kind == "burst" and c.endpoint == endpoint and c.delay}
    one = {c.n: c for c in comps if c.kind == "burst" and c.endpoint == "/non-blocking"
           and c.delay}
    common = sorted(n for n in fan if n in one and fan[n].delay == one[n].delay)
    if not common:
        return None
    comp, single = fan[common[0]], one[common[0]]
    assert comp.delay is not None
    walls = {row.server_id: s.median for row in single.rows if (s := row.spread())}
    extra = [1e3 * (s.median - walls[row.server_id]) for row in comp.rows
             if (s := row.spread()) and row.server_id in walls]
    if not extra:
        return None
    serial = 1e3 * comp.delay * (sleeps - 1)
    holds = max(extra) < serial / 2  # nearer no extra delay than k − 1 of them
    return (f"measured: a burst of {comp.n} took {min(extra):+.3g} to {max(extra):+.3g} ms "
            f"against `/non-blocking`'s single sleep ({sleeps} sleeps in turn would add "
            f"{fmt(serial)} ms) — " + ("**holds**" if holds else "**does not hold** here"))


def claims(comps: Sequence[ComparisonFacts]) -> list[str]:
    """Each claim of the article next to the largest burst that tests it."""
    comps = _article(comps)
    out = []
    for endpoint, (code, claim, sleeps) in CLAIMS.items():
        comp = _largest_burst(comps, endpoint)
        counted = _serialised(comp) if comp else None
        if comp is None or counted is None:
            continue
        serial, n = counted
        said = (f"`{endpoint}` ({code}): the article says {claim}" if claim else
                f"`{endpoint}` ({code}): not in the article")
        if sleeps > 1:
            measured = _fan_out(comps, endpoint, sleeps)
        elif endpoint == "/blocking":
            measured = (f"measured: {comp.n} requests overlapped on {n - serial} of {n} "
                        "configurations — " + ("**wrong**: FastAPI runs `def` endpoints in a "
                                               "thread pool" if serial == 0 else
                                               "**holds** on " + f"{serial} of them"))
        elif endpoint == "/non-blocking":
            measured = (f"measured: {comp.n} requests overlapped on {n - serial} of {n} "
                        "configurations — " + ("**holds**" if serial == 0 else
                                               f"**does not hold** on {serial}"))
        else:
            measured = (f"measured: it ran requests one after another on {serial} of {n} "
                        "configurations — it blocks the event loop of its worker"
                        if serial else f"measured: it overlapped on all {n} configurations")
        if measured:
            out.append(f"{said}; {measured}.")
    return out
