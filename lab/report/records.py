"""A line of results.jsonl, typed: what every renderer (tables, charts, findings, compare,
the merged report) reads instead of a JSON dict.

`lab.store.results` has already checked the keys every reader relies on; the figures differ by
kind and by the lab's version that wrote them, so each is optional here and older lines
still read (a line without ``latency_samples`` counts its successful requests).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.load.histogram import Histogram


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _int(value: Any) -> int:
    """A count; anything else in a hand-edited or foreign line counts as none."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else 0


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _percentiles(value: Any) -> dict[str, float | None]:
    return {str(k): _num(v) for k, v in _table(value).items()}


def _counts(value: Any) -> dict[str, int]:
    return {str(k): _int(v) for k, v in _table(value).items()}


def _histogram(value: Any) -> Histogram | None:
    """The stored histogram; a malformed one is left out (the stored percentiles stand)."""
    try:
        return Histogram.from_json(value) if value else None
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


@dataclass(frozen=True)
class Figures:
    """One cell's measured figures (see `lab.load.stats.summarize`)."""

    requests: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # failed requests by kind
    pids: dict[str, int] = field(default_factory=dict)  # successful answers per worker
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    latency_samples: int = 0
    histogram: Histogram | None = None
    wall_s: float | None = None
    rps: float | None = None
    client_cpu_pct: float | None = None
    client_limited: bool = False
    machine_saturated: bool = False
    server_cores_used: float | None = None
    rps_per_server_core: float | None = None
    server_peak_rss_mb: float | None = None
    # open model
    send_lag_p99_ms: float | None = None
    client_behind: bool = False
    # open model, rates = "auto": the highest rate held within the SLO, and every probe
    knee_rps: float | None = None
    knee_bound: str | None = None  # found, client (a lower bound), max, below, unconfirmed
    knee_probes: tuple[dict[str, Any], ...] = ()
    # burst: how far apart its requests were written; the peak in flight per worker
    send_spread_ms: float | None = None
    connect: str | None = None  # warm | cold
    inflight_peak: dict[str, int] = field(default_factory=dict)
    # interference
    idle_latency_ms: dict[str, float | None] = field(default_factory=dict)
    background_requests: int = 0

    @classmethod
    def from_json(cls, f: Mapping[str, Any]) -> "Figures":
        return cls(
            requests=_int(f.get("requests")), ok=_int(f.get("ok")),
            errors=_counts(f.get("errors")), pids=_counts(f.get("pids")),
            latency_ms=_percentiles(f.get("latency_ms")),
            latency_samples=_int(f.get("latency_samples", f.get("ok"))),
            histogram=_histogram(f.get("histogram")),
            wall_s=_num(f.get("wall_s")), rps=_num(f.get("rps")),
            client_cpu_pct=_num(f.get("client_cpu_pct")),
            client_limited=bool(f.get("client_limited")),
            machine_saturated=bool(f.get("machine_saturated")),
            server_cores_used=_num(f.get("server_cores_used")),
            rps_per_server_core=_num(f.get("rps_per_server_core")),
            server_peak_rss_mb=_num(f.get("server_peak_rss_mb")),
            send_lag_p99_ms=_num(f.get("send_lag_p99_ms")),
            client_behind=bool(f.get("client_behind")),
            send_spread_ms=_num(f.get("send_spread_ms")),
            connect=str(f["connect"]) if f.get("connect") else None,
            knee_rps=_num(f.get("knee_rps")),
            knee_bound=str(f["knee_bound"]) if f.get("knee_bound") else None,
            knee_probes=tuple(p for p in f.get("knee_probes") or () if isinstance(p, dict)),
            inflight_peak=_counts(f.get("inflight_peak")),
            idle_latency_ms=_percentiles(f.get("idle_latency_ms")),
            background_requests=_int(f.get("background_requests")),
        )

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


@dataclass(frozen=True)
class Failure:
    kind: str  # e.g. start_failed, cell_timeout (as `lab.run.runner` writes it)
    reason: str
    log_tail: str = ""


@dataclass(frozen=True)
class Result:
    """One cell of one repeat on one server configuration."""

    cell_id: str
    repeat: int
    app: str  # what was served: "apps.article:app", a team's own "myapp.main:app"…
    experiment: str
    kind: str
    endpoint: str
    load: dict[str, Any]  # the load axis: requests, users, rate_rps…, as configured
    params: dict[str, Any]
    server_id: str
    server: str
    workers: int
    options: dict[str, Any]
    server_version: str | None
    status: str  # ok | failed
    failure: Failure | None
    figures: Figures | None  # a failed cell may still have partial figures
    engine: str | None = None  # the load generator that ran (closed: wrk, aiohttp, …)
    wrap: bool = True  # served inside lab.servers.asgi_wrap (per-worker split known)
    ways: bool = False  # the experiment's endpoints are ways of one thing (config `ways`)
    placement: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)  # as run, for "as run"
    start_to_ready_s: float | None = None
    source_run: str | None = None  # in a merged report: the run it came from

    @classmethod
    def from_line(cls, r: Mapping[str, Any]) -> "Result":
        """From a line `lab.store.results.RunDir.load` accepted."""
        failure = _table(r.get("failure"))
        process = _table(r.get("process"))
        return cls(
            cell_id=r["cell_id"], repeat=_int(r.get("repeat")) or 1,
            app=str(r.get("app") or "?"),
            experiment=r["experiment"], kind=r["kind"], endpoint=r["endpoint"],
            load=dict(r["load"]), params=dict(r["params"]), server_id=r["server_id"],
            server=r["server"], workers=int(r["workers"]), options=dict(r["options"]),
            server_version=r.get("server_version"), status=r["status"],
            failure=Failure(str(failure.get("kind")), str(failure.get("reason")),
                            str(failure.get("log_tail") or "")) if failure else None,
            figures=Figures.from_json(r["figures"]) if _table(r.get("figures")) else None,
            engine=str(engine) if (engine := r.get("engine") or r.get("engine_requested"))
            else None,
            wrap=r.get("wrap") is not False, ways=r.get("ways") is True,
            placement=_table(r.get("placement")),
            settings={str(k): str(v) for k, v in _table(r.get("settings")).items()},
            start_to_ready_s=_num(process.get("start_to_ready_s")),
            source_run=str(r["source_run"]) if r.get("source_run") else None)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.figures is not None

    @property
    def cell(self) -> str:
        """The cell id without its repeat suffix: the same cell in another run."""
        return re.sub(rf"-r{self.repeat}$", "", self.cell_id)
