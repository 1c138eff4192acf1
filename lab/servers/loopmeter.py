"""The loop meter's snapshot: what each worker writes and how the lab takes a window of it.

With ``LAB_LOOP_METER = "1"`` (``asgi_wrap.LOOP_METER_ENV``) the wrapper
(``lab.servers.asgi_wrap``) times every synchronous step of each HTTP request's app coroutine
(each ``send()``/``throw()`` into it) and keeps, per endpoint, cumulative counts since the
worker started. A watchdog thread in the worker writes them to
``LAB_METER_DIR/<pid>.loop.json`` (a temporary file, then ``os.replace``: a reader sees a
whole snapshot or the one before) every ``WRITE_S`` when they changed, at once when the lab
bumps the folder's ``loop.flush`` counter (one native u64), and at lifespan shutdown. A
call's steps count when it ends (its endpoint is known then). The lab reads every worker's
snapshot at a window's start and end and takes their `diff`. Standard library only: the
servers import it with the wrapper.

A snapshot (JSON, one object)::

    {"v": 2, "pid": 1234,
     "flush": 7,             # the last loop.flush value this worker answered
     "busy_s": 1.25,         # all steps of all requests, wall seconds
     "loop_cpu_s": 3.5,      # the loop thread's CPU time (null: no clock for it)
     "beats": {              # the watchdog's heartbeat on the loop (call_soon_threadsafe)
       "lag": {"40": 900},   # each beat's lag: bucket → beats
       "held_s": 0.2,        # beats late past the threshold while no request's step ran:
       "sites": {"time.sleep at app.py:30 in cleanup": [4, 0.2]}},  # [holds, seconds]
     "threads": {            # anyio's default thread limiter (null: the app has none)
       "tokens": 40,
       "in_use_s": {"0": 1.5, "40": 0.4},   # seconds the watchdog saw n tokens in use
       "waiting_s": {"0": 1.7, "20": 0.2},  # seconds it saw n tasks waiting for one
       "waits": {"60": 40, "90": 20}},      # requests' runs in its threads by their wait
                                            # (asking → running), bucketed as "longest"
     "endpoints": {          # by route template ("/items/{id}"), else the path
       "/async-blocking": {
         "calls": 10,        # requests that ended (a call counts when it ends)
         "steps": 20,        # synchronous steps of those calls
         "loop_s": 0.31,     # sum of their steps' wall time: how long they held the loop
         "cpu_s": 0.001,     # the same steps' thread CPU time
         "max_step_s": 0.031,
         "longest": {"90": 10},   # each call's longest step: bucket → calls (below)
         "sites": {"time.sleep at app.py:12 in slow": [10, 0.30]},   # [steps, seconds]
         "thread_calls": 0,  # its calls' runs in the default limiter's threads
         "thread_wait_s": 0.0}}}   # their waits, from asking to running in a thread

``longest`` buckets a call's longest step by ``round(BUCKETS_PER_DECADE · log10(µs))``
(≈ 12 % wide): counts add and subtract, so a window's is the difference of two snapshots.
A site is where a step that ran past ``LAB_LOOP_BLOCK_MS`` (default 10) was found when the
watchdog sampled the loop thread's stack: the innermost frame of the app (not of the
standard library or an installed package) as ``file:line in function``, led by what it was
calling (``time.sleep``) or the innermost frame's function when that is a library's;
``[steps that hit it, those steps' seconds]``. Every count is cumulative, so a window is
the difference of two snapshots; a hold outside the requests is the time from its beat's
post (or the first look that found no request's step) to the beat's run.
"""

from bisect import bisect_right
from collections.abc import Callable
from typing import Any, TypedDict

VERSION = 2
SUFFIX = ".loop.json"  # LAB_METER_DIR/<pid>.loop.json
FLUSH_FILE = "loop.flush"  # bumped by the lab: every worker writes its snapshot now
WRITE_S = 1.0
BUCKETS_PER_DECADE = 20


class Endpoint(TypedDict):
    calls: int
    steps: int
    loop_s: float
    cpu_s: float
    max_step_s: float
    longest: dict[str, int]
    sites: dict[str, list[float]]  # site → [steps, seconds]
    thread_calls: int
    thread_wait_s: float


class Beats(TypedDict):
    lag: dict[str, int]
    held_s: float
    sites: dict[str, list[float]]  # site → [holds, seconds]


class Threads(TypedDict):
    tokens: int
    in_use_s: dict[str, float]
    waiting_s: dict[str, float]
    waits: dict[str, int]


class Snapshot(TypedDict):
    v: int
    pid: int
    flush: int
    busy_s: float
    loop_cpu_s: float | None
    beats: Beats
    threads: Threads | None
    endpoints: dict[str, Endpoint]


# Bucket k holds the steps whose round(BUCKETS_PER_DECADE · log10(µs)) is k: those from
# _EDGES[k - 1] to below _EDGES[k] seconds; a bisection costs a third of the logarithm
# (0.48 µs here) on every call's path. Up to 10^5 s; longer ones share the top bucket.
_EDGES = [10 ** ((k + 0.5) / BUCKETS_PER_DECADE) / 1e6 for k in range(11 * BUCKETS_PER_DECADE)]


def bucket_index(seconds: float, _find: Callable[[list[float], float], int] = bisect_right
                 ) -> int:
    """The ``longest`` bucket of a step of ``seconds`` (steps under 1 µs share one)."""
    return _find(_EDGES, seconds)


def bucket(seconds: float) -> str:
    """`bucket_index` as a snapshot's key."""
    return str(bucket_index(seconds))


def bucket_s(key: str) -> float:
    """A bucket's value: the step length it stands for, in seconds."""
    return 10 ** (int(key) / BUCKETS_PER_DECADE) / 1e6


def quantile_s(counts: dict[str, int], q: float) -> float | None:
    """The ``q`` quantile (0–1) of a ``longest`` histogram, as its bucket's value."""
    total = sum(counts.values())
    if total <= 0:
        return None
    seen = 0
    for key in sorted(counts, key=int):
        seen += counts[key]
        if seen >= q * total:
            return bucket_s(key)
    return bucket_s(max(counts, key=int))


def empty_endpoint() -> Endpoint:
    return {"calls": 0, "steps": 0, "loop_s": 0.0, "cpu_s": 0.0, "max_step_s": 0.0,
            "longest": {}, "sites": {}, "thread_calls": 0, "thread_wait_s": 0.0}


def _less(end: dict[str, Any], start: dict[str, Any]) -> dict[str, Any]:
    """A histogram's window: ``end`` less ``start``, only the keys that grew."""
    out = {k: n - start.get(k, 0) for k, n in end.items()}
    return {k: n for k, n in out.items() if n > 0}


def _sites_less(end: dict[str, list[float]], start: dict[str, list[float]]
                ) -> dict[str, list[float]]:
    out = {}
    for site, (count, seconds) in end.items():
        was = start.get(site, [0, 0.0])
        if count - was[0] > 0:
            out[site] = [count - was[0], seconds - was[1]]
    return out


def parse(raw: Any) -> Snapshot | None:
    """A snapshot read back, or None when it is not one of this version."""
    if not isinstance(raw, dict) or raw.get("v") != VERSION \
            or not isinstance(raw.get("endpoints"), dict):
        return None
    return raw  # type: ignore[return-value]


def diff(start: Snapshot | None, end: Snapshot) -> Snapshot:
    """One worker's window: ``end`` less ``start`` (None: the worker had no snapshot then,
    all of ``end`` is the window's), with only the endpoints that had calls in it. A
    window's ``max_step_s`` is exact when the worker's maximum grew in it, else its
    ``longest`` histogram's top bucket (no step in it beat the maximum before)."""
    before = start["endpoints"] if start else {}
    out: dict[str, Endpoint] = {}
    for name, e in end["endpoints"].items():
        b = before.get(name) or empty_endpoint()
        calls = e["calls"] - b["calls"]
        if calls <= 0:
            continue
        longest = _less(e["longest"], b["longest"])
        top = max(longest, key=int) if longest else None
        max_step = (e["max_step_s"] if e["max_step_s"] > b["max_step_s"] or top is None
                    else min(bucket_s(top), e["max_step_s"]))
        out[name] = {"calls": calls, "steps": e["steps"] - b["steps"],
                     "loop_s": e["loop_s"] - b["loop_s"], "cpu_s": e["cpu_s"] - b["cpu_s"],
                     "max_step_s": max_step, "longest": longest,
                     "sites": _sites_less(e["sites"], b["sites"]),
                     "thread_calls": e["thread_calls"] - b["thread_calls"],
                     "thread_wait_s": e["thread_wait_s"] - b["thread_wait_s"]}
    beats, was = end["beats"], (start["beats"] if start else {"lag": {}, "held_s": 0.0,
                                                              "sites": {}})
    threads = end["threads"]
    if threads is not None:
        t0: Threads = (start["threads"] if start else None) or {
            "tokens": 0, "in_use_s": {}, "waiting_s": {}, "waits": {}}
        threads = {"tokens": threads["tokens"],
                   "in_use_s": _less(threads["in_use_s"], t0["in_use_s"]),
                   "waiting_s": _less(threads["waiting_s"], t0["waiting_s"]),
                   "waits": _less(threads["waits"], t0["waits"])}
    cpu, cpu0 = end["loop_cpu_s"], (start["loop_cpu_s"] if start else 0.0)
    return {"v": VERSION, "pid": end["pid"], "flush": end["flush"],
            "busy_s": end["busy_s"] - (start["busy_s"] if start else 0.0),
            "loop_cpu_s": cpu - cpu0 if cpu is not None and cpu0 is not None else None,
            "beats": {"lag": _less(beats["lag"], was["lag"]),
                      "held_s": beats["held_s"] - was["held_s"],
                      "sites": _sites_less(beats["sites"], was["sites"])},
            "threads": threads, "endpoints": out}
