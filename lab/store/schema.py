"""The files of a run, typed: one class writes a results line (``to_json``) and reads it
back (``from_json``), as pyperf's ``Run`` does, under one ``SCHEMA_VERSION``.

A ``results.jsonl`` line is a `Result`; its ``figures`` are `Figures`, whose kind-specific
parts (`BurstFigures`, `OpenFigures`, …) are typed objects here and flat keys in the JSON,
where they have always been (``figures.send_spread_ms``): users' scripts and the docs read
those paths. A part is present when any of its keys is. ``run.json`` is a `RunInfo`.

Reading is tolerant, as the report always was: a figure a line lacks (an older lab, another
kind, a hand-edited line) takes its empty value; only what every reader relies on is
required, and a line without it raises `MalformedLine` naming the key. A version 1 line
is upgraded (`_upgrade_v1`) and then read as a version 2 one.
"""

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, TypeVar

from lab.load.histogram import Histogram

T = TypeVar("T")

SCHEMA_VERSION = 2


class MalformedLine(ValueError):
    """A results line no reader can use; the message says why ("has no valid 'workers'")."""


class UnknownVersion(MalformedLine):
    """A line of a schema this lab does not know (a newer lab's)."""


class Shared:
    """One read's cache of the values that repeat from line to line of a file: the same
    strings (server, endpoint, percentile names, argv's words) and the same small tables
    (options, load, params, request, settings, placement) are held once, not once per
    line: the report of a 30 MB results file grew by 122 MB with a copy per line, by 38 MB
    sharing them (the typed lines alone: 106 MB → 33 MB). A shared value is never changed:
    a `Result` is read-only."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[Any, Any] = {}

    def __call__(self, value: T) -> T:
        # by JSON text, which tells 1 from 1.0 and True, and the type, which {} from []
        key = value if isinstance(value, str) else (type(value), json.dumps(value))
        return self._seen.setdefault(key, value)  # type: ignore[no-any-return]

    def text(self, value: Any) -> str | None:
        return self(str(value)) if value else None


def _unshared(value: T) -> T:
    return value


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _int(value: Any) -> int:
    """A count; anything else in a hand-edited or foreign line counts as none."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else 0


def _str(value: Any) -> str | None:
    return str(value) if value else None


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _percentiles(value: Any, share: Callable[[str], str] = _unshared) \
        -> dict[str, float | None]:
    return {share(str(k)): _num(v) for k, v in _table(value).items()}


def _counts(value: Any, share: Callable[[Any], Any] = _unshared) -> dict[str, int]:
    """Counts by name (errors by kind, answers by pid); an empty or equal one is shared."""
    return share({share(str(k)): _int(v) for k, v in _table(value).items()})


def _histogram(value: Any) -> Histogram | None:
    """The stored histogram; a malformed one is left out (the stored percentiles stand)."""
    try:
        return Histogram.from_json(value) if value else None
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _json(value: Any) -> Any:
    if isinstance(value, Histogram):
        return value.to_json()
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    return value.to_json() if hasattr(value, "to_json") else value


class _Part:
    """A part of the figures whose field names are its JSON keys."""

    __slots__ = ()

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]

    @classmethod
    def present(cls, f: Mapping[str, Any]) -> bool:
        return any(k in f for k in cls.keys())

    def to_json(self) -> dict[str, Any]:
        return {k: _json(getattr(self, k)) for k in self.keys()}


@dataclass(frozen=True, slots=True)
class BurstFigures(_Part):
    connect: str | None  # warm | cold
    send_spread_ms: float | None  # how far apart the first and the last request were written

    @classmethod
    def from_json(cls, f: Mapping[str, Any]) -> "BurstFigures":
        return cls(_str(f.get("connect")), _num(f.get("send_spread_ms")))


@dataclass(frozen=True, slots=True)
class OpenFigures(_Part):
    target_rps: float | None
    scheduled: int  # requests scheduled in the window
    send_lag_p99_ms: float | None  # how late the client sent
    send_lag_max_ms: float | None
    client_behind: bool  # its lag p99 over lab.load.open_model.BEHIND_P99_MS
    answer_span_s: float | None  # over which the window's requests were answered (the rps)

    @classmethod
    def from_json(cls, f: Mapping[str, Any]) -> "OpenFigures":
        return cls(_num(f.get("target_rps")), _int(f.get("scheduled")),
                   _num(f.get("send_lag_p99_ms")), _num(f.get("send_lag_max_ms")),
                   bool(f.get("client_behind")), _num(f.get("answer_span_s")))


@dataclass(frozen=True, slots=True)
class KneeProbe:
    """One window of a knee search (`lab.load.knee`)."""

    rate: float
    window_s: float
    p99_ms: float | None
    error_rate: float
    achieved_rps: float
    send_lag_p99_ms: float
    client_limited: bool  # the client could not hold this rate, and the server did not fail
    holds: bool
    confirming: bool

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, p: Mapping[str, Any]) -> "KneeProbe":
        return cls(_num(p.get("rate")) or 0.0, _num(p.get("window_s")) or 0.0,
                   _num(p.get("p99_ms")), _num(p.get("error_rate")) or 0.0,
                   _num(p.get("achieved_rps")) or 0.0, _num(p.get("send_lag_p99_ms")) or 0.0,
                   bool(p.get("client_limited")), bool(p.get("holds")),
                   bool(p.get("confirming")))


@dataclass(frozen=True, slots=True)
class KneeFigures(_Part):
    """open with rates = "auto": the highest rate held within the SLO, and every probe."""

    knee_rps: float | None
    # found: within KNEE_PRECISION below a rate that failed; client: the client could go
    # no higher (a lower bound); max: held up to knee_max_rps; below: none held; unconfirmed
    knee_bound: str | None
    knee_failed_rps: float | None
    knee_probes: tuple[KneeProbe, ...]

    @classmethod
    def from_json(cls, f: Mapping[str, Any]) -> "KneeFigures":
        return cls(_num(f.get("knee_rps")), _str(f.get("knee_bound")),
                   _num(f.get("knee_failed_rps")),
                   tuple(KneeProbe.from_json(p) for p in f.get("knee_probes") or ()
                         if isinstance(p, dict)))


@dataclass(frozen=True, slots=True)
class InterferenceFigures(_Part):
    probe: str | None  # the probe endpoint's label
    probe_connect: str | None  # warm | cold
    idle_latency_ms: dict[str, float | None]
    idle_histogram: Histogram | None
    idle_errors: int
    background_requests: int
    background_errors: int

    @classmethod
    def from_json(cls, f: Mapping[str, Any]) -> "InterferenceFigures":
        return cls(_str(f.get("probe")), _str(f.get("probe_connect")),
                   _percentiles(f.get("idle_latency_ms")), _histogram(f.get("idle_histogram")),
                   _int(f.get("idle_errors")), _int(f.get("background_requests")),
                   _int(f.get("background_errors")))


@dataclass(frozen=True, slots=True)
class StreamFigures(_Part):
    """stream: when each response's body arrived (its time to last byte is ``latency_ms``)."""

    ttfb_ms: dict[str, float | None]  # request sent → first body bytes: p50, p99, …
    ttfb_histogram: Histogram | None
    body_span_ms: dict[str, float | None]  # first body bytes → last, per response
    body_span_histogram: Histogram | None
    chunks_per_s: float | None  # body reads per second of a response, all responses
    chunks_per_response: float | None  # body reads per response, as the client got them
    body_bytes: int  # of the successful responses
    network_ms: float | None  # the ready path's round trip, idle, before the window
    paced_ms: float | None  # the endpoint's own first → last chunk (None: not known)

    @classmethod
    def from_json(cls, f: Mapping[str, Any]) -> "StreamFigures":
        return cls(_percentiles(f.get("ttfb_ms")), _histogram(f.get("ttfb_histogram")),
                   _percentiles(f.get("body_span_ms")), _histogram(f.get("body_span_histogram")),
                   _num(f.get("chunks_per_s")), _num(f.get("chunks_per_response")),
                   _int(f.get("body_bytes")), _num(f.get("network_ms")),
                   _num(f.get("paced_ms")))


@dataclass(frozen=True, slots=True)
class WrkFigures(_Part):
    client_threads: int  # wrk's threads: at its limit at this many cores
    latency_includes_errors: bool  # wrk times every response, failed ones too
    warmup_settle_s: float | None  # the wait for the server to drain the warm-up

    @classmethod
    def from_json(cls, f: Mapping[str, Any]) -> "WrkFigures":
        return cls(_int(f.get("client_threads")) or 1, bool(f.get("latency_includes_errors")),
                   _num(f.get("warmup_settle_s")))


@dataclass(frozen=True, slots=True)
class H2loadFigures(_Part):
    """h2load's own: the protocol it reports having spoken (h2c, http/1.1) and its threads.
    It checks statuses only: no body check, no worker header (no per-worker split)."""

    protocol: str | None  # "Application protocol:" of its report; None: it never connected
    h2load_threads: int  # at its limit at this many cores
    h2load_settle_s: float | None  # the wait for the server to drain the warm-up

    @classmethod
    def from_json(cls, f: Mapping[str, Any]) -> "H2loadFigures":
        return cls(_str(f.get("protocol")), _int(f.get("h2load_threads")) or 1,
                   _num(f.get("h2load_settle_s")))


@dataclass(frozen=True, slots=True)
class ProcessesFigures(_Part):
    clients: int  # client processes (clients = k)
    client_cpu_busiest_pct: float | None  # the busiest one's CPU: it decides client_limited

    @classmethod
    def from_json(cls, f: Mapping[str, Any]) -> "ProcessesFigures":
        return cls(_int(f.get("clients")), _num(f.get("client_cpu_busiest_pct")))


@dataclass(frozen=True, slots=True)
class LoadHostsFigures(_Part):
    """Load sent from k hosts (a run on remote hosts): how far apart they started."""

    load_hosts: int
    start_spread_s: float | None  # the latest host's start after the first's (wall clocks)
    start_spread_flagged: bool  # more than lab.start_spread of the window: not one load

    @classmethod
    def from_json(cls, f: Mapping[str, Any]) -> "LoadHostsFigures":
        return cls(_int(f.get("load_hosts")), _num(f.get("start_spread_s")),
                   bool(f.get("start_spread_flagged")))


@dataclass(frozen=True, slots=True)
class LoopSite:
    """Where steps of an endpoint blocked the loop: ``time.sleep at app.py:12 in slow``."""

    site: str
    count: int  # steps that hit it
    seconds: float  # those steps' wall time

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "count": self.count, "seconds": self.seconds}

    @classmethod
    def from_json(cls, s: Mapping[str, Any]) -> "LoopSite":
        return cls(str(s.get("site")), _int(s.get("count")), _num(s.get("seconds")) or 0.0)


@dataclass(frozen=True, slots=True)
class LoopEndpoint:
    """One endpoint's hold on one worker's event loop over the window."""

    calls: int  # requests that ended in the window
    loop_ms_per_call: float | None  # its steps' wall time on the loop
    cpu_ms_per_call: float | None  # their thread CPU time
    longest_step_ms: dict[str, float | None]  # each call's longest step: p50, p99, max
    sites: tuple[LoopSite, ...]  # most seconds first
    thread_wait_ms_per_call: float | None = None  # asking → running in a thread (None: never)

    def to_json(self) -> dict[str, Any]:
        out = {"calls": self.calls, "loop_ms_per_call": self.loop_ms_per_call,
               "cpu_ms_per_call": self.cpu_ms_per_call,
               "longest_step_ms": self.longest_step_ms,
               "sites": [s.to_json() for s in self.sites]}
        if self.thread_wait_ms_per_call is not None:
            out["thread_wait_ms_per_call"] = self.thread_wait_ms_per_call
        return out

    @classmethod
    def from_json(cls, e: Mapping[str, Any], share: Callable[[Any], Any] = _unshared
                  ) -> "LoopEndpoint":
        return cls(_int(e.get("calls")), _num(e.get("loop_ms_per_call")),
                   _num(e.get("cpu_ms_per_call")),
                   _percentiles(e.get("longest_step_ms"), share),
                   _sites(e.get("sites")), _num(e.get("thread_wait_ms_per_call")))


def _sites(value: Any) -> tuple[LoopSite, ...]:
    return tuple(LoopSite.from_json(s) for s in value or () if isinstance(s, dict))


@dataclass(frozen=True, slots=True)
class LoopThreads:
    """anyio's default thread limiter in one worker over the window: where FastAPI runs
    `def` endpoints and sync dependencies."""

    tokens: int
    in_use_mean: float | None  # tokens in use, on average over the window
    saturated_share: float | None  # the window's share with every token in use
    waiting_mean: float | None  # tasks waiting for a token, on average
    peak_waiting: int  # the most the watchdog saw waiting (it looks every ≤ 10 ms)
    runs: int  # requests' runs in its threads
    wait_ms: dict[str, float | None]  # their waits, asking → running: p50, p99, max

    def to_json(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "in_use_mean": self.in_use_mean,
                "saturated_share": self.saturated_share, "waiting_mean": self.waiting_mean,
                "peak_waiting": self.peak_waiting, "runs": self.runs, "wait_ms": self.wait_ms}

    @classmethod
    def from_json(cls, t: Mapping[str, Any]) -> "LoopThreads":
        return cls(_int(t.get("tokens")), _num(t.get("in_use_mean")),
                   _num(t.get("saturated_share")), _num(t.get("waiting_mean")),
                   _int(t.get("peak_waiting")), _int(t.get("runs")),
                   _percentiles(t.get("wait_ms")))


@dataclass(frozen=True, slots=True)
class LoopWorker:
    """One worker's loop over the window (the wrapper's loop meter)."""

    busy_share: float | None  # its requests' steps / the window's wall time
    endpoints: dict[str, LoopEndpoint]  # route template (else path) → its figures
    outside_cpu_share: float | None = None  # the loop thread's CPU outside requests' steps
    lag_ms: dict[str, float | None] = field(default_factory=dict)  # heartbeat: p50, p99, max
    held_outside_share: float | None = None  # held past the threshold outside any request
    held_outside: tuple[LoopSite, ...] = ()  # where: most seconds first
    threads: LoopThreads | None = None  # None: the app has no anyio limiter

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "busy_share": self.busy_share,
            "endpoints": {k: e.to_json() for k, e in self.endpoints.items()}}
        # the heartbeat's and the limiter's only where measured: an older line stays the same
        for key, value in (("outside_cpu_share", self.outside_cpu_share),
                           ("lag_ms", self.lag_ms or None),
                           ("held_outside_share", self.held_outside_share),
                           ("held_outside", [s.to_json() for s in self.held_outside] or None)):
            if value is not None:
                out[key] = value
        if self.threads is not None:
            out["threads"] = self.threads.to_json()
        return out

    @classmethod
    def from_json(cls, w: Mapping[str, Any], share: Callable[[Any], Any] = _unshared
                  ) -> "LoopWorker":
        threads = w.get("threads")
        return cls(_num(w.get("busy_share")),
                   {share(str(k)): LoopEndpoint.from_json(e, share)
                    for k, e in _table(w.get("endpoints")).items() if isinstance(e, dict)},
                   _num(w.get("outside_cpu_share")), _percentiles(w.get("lag_ms"), share),
                   _num(w.get("held_outside_share")), _sites(w.get("held_outside")),
                   LoopThreads.from_json(threads) if isinstance(threads, dict) else None)


@dataclass(frozen=True, slots=True)
class LoopFigures(_Part):
    """Which endpoints held the event loop, per worker pid (``lab.loop_meter``)."""

    loop: dict[str, LoopWorker]

    def to_json(self) -> dict[str, Any]:
        return {"loop": {pid: w.to_json() for pid, w in self.loop.items()}}

    @classmethod
    def from_json(cls, f: Mapping[str, Any]) -> "LoopFigures":
        return cls({str(pid): LoopWorker.from_json(w) for pid, w in _table(f.get("loop")).items()
                    if isinstance(w, dict)})


@dataclass(frozen=True, slots=True)
class WebSocketFigures(_Part):
    """The websocket kinds' (``lab.load.websocket``): echo, or broadcast (``ws_rounds``)."""

    ws_clients: int  # asked for (the load)
    ws_connected: int  # whose handshake the server accepted
    ws_message_bytes: int
    ws_handshake_ms: dict[str, float | None]  # p50, max of the accepted ones
    ws_messages: int | None = None  # echo: per client
    ws_rounds: int | None = None  # broadcast: messages fanned out, one after another
    ws_groups: int | None = None  # broadcast: the workers the clients were grouped by
    ws_last_p50_ms: float | None = None  # broadcast: the last client's delivery, p50 of rounds
    ws_last_max_ms: float | None = None
    ws_missed: int = 0  # broadcast: deliveries that never came (within timeout_s)

    @classmethod
    def from_json(cls, f: Mapping[str, Any]) -> "WebSocketFigures":
        def count(key: str) -> int | None:
            return _int(f[key]) if f.get(key) is not None else None

        return cls(_int(f.get("ws_clients")), _int(f.get("ws_connected")),
                   _int(f.get("ws_message_bytes")), _percentiles(f.get("ws_handshake_ms")),
                   count("ws_messages"), count("ws_rounds"), count("ws_groups"),
                   _num(f.get("ws_last_p50_ms")), _num(f.get("ws_last_max_ms")),
                   _int(f.get("ws_missed")))


@dataclass(frozen=True, slots=True)
class KindFigures:
    """The figures only some kinds or engines have; an engine's measurement carries them."""

    burst: BurstFigures | None = None
    open: OpenFigures | None = None
    knee: KneeFigures | None = None
    interference: InterferenceFigures | None = None
    stream: StreamFigures | None = None
    wrk: WrkFigures | None = None
    h2load: H2loadFigures | None = None
    processes: ProcessesFigures | None = None
    loop: LoopFigures | None = None  # any kind's, with lab.loop_meter (from the window)
    websocket: WebSocketFigures | None = None
    load_hosts: LoadHostsFigures | None = None  # a run on remote hosts, with k > 1


PARTS: dict[str, type[_Part]] = {
    "burst": BurstFigures, "open": OpenFigures, "knee": KneeFigures,
    "interference": InterferenceFigures, "stream": StreamFigures, "wrk": WrkFigures,
    "h2load": H2loadFigures, "processes": ProcessesFigures, "loop": LoopFigures,
    "websocket": WebSocketFigures, "load_hosts": LoadHostsFigures}


@dataclass(frozen=True, slots=True)
class Figures(KindFigures):
    """One cell's measured figures (`lab.load.stats.summarize`)."""

    requests: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # failed requests by kind
    error_rate: float = 0.0
    wall_s: float | None = None  # the measured window (a burst: first write → last read)
    rps: float | None = None
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    latency_samples: int = 0
    histogram: Histogram | None = None
    pids: dict[str, int] = field(default_factory=dict)  # successful answers per worker
    client_cpu_pct: float | None = None
    client_limited: bool = False
    client_max_gap_s: float | None = None  # the lab's longest unscheduled moment
    machine_saturated: bool = False
    cores: int = 0  # the CPUs client and server ran on
    server_cpu_pct: float | None = None
    server_cores_used: float | None = None
    rps_per_server_core: float | None = None
    server_cpu_s_per_1000: float | None = None
    server_peak_rss_mb: float | None = None
    server_processes: int = 0
    inflight_peak: dict[str, int] = field(default_factory=dict)  # per worker (the wrapper's)
    # per worker: the client connections that sent it a request in the window (the wrapper's)
    connections: dict[str, int] = field(default_factory=dict)
    # TCP connections the machine accepted in the window (the kernel's PassiveOpens: the
    # server's and any other listener's of its network namespace)
    tcp_opens: int | None = None

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def idle_ms(self, q: str) -> float | None:
        """An interference probe's idle latency percentile (``"p50"``), if it has one."""
        return self.interference.idle_latency_ms.get(q) if self.interference else None

    def to_json(self) -> dict[str, Any]:
        common = {f.name: _json(getattr(self, f.name)) for f in fields(self)
                  if f.name not in PARTS}
        for name in PARTS:
            if (part := getattr(self, name)) is not None:
                common |= part.to_json()
        return common

    @classmethod
    def from_json(cls, f: Mapping[str, Any], share: Callable[[Any], Any] = _unshared) \
            -> "Figures":
        return cls(
            requests=_int(f.get("requests")), ok=_int(f.get("ok")),
            errors=_counts(f.get("errors"), share),
            error_rate=_num(f.get("error_rate")) or 0.0,
            wall_s=_num(f.get("wall_s")), rps=_num(f.get("rps")),
            latency_ms=_percentiles(f.get("latency_ms"), share),
            latency_samples=_int(f.get("latency_samples")),
            histogram=_histogram(f.get("histogram")), pids=_counts(f.get("pids"), share),
            client_cpu_pct=_num(f.get("client_cpu_pct")),
            client_limited=bool(f.get("client_limited")),
            client_max_gap_s=_num(f.get("client_max_gap_s")),
            machine_saturated=bool(f.get("machine_saturated")), cores=_int(f.get("cores")),
            server_cpu_pct=_num(f.get("server_cpu_pct")),
            server_cores_used=_num(f.get("server_cores_used")),
            rps_per_server_core=_num(f.get("rps_per_server_core")),
            server_cpu_s_per_1000=_num(f.get("server_cpu_s_per_1000")),
            server_peak_rss_mb=_num(f.get("server_peak_rss_mb")),
            server_processes=_int(f.get("server_processes")),
            inflight_peak=_counts(f.get("inflight_peak"), share),
            connections=_counts(f.get("connections"), share),
            tcp_opens=_int(f["tcp_opens"]) if f.get("tcp_opens") is not None else None,
            **{name: part.from_json(f) if part.present(f) else None  # type: ignore[attr-defined]
               for name, part in PARTS.items()})


NOT_SERVED = "not_served"  # a results line's status: the server cannot serve the cell


class FailureKind(StrEnum):
    START_FAILED = "start_failed"  # the server did not start, or not ready in time
    SERVER_CRASHED = "server_crashed"  # a server process exited during the cell
    ALL_REQUESTS_FAILED = "all_requests_failed"
    CELL_TIMEOUT = "cell_timeout"  # lab.cell_timeout_s passed
    CLIENT_FAILED = "client_failed"  # the load generator failed (a client process, wrk)
    # Not a failure: the server does not speak the cell's protocol (its status: not_served)
    NOT_SERVED = "not_served"
    DISTURBED = "disturbed"  # the lab went unscheduled: measured again on --resume
    LAB_ERROR = "lab_error"  # a defect of the lab in this cell


@dataclass(frozen=True, slots=True)
class Failure:
    kind: FailureKind
    reason: str
    log_tail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind.value, "reason": self.reason, "log_tail": self.log_tail}

    @classmethod
    def from_json(cls, f: Mapping[str, Any]) -> "Failure":
        try:
            kind = FailureKind(str(f.get("kind")))
        except ValueError:
            raise MalformedLine(f"has an unknown failure kind {f.get('kind')!r}") from None
        return cls(kind, str(f.get("reason")), str(f.get("log_tail") or ""))


@dataclass(frozen=True, slots=True)
class Process:
    """The server process that served the cell."""

    start_to_ready_s: float | None  # None when it was reused
    reused: bool
    port: int | None
    argv: tuple[str, ...]
    log: str | None  # its log's name in logs/

    def to_json(self) -> dict[str, Any]:
        return {"start_to_ready_s": self.start_to_ready_s, "reused": self.reused,
                "port": self.port, "argv": list(self.argv), "log": self.log}

    @classmethod
    def from_json(cls, p: Mapping[str, Any], share: Callable[[Any], Any] = _unshared) \
            -> "Process":
        port = p.get("port")
        return cls(_num(p.get("start_to_ready_s")), bool(p.get("reused")),
                   port if isinstance(port, int) else None,
                   share(tuple(share(str(a)) for a in p.get("argv") or ())),
                   _str(p.get("log")))


# What every reader relies on: key → the type it must have.
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "cell_id": str, "server_id": str, "server": str, "workers": int, "experiment": str,
    "kind": str, "endpoint": str, "load": dict, "params": dict, "status": str,
    "options": dict, "server_version": (str, type(None)),
}


def _check(line: Mapping[str, Any]) -> None:
    for key, kind in _REQUIRED.items():
        if not isinstance(line.get(key), kind):
            raise MalformedLine(f"has no valid {key!r}")
    if line["status"] not in ("ok", "failed", NOT_SERVED):
        raise MalformedLine("has an unknown status")
    if line["status"] == "ok" and not isinstance(line.get("figures"), dict):
        raise MalformedLine("is ok but has no figures")
    if line["status"] != "ok" and not isinstance(line.get("failure"), dict):
        raise MalformedLine(f"is {line['status']} but says no reason")


_V1_KINDS = {"crashed": FailureKind.SERVER_CRASHED.value}  # older names of failure kinds


def _upgrade_v1(line: dict[str, Any]) -> dict[str, Any]:
    """A version 1 line as version 2. Version 1 stored the engine a second time in the
    figures, a line of a cell that failed before it measured may name only the engine it
    asked for, lines before ``latency_samples`` count their successful requests, and
    older labs called a crashed server ``crashed``."""
    failure = line.get("failure")
    if isinstance(failure, dict) and (kind := _V1_KINDS.get(str(failure.get("kind")))):
        failure = failure | {"kind": kind}
    figures = line.get("figures")
    if isinstance(figures, dict):
        figures = {k: v for k, v in figures.items() if k != "engine"}
        figures.setdefault("latency_samples", figures.get("ok"))
    return line | {"schema_version": SCHEMA_VERSION, "figures": figures, "failure": failure,
                   "engine": line.get("engine") or line.get("engine_requested")}


@dataclass(frozen=True, slots=True)
class Result:
    """One results line: one cell of one repeat on one server configuration."""

    # the cell, as lab.run.runner.describe writes it
    cell_id: str
    repeat: int
    server_id: str
    server: str
    server_version: str | None
    workers: int
    options: dict[str, Any]  # with the lab's defaults
    experiment: str
    kind: str
    endpoint: str  # its label
    load: dict[str, Any]  # the load axis (requests, users, rates…) and the kind's settings
    params: dict[str, Any]
    status: str  # ok | failed | not_served (its failure says why; not a failure)
    failure: Failure | None
    figures: Figures | None  # a failed cell may still have partial figures
    engine: str | None = None  # the load generator that ran (wrk, rawhttp, …)
    engine_requested: str | None = None  # what the config asked (auto)
    run_id: str | None = None
    cell_key: str | None = None  # what --resume matches; None in lines before keys
    app: str = "?"  # what was served: "apps.article:app", a team's own "myapp.main:app"…
    app_dir: str | None = None
    wrap: bool = True  # served inside lab.servers.asgi_wrap (per-worker split known)
    ways: bool = False  # the experiment's endpoints are ways of one thing (config `ways`)
    settings: dict[str, str] = field(default_factory=dict)  # like-for-like, as run
    request: dict[str, Any] = field(default_factory=dict)  # the endpoint's request and check
    placement: dict[str, Any] = field(default_factory=dict)  # server and client CPUs
    process: Process | None = None  # None when the server did not start
    started_at: str | None = None
    finished_at: str | None = None
    cell_wall_s: float | None = None
    source_run: str | None = None  # in a merged report: the run it came from

    def to_json(self) -> dict[str, Any]:
        out = {f.name: _json(getattr(self, f.name)) for f in fields(self)}
        if self.source_run is None:
            del out["source_run"]  # only merged lines have it
        return {"schema_version": SCHEMA_VERSION, **out}

    @classmethod
    def from_json(cls, line: Mapping[str, Any], shared: Shared | None = None) -> "Result":
        """A line of any known version; `MalformedLine` says why one cannot be read. The
        lines of one file share their repeated values through one `Shared`."""
        share = shared or Shared()
        version = line.get("schema_version")
        if version == 1:
            line = _upgrade_v1(dict(line))
        elif version != SCHEMA_VERSION:
            raise UnknownVersion(f"has schema_version {version!r}, expected {SCHEMA_VERSION}")
        _check(line)
        failure, figures, process = (_table(line.get(k)) for k in ("failure", "figures",
                                                                       "process"))
        text = share.text
        return cls(
            cell_id=line["cell_id"], repeat=_int(line.get("repeat")) or 1,
            server_id=share(line["server_id"]), server=share(line["server"]),
            server_version=share(line["server_version"]), workers=int(line["workers"]),
            options=share(dict(line["options"])), experiment=share(line["experiment"]),
            kind=share(line["kind"]), endpoint=share(line["endpoint"]),
            load=share(dict(line["load"])), params=share(dict(line["params"])),
            status=share(line["status"]),
            failure=Failure.from_json(failure) if failure else None,
            figures=Figures.from_json(figures, share) if figures else None,
            engine=text(line.get("engine")), engine_requested=text(line.get("engine_requested")),
            run_id=text(line.get("run_id")), cell_key=_str(line.get("cell_key")),
            app=share(str(line.get("app") or "?")), app_dir=text(line.get("app_dir")),
            wrap=line.get("wrap") is not False, ways=line.get("ways") is True,
            settings=share({share(str(k)): share(str(v))
                            for k, v in _table(line.get("settings")).items()}),
            request=share(_table(line.get("request"))),
            placement=share(_table(line.get("placement"))),
            process=Process.from_json(process, share) if process else None,
            started_at=_str(line.get("started_at")), finished_at=_str(line.get("finished_at")),
            cell_wall_s=_num(line.get("cell_wall_s")), source_run=text(line.get("source_run")))

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.figures is not None

    @property
    def cell(self) -> str:
        """The cell id without its repeat suffix: the same cell in another run."""
        return re.sub(rf"-r{self.repeat}$", "", self.cell_id)

    @property
    def start_to_ready_s(self) -> float | None:
        return self.process.start_to_ready_s if self.process else None


@dataclass(frozen=True, slots=True)
class MergedRun:
    """One run of a merged report, as its run.json and environment.json said."""

    run: str
    path: str
    environment: dict[str, Any]  # its environment.json (lab.store.environment)
    config: str | None = None
    config_hash: str | None = None
    state: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    repeats: int | str | None = None
    order: str | None = None
    seed: int | str | None = None
    cells_total: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, s: Mapping[str, Any]) -> "MergedRun":
        known = {f.name for f in fields(cls)} - {"run", "path", "environment"}
        return cls(str(s.get("run")), str(s.get("path")), _table(s.get("environment")),
                   **{k: v for k, v in s.items() if k in known})


@dataclass
class RunInfo:
    """``run.json``: what a run was asked and how far it got, updated as it goes. A merged
    report's says which runs it merged (``merged_from``), and "varied" where they differ."""

    config: str | None = None
    config_dir: str | None = None
    config_hash: str | None = None
    argv: list[str] = field(default_factory=list)
    order: str | None = None  # "varied" in a merge of runs that differ
    seed: int | str | None = None
    repeats: int | str | None = None
    baseline: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    state: str | None = None  # running, finished, interrupted, failed
    signal: int | None = None  # the one that interrupted the run
    error: str | None = None  # why it failed
    cells_total: int | None = None
    planned: list[str] | None = None  # the keys of the current config's cells
    merged_from: list[MergedRun] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.merged_from is not None:
            out["merged_from"] = [s.to_json() for s in self.merged_from]
        return {"schema_version": SCHEMA_VERSION, **out}

    @classmethod
    def from_json(cls, info: Any) -> "RunInfo":
        """Any version's run.json (version 1 had no schema_version); {} when it is missing
        or corrupt gives an empty one."""
        known = {f.name for f in fields(cls)} - {"planned", "merged_from"}
        out = cls(**{k: v for k, v in _table(info).items() if k in known})
        if isinstance(planned := info.get("planned"), list):
            out.planned = [str(k) for k in planned]
        if isinstance(merged := info.get("merged_from"), list):
            out.merged_from = [MergedRun.from_json(s) for s in merged if isinstance(s, dict)]
        return out

