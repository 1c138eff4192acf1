"""What the loop meter (``lab.loop_meter``) saw inside the workers, as facts with no wording:
which endpoints held their worker's event loop (`Hold`), what held it outside any request
(`Outside`), and how `def` endpoints queued for anyio's threads (`Pool`). `lab.report.model`
computes each once; `lab.report.loop` words them."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from lab.kinds import get
from lab.store.schema import LoopSite, Result

NO_APP_FRAME = "(no frame of the app)"  # how the wrapper names a site outside the app
HOLD_MS = 10.0  # a call that holds its worker's loop this long per call blocks it (the
# wrapper's default LAB_LOOP_BLOCK_MS: the step that long is where a stack is sampled)
OUTSIDE_SHARE = 0.05  # held outside the requests this share of a window: worth naming
SATURATED_SHARE = 0.05  # every thread busy this share of a window: the pool queues

Sites = tuple[tuple[str, int, float], ...]  # (site, count, seconds), most seconds first


def _sites(sites: Iterable[LoopSite]) -> Sites:
    return tuple((s.site, s.count, s.seconds) for s in sites)


def _added(groups: Iterable[Sites]) -> Sites:
    total: dict[str, list[float]] = {}
    for group in groups:
        for site, count, seconds in group:
            seen = total.setdefault(site, [0, 0.0])
            seen[0] += count
            seen[1] += seconds
    return tuple(sorted(((s, int(c), t) for s, (c, t) in total.items()), key=lambda x: -x[2]))


def _app(sites: Sites) -> Sites:
    return tuple(s for s in sites if not s[0].endswith(NO_APP_FRAME))


@dataclass(frozen=True)
class Hold:
    """One endpoint's hold on the event loop on one configuration, over an experiment's
    cells and repeats and every worker (the wrapper's loop meter, ``lab.loop_meter``)."""

    experiment: str
    server_id: str
    endpoint: str  # the route template the app matched, else the path
    calls: int
    loop_ms_per_call: float  # its steps' wall time on the loop, per call
    cpu_ms_per_call: float
    longest_p99_ms: float | None  # the highest of the cells' p99 of each call's longest step
    longest_max_ms: float | None
    sites: Sites
    thread_calls: int = 0  # its calls that ran in the default limiter's threads
    thread_wait_ms_per_call: float | None = None  # their wait, asking → running

    @property
    def blocks(self) -> bool:
        """Its own code was caught blocking on a tenth of its calls (two at least), or it
        held the loop ≥ `HOLD_MS` per call, unless that hold is a library's one-off: anyio
        importing its thread machinery at a `def` endpoint's first call is caught outside
        the app, once, and is not the endpoint's."""
        app = sum(n for _, n, _ in _app(self.sites))
        library = sum(n for site, n, _ in self.sites if site.endswith(NO_APP_FRAME))
        one_off = app == 0 and 0 < library <= max(1.0, self.calls / 10)
        return app >= max(2.0, self.calls / 10) \
            or (self.loop_ms_per_call >= HOLD_MS and not one_off)


def merged(holds: Sequence[Hold]) -> Hold:
    """Holds of one endpoint as one, per call over all their calls (workers, cells, repeats
    or experiments), their sites added; named as the first."""
    n = sum(h.calls for h in holds)
    threaded = [h for h in holds if h.thread_wait_ms_per_call is not None]
    waited = sum(h.calls for h in threaded)
    tails = [h.longest_p99_ms for h in holds if h.longest_p99_ms is not None]
    tops = [h.longest_max_ms for h in holds if h.longest_max_ms is not None]
    return replace(holds[0], calls=n,
                   loop_ms_per_call=sum(h.loop_ms_per_call * h.calls for h in holds) / n,
                   cpu_ms_per_call=sum(h.cpu_ms_per_call * h.calls for h in holds) / n,
                   longest_p99_ms=max(tails, default=None), longest_max_ms=max(tops, default=None),
                   sites=_added(h.sites for h in holds),
                   thread_calls=sum(h.thread_calls for h in holds),
                   thread_wait_ms_per_call=(
                       sum((h.thread_wait_ms_per_call or 0.0) * h.calls for h in threaded)
                       / waited if waited else None))


def holds(results: Iterable[Result]) -> tuple[Hold, ...]:
    """Each (experiment, configuration, endpoint) the loop meter saw, most loop time per
    call first within an experiment and configuration; results without it give none."""
    found: dict[tuple[str, str, str], list[Hold]] = {}
    for r in _metered(results):
        assert r.figures is not None and r.figures.loop is not None
        for worker in r.figures.loop.loop.values():
            for endpoint, e in worker.endpoints.items():
                if e.calls:
                    found.setdefault((r.experiment, r.server_id, endpoint), []).append(Hold(
                        r.experiment, r.server_id, endpoint, e.calls, e.loop_ms_per_call or 0.0,
                        e.cpu_ms_per_call or 0.0, e.longest_step_ms.get("p99"),
                        e.longest_step_ms.get("max"), _sites(e.sites),
                        e.calls if e.thread_wait_ms_per_call is not None else 0,
                        e.thread_wait_ms_per_call))
    return tuple(sorted(map(merged, found.values()),
                        key=lambda h: (h.experiment, h.server_id, -h.loop_ms_per_call)))


def _metered(results: Iterable[Result]) -> Iterable[Result]:
    return (r for r in results if r.ok and r.figures is not None and r.figures.loop is not None)


@dataclass(frozen=True)
class Outside:
    """What held one configuration's loops outside any request's steps over an experiment
    (its cells, repeats and workers): a task the app started, the downstream of a
    ``BaseHTTPMiddleware``, the server's own work."""

    experiment: str
    server_id: str
    held_share: float  # the largest share of a cell's window one worker was held so
    outside_cpu_share: float | None  # the largest share of a window its loop thread spent
    # on CPU outside the requests' steps (parsing, the server's own work, other tasks)
    lag_p99_ms: float | None  # the heartbeat's lag, the highest p99 of a worker
    sites: Sites  # holds and their seconds, over every cell and worker

    @property
    def blocks(self) -> bool:
        """The app's own code held the loop outside the requests a noticeable share."""
        return self.held_share >= OUTSIDE_SHARE and bool(_app(self.sites))


def outside(results: Iterable[Result]) -> tuple[Outside, ...]:
    """Per (experiment, configuration) with the heartbeat: what held the loop outside."""
    found: dict[tuple[str, str], list[Result]] = {}
    for r in _metered(results):
        found.setdefault((r.experiment, r.server_id), []).append(r)
    out = []
    for (experiment, server_id), rs in sorted(found.items()):
        workers = [w for r in rs if r.figures and r.figures.loop
                   for w in r.figures.loop.loop.values() if w.lag_ms]
        if not workers:
            continue  # a line from before the heartbeat
        cpu = [w.outside_cpu_share for w in workers if w.outside_cpu_share is not None]
        lags = [v for w in workers if (v := w.lag_ms.get("p99")) is not None]
        out.append(Outside(experiment, server_id,
                           max(w.held_outside_share or 0.0 for w in workers),
                           max(cpu, default=None), max(lags, default=None),
                           _added(_sites(w.held_outside) for w in workers)))
    return tuple(out)


@dataclass(frozen=True)
class Pool:
    """anyio's default thread limiter on one configuration, in the cells of one experiment
    and load (over repeats and workers), where requests ran in its threads."""

    experiment: str
    server_id: str
    load: str  # the load axis as the report writes it: "N = 60", "users = 8"
    base: str  # the configuration but for its threads (server, workers, options): pools
    # of one base differ only in their tokens
    endpoints: tuple[str, ...]  # those whose calls ran in its threads
    tokens: int
    runs: int
    saturated_share: float  # the largest share of a window a worker had every token in use
    peak_waiting: int  # the most the watchdog saw waiting for a token
    wait_ms_per_call: float | None  # those endpoints' wait for a thread, per call
    wait_p99_ms: float | None  # the highest p99 of a worker's runs

    @property
    def queues(self) -> bool:
        return self.saturated_share >= SATURATED_SHARE and self.peak_waiting > 0


def _load(r: Result) -> str:
    key = get(r.kind).load_key
    return f"{'N' if key == 'requests' else key} = {r.load.get(key)}"


def pools(results: Iterable[Result]) -> tuple[Pool, ...]:
    """Per (experiment, configuration, load) whose requests ran in the limiter's threads, in
    the order of their first result."""
    found: dict[tuple[str, str, str], list[Result]] = {}
    for r in _metered(results):
        found.setdefault((r.experiment, r.server_id, _load(r)), []).append(r)
    out = []
    for (experiment, server_id, load), rs in found.items():
        base = repr((rs[0].server, rs[0].workers, sorted(rs[0].options.items())))
        workers = [w for r in rs if r.figures and r.figures.loop
                   for w in r.figures.loop.loop.values() if w.threads and w.threads.runs]
        if not workers:
            continue
        threads = [w.threads for w in workers if w.threads]
        waits = [(e.thread_wait_ms_per_call, e.calls) for w in workers
                 for e in w.endpoints.values() if e.thread_wait_ms_per_call is not None]
        calls = sum(n for _, n in waits)
        tails = [v for t in threads if (v := t.wait_ms.get("p99")) is not None]
        out.append(Pool(
            experiment, server_id, load, base,
            tuple(sorted({name for w in workers for name, e in w.endpoints.items()
                          if e.thread_wait_ms_per_call is not None})),
            max(t.tokens for t in threads), sum(t.runs for t in threads),
            max(t.saturated_share or 0.0 for t in threads),
            max(t.peak_waiting for t in threads),
            sum(ms * n for ms, n in waits) / calls if calls else None,
            max(tails, default=None)))
    return tuple(out)
