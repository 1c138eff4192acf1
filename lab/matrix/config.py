"""TOML config → typed, frozen, validated Matrix; its expansion into Cells.

Every list is a matrix axis. Every error names its key path, e.g.
``servers.granian.workers[1]: must be ≥ 1``.
"""

import hashlib
import itertools
import json
import math
import random
import tomllib
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lab.errors import ConfigError
from lab.kinds import get, kinds
from lab.matrix.endpoint import Endpoint
from lab.matrix.placement import Placement, parse_cpuset, usable_cpus
from lab.matrix.remote import (
    FLAGS,
    NO_OVERRIDE,
    TLS_KEYS,
    Override,
    Remote,
    check,
    is_loopback,
    tls_file,
    tls_of,
)
from lab.servers import ADAPTERS, OptionValue

Scalar = str | int | float | bool

AUTO = 0  # the load of an open-model cell whose rate is searched for (rates = "auto")
MAX_CELLS = 100_000  # a bigger matrix is a mistake (and would take days); refuse it unbuilt
FILE_NAME_BYTES = 255  # NAME_MAX: each cell's server log is logs/<cell id>.log
ENGINE_NAMES = ("rawhttp", "httpx", "aiohttp", "wrk", "h2load")
PYTHON_ENGINES = ("rawhttp", "httpx", "aiohttp")
H2_ENGINES = ("auto", "h2load")  # the engines that speak HTTP/2 (h2c by prior knowledge)
CONNECT = ("warm", "cold")  # connections opened before the window, or one per request in it
# closed, open: every connection carries requests until the window ends, or the client
# sends each request with ``Connection: close`` on a connection of its own and closes it
CONNECTION = ("keep-alive", "close")
HTTP = ("1.1", "2")
MAX_STREAMS = 1000
# Why a kind has no http setting, where the reason is more than its engines' (measured
# 2026-12-03 with h2load 1.52, see docs/config.md).
NO_HTTP2 = {
    "open": "h2load, the lab's HTTP/2 engine, has no open model: its --rps paces each "
            "connection only while a stream is free, and times each request from its actual "
            "send, not its scheduled one (coordinated omission)",
}


@dataclass(frozen=True)
class Axis:
    """A kind's setting that, given as a list, makes one experiment per value (per
    combination, with other axes): ``label`` names the value in the experiment's name.
    At ``unrecorded`` (a setting newer than earlier runs), a cell's key and results line
    leave the setting out, so those runs' cells keep their keys and lines."""

    key: str
    label: Callable[[Any], str] = str
    unrecorded: object = None  # None: always recorded


AXES = (Axis("connect"), Axis("probe_connect"),
        Axis("http", lambda v: "h1" if v == "1.1" else "h2", unrecorded="1.1"),
        Axis("streams", lambda v: f"s{v}", unrecorded=1),
        Axis("connection", unrecorded="keep-alive"))
AXIS_SETTINGS = tuple(a.key for a in AXES)
DEFAULT_THREADS = 40  # anyio's default thread limiter: its tokens when lab.threads is absent
MAX_THREADS = 10_000
# A WebSocket message: the websockets library's default limit (1 MiB; uvicorn and hypercorn: 16)
MAX_MESSAGE_BYTES = 1 << 20


@dataclass(frozen=True)
class LabSettings:
    app: str = "apps.article:app"
    app_dir: str | None = None  # absolute; None: the lab's project root
    wrap: bool = True  # serve lab.servers.asgi_wrap around the app (worker header, ready markers)
    loop_meter: bool = False  # the wrapper times each endpoint's steps on the event loop
    ready_path: str = "/health"  # ready once it answers ready_status (and every worker
    ready_status: int = 200  # has started, when the app is wrapped)
    repeats: int = 1
    host: str = "127.0.0.1"
    start_timeout_s: float = 30.0
    stop_grace_s: float = 5.0
    cell_timeout_s: float = 300.0
    order: str = "interleaved"  # or "shuffled": server order within each point, seeded
    seed: int = 1
    baseline: str | None = None  # a configuration id, e.g. "uvicorn-w1"; default: the best
    placement: Placement = Placement(None, None)  # CPUs of servers and client
    # "configuration": one server start per configuration and repeat, serving all its cells
    # (restarted after a failed cell); "cell": a fresh server for every cell.
    restart: str = "configuration"
    # Tokens of anyio's default thread limiter in each worker (FastAPI's `def` endpoints and
    # sync dependencies), applied by the wrapper: an axis of every server configuration.
    # (): not set, the app's own (40).
    threads: tuple[int, ...] = ()
    remote: Remote | None = None  # None: no scheduler, everything runs on this machine


@dataclass(frozen=True)
class ServerSpec:
    name: str
    workers: tuple[int, ...]
    options: Mapping[str, tuple[OptionValue, ...]]  # each option is an axis

    def variants(self) -> list[tuple[tuple[str, OptionValue], ...]]:
        keys = sorted(self.options)
        return [tuple(zip(keys, values, strict=True))
                for values in itertools.product(*(self.options[k] for k in keys))]


@dataclass(frozen=True)
class Experiment:
    name: str
    kind: str
    endpoints: tuple[Endpoint, ...]  # a path string is taken as a GET of it
    loads: tuple[int, ...]
    params: Mapping[str, Scalar]
    engine: str
    timeout_s: float  # per request
    # the report ranks its endpoints as alternative ways of one thing (`def` / `async def`)
    ways: bool = False
    duration_s: float = 3.0
    warmup_s: float = 1.0
    clients: int = 1  # client processes whose results merge (closed, open)
    max_connections: int = 512  # open model: the client's connection cap
    slo_p99_ms: float | None = None  # open model: find the highest rate within it
    knee_window_s: float = 1.0  # rates = "auto": each probing window
    knee_max_rps: int = 100_000  # rates = "auto": the highest rate tried
    probe: Endpoint = Endpoint("/hello")  # interference: the unrelated fast endpoint
    probes: int = 20
    probe_interval_s: float = 0.02
    settle_s: float = 0.1  # interference: background running before probing
    # burst: "warm" opens and checks the N connections before the window; "cold" opens a
    # new connection per request inside it. interference: the same for each probe.
    connect: str = "warm"
    probe_connect: str = "warm"
    connection: str = "keep-alive"  # closed, open: CONNECTION
    responses: int = 5  # stream: whole responses each reader reads, one after another
    paced_ms: float | None = None  # stream: the endpoint's first → last chunk, if not its query's
    ready: Endpoint = Endpoint("/health")  # lab.ready_path: what a warm connection is checked with
    http: str = "1.1"  # closed: the protocol; "2" is h2c by prior knowledge (h2load)
    streams: int = 1  # closed, http 2: concurrent streams per connection (h2load -m)
    messages: int = 100  # websocket: each client's messages, each after the one before's echo
    message_bytes: int = 32  # websocket, ws_broadcast: each text message's size
    rounds: int = 10  # ws_broadcast: messages fanned out, one after another
    wrapped: bool = True  # lab.wrap: a WebSocket client may ask the wrapper for its worker

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoints", tuple(as_endpoint(e) for e in self.endpoints))

    def recorded_settings(self) -> dict[str, Any]:
        """The kind's settings, but an axis at its `Axis.unrecorded` value."""
        quiet = {a.key: a.unrecorded for a in AXES if a.unrecorded is not None}
        return {k: getattr(self, k) for k in get(self.kind).settings
                if k not in quiet or getattr(self, k) != quiet[k]}

    def shown_settings(self) -> dict[str, Any]:
        """The kind's settings as a results line shows them: the probe by its label."""
        return {k: v.label if isinstance(v, Endpoint) else v
                for k, v in self.recorded_settings().items()}


def as_endpoint(e: "Endpoint | str") -> Endpoint:
    return Endpoint(e) if isinstance(e, str) else e


@dataclass(frozen=True)
class Cell:
    """One fully specified measurement."""

    server: str
    workers: int
    options: tuple[tuple[str, OptionValue], ...]
    experiment: Experiment
    endpoint: Endpoint  # a path string is taken as a GET of it
    load: int
    repeat: int
    label_options: tuple[str, ...] = field(default=(), compare=False)  # axes shown in the id
    label_repeat: bool = field(default=False, compare=False)
    threads: int | None = None  # lab.threads: the thread limiter's tokens; None: the app's own

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoint", as_endpoint(self.endpoint))

    def start_key(self, restart: str) -> tuple[object, ...]:
        """Consecutive cells with the same key share one server start: with
        ``lab.restart = "configuration"`` those of one configuration and repeat."""
        if restart == "cell":
            return (self.id,)
        h2c = self.h2c
        # An h2 cell whose server needs other flags for it starts a server of its own.
        return (*self.configuration, self.repeat, *(h2c if isinstance(h2c, tuple) else ()))

    @property
    def h2c(self) -> tuple[str, ...] | str:
        """An h2 cell's server's extra flags, or why it cannot serve h2c; () in h1 cells."""
        if self.experiment.http != "2":
            return ()
        adapter = ADAPTERS[self.server]
        return adapter.h2c(adapter.effective_options(dict(self.options)))

    @property
    def configuration(self) -> tuple[object, ...]:
        """What one server start serves: server, workers, options and threads."""
        return (self.server, self.workers, self.options, self.threads)

    @property
    def server_id(self) -> str:
        """The server configuration: server, workers, threads when lab.threads is set, and
        the options that vary."""
        threads = [] if self.threads is None else [f"t{self.threads}"]
        shown = [f"{k}={v}" for k, v in self.options if k in self.label_options]
        return "-".join([self.server, f"w{self.workers}", *threads, *shown])

    @property
    def id(self) -> str:
        letter = get(self.experiment.kind).letter
        slug = self.endpoint.slug
        cid = f"{self.server_id}-{self.experiment.name}-{slug}-{letter}{self.load_label}"
        return f"{cid}-r{self.repeat}" if self.label_repeat else cid

    @property
    def searched(self) -> bool:
        """A cell whose load is searched for (an open model's rates = "auto")."""
        return self.load == AUTO and get(self.experiment.kind).searchable

    @property
    def load_label(self) -> str:
        return "auto" if self.searched else str(self.load)

    def key(self, lab: LabSettings) -> str:
        """A digest of everything that decides what this cell measures (the id is only a
        readable name): a changed ``params`` or ``duration_s`` is another measurement, so
        ``--resume`` runs it again. The repeat counts, not whether the id shows it."""
        exp = self.experiment
        spec = {
            "app": lab.app, "app_dir": lab.app_dir, "wrap": lab.wrap, "host": lab.host,
            # only when on: the keys of the cells of every earlier run stay what they were
            **({"loop_meter": True} if lab.loop_meter else {}),
            **({"threads": self.threads} if self.threads is not None else {}),
            "placement": lab.placement.as_record(),
            "server": self.server, "workers": self.workers, "options": dict(self.options),
            "experiment": exp.name, "kind": exp.kind, "endpoint": self.endpoint.record(),
            "load": self.load, "params": dict(exp.params), "engine": exp.engine,
            "timeout_s": exp.timeout_s, "repeat": self.repeat,
            "settings": {k: _recorded(v) for k, v in exp.recorded_settings().items()},
        }
        text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _recorded(setting: object) -> object:
    """A setting as the cell's key holds it: a bare path probe as the path it was (so an
    earlier run's cells keep their keys), an endpoint table as its record."""
    if isinstance(setting, Endpoint):
        return setting.path if setting == Endpoint(setting.path) else setting.record()
    return setting


@dataclass(frozen=True)
class Service:
    """An app the run needs beside the one measured (a slow upstream API): served once on
    loopback for the whole run, its URL given to every server in ``url_env``."""

    name: str
    app: str  # module:attribute
    url_env: str
    server: str = "uvicorn"


# A server configuration: server, workers, options' variant, threads (None: not set).
Configuration = tuple[str, int, tuple[tuple[str, OptionValue], ...], int | None]


@dataclass(frozen=True)
class Matrix:
    lab: LabSettings
    servers: tuple[ServerSpec, ...]
    experiments: tuple[Experiment, ...]
    services: tuple["Service", ...] = ()  # started once for the whole run

    def size(self) -> int:
        """How many cells :meth:`cells` returns, counted without building them."""
        return self.lab.repeats * self._configuration_count() * self._point_count()

    def _configuration_count(self) -> int:
        return len(self._threads()) * sum(
            len(s.workers) * math.prod(len(v) for v in s.options.values()) for s in self.servers)

    def _threads(self) -> tuple[int | None, ...]:
        """The threads axis: None alone when lab.threads is not set."""
        return self.lab.threads or (None,)

    def _configurations(self) -> list[Configuration]:
        """Every server configuration in config order: server, workers, its options'
        variant, threads (innermost, so that its values run side by side)."""
        return [(spec.name, workers, variant, threads) for spec in self.servers
                for workers, variant, threads in itertools.product(
                    spec.workers, spec.variants(), self._threads())]

    def _point_count(self) -> int:
        return sum(len(e.endpoints) * len(e.loads) for e in self.experiments)

    def cells(self) -> list[Cell]:
        """All cells, repeats outermost, so that every repeat runs each configuration side
        by side and drift does not favour one. With ``restart = "cell"`` servers are
        innermost (each point runs on every configuration in turn); with ``"configuration"``
        each configuration runs all its points on one server, and the configurations' order
        rotates from repeat to repeat. ``order = "shuffled"`` shuffles the configurations
        with a seeded generator instead, so the same config always runs in the same order."""
        varying = {s.name: tuple(k for k, v in s.options.items() if len(v) > 1)
                   for s in self.servers}
        configs = self._configurations()
        points = [(exp, endpoint, load) for exp in self.experiments
                  for endpoint, load in itertools.product(exp.endpoints, exp.loads)]
        rng = random.Random(self.lab.seed)

        def cell(config: Configuration, point: tuple[Experiment, Endpoint, int],
                 repeat: int) -> Cell:
            (name, workers, variant, threads), (exp, endpoint, load) = config, point
            return Cell(name, workers, variant, exp, endpoint, load, repeat, varying[name],
                        self.lab.repeats > 1, threads)

        def arranged(repeat: int) -> list[Configuration]:
            if self.lab.order == "shuffled":
                return rng.sample(configs, len(configs))
            k = (repeat - 1) % len(configs) if self.lab.restart == "configuration" else 0
            return configs[k:] + configs[:k]

        cells = []
        for repeat in range(1, self.lab.repeats + 1):
            if self.lab.restart == "configuration":
                cells += [cell(c, p, repeat) for c in arranged(repeat) for p in points]
            else:
                cells += [cell(c, p, repeat) for p in points for c in arranged(repeat)]
        return cells

    def points(self, repeat: int) -> Iterator[tuple[int, int, list[Cell]]]:
        """Each measurement point of one repeat: (experiment index, endpoint index, its
        cells, one per server configuration in config order)."""
        varying = {s.name: tuple(k for k, v in s.options.items() if len(v) > 1)
                   for s in self.servers}
        for i, exp in enumerate(self.experiments):
            for (j, endpoint), load in itertools.product(enumerate(exp.endpoints), exp.loads):
                yield i, j, [
                    Cell(name, workers, variant, exp, endpoint, load, repeat, varying[name],
                         self.lab.repeats > 1, threads)
                    for name, workers, variant, threads in self._configurations()
                ]

    def only(self, servers: set[str] | None = None, workers: set[int] | None = None,
             experiments: set[str] | None = None) -> "Matrix":
        """The subset the CLI filters ask for; an empty result is an error."""
        for wanted, known, what in (
            (servers, {s.name for s in self.servers}, "--server"),
            (experiments, {e.name for e in self.experiments}, "--experiment"),
        ):
            unknown = (wanted or set()) - known
            if unknown:
                raise ConfigError(what, f"{', '.join(sorted(unknown))} not in the config "
                                        f"(it has {', '.join(sorted(known))})")
        specs = []
        for s in self.servers:
            if servers and s.name not in servers:
                continue
            ws = tuple(w for w in s.workers if not workers or w in workers)
            if ws:
                specs.append(ServerSpec(s.name, ws, s.options))
        exps = tuple(e for e in self.experiments if not experiments or e.name in experiments)
        if not specs:
            raise ConfigError("--workers", "no server configuration left after filtering")
        return Matrix(self.lab, tuple(specs), exps, self.services)


# ---- parsing ---------------------------------------------------------------------------

def _table(value: Any, path: str, allowed: AbstractSet[str],
           required: AbstractSet[str] = frozenset()) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(path, f"must be a table, got {type(value).__name__}")
    for key in value:
        if key not in allowed:
            raise ConfigError(_join(path, key),
                              f"unknown key (allowed: {', '.join(sorted(allowed))})")
    for key in sorted(required - value.keys()):
        raise ConfigError(_join(path, key), "is required")
    return value


def _open_table(value: Any, path: str) -> dict:
    """A table whose keys are names the user chooses (servers, params)."""
    return _table(value, path, set(value) if isinstance(value, dict) else set())


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _number(value: Any, path: str, minimum: float, integer: bool = False,
            strict: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ConfigError(path, f"must be {'an integer' if integer else 'a number'}, "
                                f"got {value!r}")
    _finite(value, path)
    if value < minimum or (strict and value == minimum):
        raise ConfigError(path, f"must be {'>' if strict else '≥'} {minimum}, got {value}")
    return value


def _finite(value: Any, path: str) -> None:
    """TOML has nan and inf: no duration, timeout or rate of the lab means anything with them
    (and every comparison with nan is false, so it would slip past each bound)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(path, f"must be a finite number, got {value}")


def _list(value: Any, path: str) -> list:
    """A list axis; a bare scalar is a list of one."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(path, "must not be empty")
    if len(set(map(repr, items))) != len(items):
        raise ConfigError(path, f"has duplicate values: {items!r}")
    return items


def _boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {value!r}")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(path, f"must be a non-empty string, got {value!r}")
    return value


def _endpoint(value: Any, path: str) -> str:
    e = _string(value, path)
    if not e.startswith("/") or "?" in e:
        raise ConfigError(path, f"must be a path starting with '/' (query goes in params), "
                                f"got {_shown(e)}")
    if "#" in e:  # every engine drops a fragment, while results would name it
        raise ConfigError(path, f"must not contain '#': a fragment is never sent to the "
                                f"server (write %23 for the character), got {_shown(e)}")
    if any(unicodedata.category(c) == "Cc" for c in e):
        raise ConfigError(path, f"must not contain control characters, got {_shown(e)}")
    return e


def _status(value: Any, path: str) -> int:
    status = _number(value, path, 100, integer=True)
    if status > 599:
        raise ConfigError(path, f"must be an HTTP status (100–599), got {status}")
    return int(status)


# Not HEAD: wrk reads a HEAD answer's announced body and waits for it until its timeout.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ENDPOINT_KEYS = {"path", "method", "query", "headers", "json", "body", "status", "expect",
                 "name"}


def _endpoint_spec(value: Any, path: str) -> Endpoint:
    """A path string (GET, any 2xx) or a table describing the request and its check."""
    if isinstance(value, str):
        return Endpoint(_endpoint(value, path))
    t = _table(value, path, ENDPOINT_KEYS, {"path"})
    method = _choice(str(t.get("method", "GET")).upper(), f"{path}.method", METHODS)
    query = tuple((k, _query_value(v, f"{path}.query.{k}"))
                  for k, v in _open_table(t.get("query", {}), f"{path}.query").items())
    headers = tuple((_header_name(k, f"{path}.headers"), _header_value(v, f"{path}.headers.{k}"))
                    for k, v in _open_table(t.get("headers", {}), f"{path}.headers").items())
    if "json" in t and "body" in t:
        raise ConfigError(f"{path}.body", "give either json or body, not both")
    body: bytes | None = None
    if "json" in t:
        _no_nan(t["json"], f"{path}.json")
        body = json.dumps(t["json"], separators=(",", ":")).encode()
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers += (("content-type", "application/json"),)
    elif "body" in t:
        if not isinstance(t["body"], str):
            raise ConfigError(f"{path}.body", f"must be a string, got {t['body']!r}")
        body = t["body"].encode()
    expect = _table(t.get("expect", {}), f"{path}.expect", {"contains", "json"})
    contains = _string(expect["contains"], f"{path}.expect.contains") \
        if "contains" in expect else None
    json_subset = None
    if "json" in expect:
        _no_nan(expect["json"], f"{path}.expect.json")
        json_subset = json.dumps(expect["json"], sort_keys=True)
    name = None
    if "name" in t:
        name = _string(t["name"], f"{path}.name")
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{path}.name", f"must be letters, digits, - or _, got {name!r}")
    return Endpoint(
        path=_endpoint(t["path"], f"{path}.path"), method=method, query=query,
        headers=headers, body=body,
        status=_status(t["status"], f"{path}.status") if "status" in t else None,
        contains=contains, json_subset=json_subset, name=name)


def _query_value(value: Any, path: str) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | float):
        _finite(value, path)
        return str(value)
    raise ConfigError(path, f"must be a string, number or boolean, got "
                            f"{type(value).__name__} {value}")


# The engines write these themselves: a second length or framing breaks each its own way
# (a 400, or httpx refusing to send).
FRAMING_HEADERS = ("content-length", "transfer-encoding")


def _header_name(name: str, path: str) -> str:
    if not name or not all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~")
                           for c in name):
        raise ConfigError(path, f"{name!r} is not a valid header name")
    if name.lower() in FRAMING_HEADERS:
        raise ConfigError(_join(path, name), "is set by the lab from the body; leave it out")
    return name


def _header_value(value: Any, path: str) -> str:
    """Printable ASCII, as RFC 9110 field values are in practice: httpx refuses anything
    else while aiohttp and wrk send UTF-8, and CR LF would inject a header."""
    if not isinstance(value, str) or not all(" " <= c <= "~" for c in value):
        raise ConfigError(path, f"must be printable ASCII (no control characters, no "
                                f"non-ASCII letters), got {value!r}")
    if value != value.strip(" "):  # h11 (httpx) refuses it, the others send it
        raise ConfigError(path, f"must not start or end with a space, got {value!r}")
    return value


def _no_nan(value: Any, path: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _no_nan(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_nan(v, f"{path}[{i}]")
    elif isinstance(value, float):
        _finite(value, path)
    elif not isinstance(value, str | int | bool):  # TOML dates and times: not JSON
        raise ConfigError(path, f"must be JSON (string, number, boolean, table, array), "
                                f"got {value!r}")


def _shown(text: str, limit: int = 60) -> str:
    """A value for a one-line error: escaped, and cut if long."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} characters)"


# Kind-specific settings: each parses and checks its value.
SETTINGS: dict[str, Callable[[Any, str], Any]] = {
    "duration_s": lambda v, p: float(_number(v, p, 0, strict=True)),
    "warmup_s": lambda v, p: float(_number(v, p, 0)),
    "clients": lambda v, p: _number(v, p, 1, integer=True),
    "max_connections": lambda v, p: _number(v, p, 1, integer=True),
    "slo_p99_ms": lambda v, p: float(_number(v, p, 0, strict=True)),
    "knee_window_s": lambda v, p: float(_number(v, p, 0, strict=True)),
    "knee_max_rps": lambda v, p: _number(v, p, 1, integer=True),
    "probe": _endpoint_spec,
    "probes": lambda v, p: _number(v, p, 1, integer=True),
    "probe_interval_s": lambda v, p: float(_number(v, p, 0)),
    "settle_s": lambda v, p: float(_number(v, p, 0)),
    "connect": lambda v, p: _choice(v, p, CONNECT),
    "probe_connect": lambda v, p: _choice(v, p, CONNECT),
    "connection": lambda v, p: _choice(v, p, CONNECTION),
    "http": lambda v, p: _choice(v, p, HTTP),
    "streams": lambda v, p: _at_most(_number(v, p, 1, integer=True), p, MAX_STREAMS),
    "messages": lambda v, p: _number(v, p, 1, integer=True),
    "message_bytes": lambda v, p: _at_most(_number(v, p, 1, integer=True), p,
                                           MAX_MESSAGE_BYTES),
    "rounds": lambda v, p: _number(v, p, 1, integer=True),
    "responses": lambda v, p: _number(v, p, 1, integer=True),
    "paced_ms": lambda v, p: float(_number(v, p, 0)),
}


def _at_most(value: int, path: str, limit: int) -> int:
    if value > limit:
        raise ConfigError(path, f"must be ≤ {limit}, got {value}")
    return value


def _parse_lab(raw: Any, allow_non_loopback: bool, base_dir: Path | None,
               override: Override) -> LabSettings:
    t = _table(raw, "lab", {"app", "app_dir", "wrap", "loop_meter", "ready_path",
                            "ready_status", "repeats", "host", "start_timeout_s",
                            "stop_grace_s", "cell_timeout_s", "order", "seed", "baseline",
                            "server_cpus", "client_cpus", "restart", "threads",
                            "scheduler", "lease_s", "start_spread", "tls"})
    d = LabSettings()
    app = _string(t.get("app", d.app), "lab.app")
    module, _, attr = app.partition(":")
    if not all(part.isidentifier() for part in [*module.split("."), *attr.split(".")]):
        raise ConfigError("lab.app", f"must be 'module:attribute', got {app!r}")
    wrap = t.get("wrap", d.wrap)
    if not isinstance(wrap, bool):
        raise ConfigError("lab.wrap", f"must be true or false, got {wrap!r}")
    loop_meter = _boolean(t.get("loop_meter", d.loop_meter), "lab.loop_meter")
    if loop_meter and not wrap:
        raise ConfigError("lab.loop_meter", "needs lab.wrap = true: the wrapper meters the "
                                            "loop inside each worker")
    threads = _threads(t["threads"]) if "threads" in t else d.threads
    if threads and not wrap:
        raise ConfigError("lab.threads", "needs lab.wrap = true: the wrapper sets the thread "
                                         "limiter inside each worker")
    host = _string(t.get("host", d.host), "lab.host")
    if not allow_non_loopback and not is_loopback(host):
        raise ConfigError("lab.host", f"{host!r} is not a loopback address; the lab only "
                                      "loads 127.0.0.1, localhost or ::1 unless "
                                      "--allow-non-loopback is given")
    host = bind_address(host)
    return LabSettings(
        app=app,
        app_dir=_app_dir(t["app_dir"], base_dir) if "app_dir" in t else None,
        wrap=wrap,
        loop_meter=loop_meter,
        ready_path=_endpoint(t.get("ready_path", d.ready_path), "lab.ready_path"),
        ready_status=_status(t.get("ready_status", d.ready_status), "lab.ready_status"),
        repeats=_number(t.get("repeats", d.repeats), "lab.repeats", 1, integer=True),
        host=host,
        start_timeout_s=_number(t.get("start_timeout_s", d.start_timeout_s),
                                "lab.start_timeout_s", 0, strict=True),
        stop_grace_s=_number(t.get("stop_grace_s", d.stop_grace_s), "lab.stop_grace_s", 0,
                             strict=True),
        cell_timeout_s=_number(t.get("cell_timeout_s", d.cell_timeout_s),
                               "lab.cell_timeout_s", 0, strict=True),
        order=_choice(t.get("order", d.order), "lab.order", ("interleaved", "shuffled")),
        seed=_number(t.get("seed", d.seed), "lab.seed", 0, integer=True),
        baseline=_string(t["baseline"], "lab.baseline") if "baseline" in t else None,
        placement=_placement(t),
        restart=_choice(t.get("restart", d.restart), "lab.restart", ("configuration", "cell")),
        threads=threads,
        remote=_remote(t, base_dir or Path.cwd(), override),
    )


def _remote(t: Mapping[str, Any], base_dir: Path, override: Override) -> Remote | None:
    """lab.scheduler, lab.lease_s, lab.start_spread and [lab.tls], each replaced by its
    command-line flag when given; None without a scheduler."""
    scheduler, where = ((override.scheduler, "--scheduler") if override.scheduler is not None
                        else (t.get("scheduler"), "lab.scheduler"))
    if scheduler is None:
        needing = [f"lab.{k}" for k in ("lease_s", "start_spread", "tls") if k in t]
        needing += [flag for flag, _ in override.files().values()]
        if needing:
            raise ConfigError(needing[0], "needs lab.scheduler (or --scheduler): without a "
                                          "scheduler everything runs on this machine")
        return None
    files = {k: tls_file(_string(v, f"lab.tls.{k}"), f"lab.tls.{k}", base_dir)
             for k, v in _table(t.get("tls", {}), "lab.tls", set(TLS_KEYS)).items()}
    files |= {k: tls_file(path, flag, Path.cwd()) for k, (flag, path) in override.files().items()}
    scheduler = _string(scheduler, where)
    tls = tls_of(files, {k: f"lab.tls.{k}" if "tls" in t else flag
                         for k, flag in zip(TLS_KEYS, FLAGS, strict=True)})
    check(scheduler, tls, where)
    for key in ("server_cpus", "client_cpus"):
        if key in t:
            raise ConfigError(f"lab.{key}", "not with a scheduler: each side has every CPU of "
                                            "its host (pin a dask worker with taskset instead)")
    d = Remote(scheduler)
    spread = _number(t.get("start_spread", d.start_spread), "lab.start_spread", 0)
    if spread > 1:
        raise ConfigError("lab.start_spread", f"must be a fraction of the window, 0 to 1, "
                                              f"got {spread}")
    return Remote(scheduler, tls,
                  lease_s=float(_number(t.get("lease_s", d.lease_s), "lab.lease_s", 0,
                                        strict=True)),
                  start_spread=float(spread))


def _threads(value: Any) -> tuple[int, ...]:
    """lab.threads: distinct token counts of the thread limiter, 1 to MAX_THREADS each."""
    values = _list(value, "lab.threads")
    out = []
    for i, v in enumerate(values):
        path = f"lab.threads[{i}]" if isinstance(value, list) else "lab.threads"
        n = _number(v, path, 1, integer=True)
        if n > MAX_THREADS:
            raise ConfigError(path, f"must be ≤ {MAX_THREADS}, got {n}")
        out.append(int(n))
    return tuple(out)


def _app_dir(value: Any, base_dir: Path | None) -> str:
    """The app's folder, relative to the config file's; it must exist."""
    path = Path(_string(value, "lab.app_dir")).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    path = path.resolve()
    if not path.is_dir():
        raise ConfigError("lab.app_dir", f"no such folder: {path}"
                          + ("" if path.is_absolute() and value.startswith(("/", "~"))
                             else " (relative to the config file's folder)"))
    return str(path)


def _placement(t: Mapping[str, Any]) -> Placement:
    """Both cpusets, or neither (the default for this machine's cores)."""
    usable = usable_cpus()
    given = [k for k in ("server_cpus", "client_cpus") if k in t]
    if not given:
        return Placement.default(usable)
    if len(given) == 1:
        other = ({"server_cpus", "client_cpus"} - set(given)).pop()
        raise ConfigError(f"lab.{other}", f"is required when lab.{given[0]} is set")
    return Placement(parse_cpuset(t["server_cpus"], "lab.server_cpus", usable),
                     parse_cpuset(t["client_cpus"], "lab.client_cpus", usable))


def _choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(path, f"must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def bind_address(host: str) -> str:
    """What servers are given to bind: granian refuses "localhost", all refuse "[::1]"."""
    return "127.0.0.1" if host == "localhost" else host.strip("[]")


def _parse_server(name: str, raw: Any) -> ServerSpec:
    path = f"servers.{name}"
    if name not in ADAPTERS:
        raise ConfigError(path, f"unknown server (known: {', '.join(sorted(ADAPTERS))})")
    if isinstance(raw, dict) and "threads" in raw:  # the thread limiter is every server's
        raise ConfigError(f"{path}.threads", "unknown key (allowed: options, workers); the "
                                             "thread limiter's size is lab.threads, an axis "
                                             "of every server")
    t = _table(raw, path, {"workers", "options"}, {"workers"})
    workers = tuple(_number(w, f"{path}.workers[{i}]", 1, integer=True)
                    for i, w in enumerate(_list(t["workers"], f"{path}.workers")))
    known = ADAPTERS[name].options
    options: dict[str, tuple[OptionValue, ...]] = {}
    for key, value in _table(t.get("options", {}), f"{path}.options", set(known)).items():
        opath = f"{path}.options.{key}"
        values = _list(value, opath)
        for i, v in enumerate(values):
            problem = known[key].problem(v)
            if problem:
                raise ConfigError(opath if len(values) == 1 and not isinstance(value, list)
                                  else f"{opath}[{i}]", problem)
        options[key] = tuple(values)
    return ServerSpec(name, workers, options)


def _parse_experiment(i: int, raw: Any) -> list[Experiment]:
    path = f"experiments[{i}]"
    common = {"name", "kind", "endpoints", "params", "engine", "timeout_s", "ways"}
    kind = _open_table(raw, path).get("kind")
    if kind is None:
        raise ConfigError(f"{path}.kind", f"is required (one of: {', '.join(kinds())})")
    if not isinstance(kind, str) or kind not in kinds():
        raise ConfigError(f"{path}.kind", f"unknown experiment kind {kind!r} "
                                          f"(known: {', '.join(kinds())})")
    schema = get(kind)
    if "connection" in raw and "connect" in schema.settings:
        raise ConfigError(f"{path}.connection", f"a {kind} has a connection per request "
                          'already: connect = "cold" opens each inside the window')
    if "http" in raw and "http" not in schema.settings:
        raise ConfigError(f"{path}.http", f"the {kind} kind speaks HTTP/1.1 only: "
                          + NO_HTTP2.get(kind, "its engines have no HTTP/2"))
    t = _table(raw, path, common | {schema.load_key} | set(schema.settings),
               {"name", "endpoints", schema.load_key})
    name = _string(t["name"], f"{path}.name")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"{path}.name", f"must be letters, digits, - or _, got {name!r}")
    endpoints = tuple(_endpoint_spec(e, f"{path}.endpoints[{j}]")
                      for j, e in enumerate(_list(t["endpoints"], f"{path}.endpoints")))
    if schema.searchable and t[schema.load_key] == "auto":
        if "slo_p99_ms" not in t:
            raise ConfigError(f"{path}.{schema.load_key}", '"auto" searches for the highest '
                              "rate within slo_p99_ms: set slo_p99_ms too")
        loads: tuple[int, ...] = (AUTO,)
    else:
        loads = tuple(_number(n, f"{path}.{schema.load_key}[{j}]", 1, integer=True)
                      for j, n in enumerate(_list(t[schema.load_key],
                                                  f"{path}.{schema.load_key}")))
    params = _open_table(t.get("params", {}), f"{path}.params")
    for key, value in params.items():
        if isinstance(value, list | dict):
            raise ConfigError(f"{path}.params.{key}", "must be a single value "
                              "(add another experiment for another value)")
        if key in ("delay", "n"):
            _number(value, f"{path}.params.{key}", 0)
        _query_value(value, f"{path}.params.{key}")  # a TOML date or time is neither
    engine = _choice(t.get("engine", schema.default_engine), f"{path}.engine", schema.engines)
    extra = {k: SETTINGS[k](t[k], f"{path}.{k}") for k in schema.settings
             if k in t and k not in AXIS_SETTINGS}
    exp = Experiment(
        name=name, kind=kind, endpoints=endpoints, loads=loads, params=dict(params),
        engine=engine,
        timeout_s=float(_number(t.get("timeout_s", 60.0), f"{path}.timeout_s", 0, strict=True)),
        ways=_boolean(t.get("ways", False), f"{path}.ways"),
        **extra,
    )
    axes = [a for a in AXES if a.key in schema.settings and a.key in t]
    values = {a.key: _axis_values(t[a.key], f"{path}.{a.key}", a.key) for a in axes}
    _check_protocol(path, exp, values)
    out: dict[str, Experiment] = {}
    for combo in itertools.product(*values.values()):
        chosen = dict(zip(values, combo, strict=True))
        h1 = chosen.get("http", exp.http) == "1.1"
        if h1 and "streams" in chosen:
            chosen["streams"] = 1  # HTTP/1.1 is one stream per connection, whatever streams
        # Named by each axis with several values that applies to it, in AXES order, as
        # `closed-h2-s10`; an experiment with none of them keeps its own name.
        parts = [a.label(chosen[a.key]) for a in axes if len(values[a.key]) > 1
                 and not (h1 and a.key == "streams")]
        e = replace(exp, **chosen, name="-".join([name, *parts]))
        out.setdefault(e.name, e)
    return list(out.values())


def _axis_values(raw: Any, path: str, key: str) -> list[Any]:
    return [SETTINGS[key](v, f"{path}[{j}]" if isinstance(raw, list) else path)
            for j, v in enumerate(_list(raw, path))]


def _check_protocol(path: str, exp: Experiment, values: Mapping[str, list[Any]]) -> None:
    """HTTP/2 needs an engine that speaks it and keeps its connections; streams > 1 need
    HTTP/2 among the protocols."""
    http = values.get("http", [exp.http])
    if "2" in http and exp.engine not in H2_ENGINES:
        raise ConfigError(f"{path}.engine", f"{exp.engine} does not speak HTTP/2: with "
                          'http = "2" use engine = "auto" or "h2load"')
    if "2" in http and exp.clients > 1:
        raise ConfigError(f"{path}.clients", "clients = k splits users over k Python client "
                          'processes; http = "2" runs on h2load, one process whose threads '
                          "take the client's cores")
    if "2" in http and "close" in values.get("connection", [exp.connection]):
        raise ConfigError(f"{path}.connection", 'HTTP/2 has no "Connection: close" (the '
                          "header is forbidden there, and h2load keeps its connections): "
                          'measure connection = "close" with http = "1.1"')
    if "2" not in http and max(values.get("streams", [1])) > 1:
        raise ConfigError(f"{path}.streams", 'streams > 1 needs http = "2": HTTP/1.1 has no '
                          "multiplexing (and wrk does not pipeline)")


def _parse_service(name: str, raw: Any) -> Service:
    path = f"services.{name}"
    t = _table(raw, path, {"app", "url_env", "server"}, {"app", "url_env"})
    app = _string(t["app"], f"{path}.app")
    if ":" not in app:
        raise ConfigError(f"{path}.app", f"must be 'module:attribute', got {app!r}")
    env = _string(t["url_env"], f"{path}.url_env")
    if not env.replace("_", "").isalnum() or not env[0].isalpha():
        raise ConfigError(f"{path}.url_env", f"must be an environment variable name, got {env!r}")
    server = _choice(t.get("server", "uvicorn"), f"{path}.server", tuple(sorted(ADAPTERS)))
    return Service(name, app, env, server)


def parse(raw: Mapping[str, Any], allow_non_loopback: bool = False,
          base_dir: Path | None = None, override: Override = NO_OVERRIDE) -> Matrix:
    """``base_dir``: the config file's folder, which ``lab.app_dir`` is relative to;
    ``override``: the command line's scheduler and TLS files."""
    t = _table(raw, "", {"lab", "servers", "experiments", "services"},
               {"servers", "experiments"})
    lab = _parse_lab(t.get("lab", {}), allow_non_loopback, base_dir, override)
    servers_raw = _open_table(t["servers"], "servers")
    if not servers_raw:
        raise ConfigError("servers", "must name at least one server")
    servers = tuple(_parse_server(name, value) for name, value in servers_raw.items())
    if not isinstance(t["experiments"], list) or not t["experiments"]:
        raise ConfigError("experiments", "must be a non-empty array of tables ([[experiments]])")
    ready = Endpoint(lab.ready_path, status=lab.ready_status)
    experiments = tuple(replace(e, ready=ready, wrapped=lab.wrap)
                        for i, raw_exp in enumerate(t["experiments"])
                        for e in _parse_experiment(i, raw_exp))
    seen: dict[str, int] = {}
    for i, e in enumerate(experiments):
        if e.name in seen:
            raise ConfigError(f"experiments[{i}].name",
                              f"duplicate name {e.name!r} (also experiments[{seen[e.name]}])")
        seen[e.name] = i
    services = tuple(_parse_service(name, value)
                     for name, value in _open_table(t.get("services", {}), "services").items())
    matrix = Matrix(lab, servers, experiments, services)
    _check_size(matrix)
    last = list(matrix.points(lab.repeats))  # the longest ids: the largest repeat suffix
    _check_ids(last)
    if lab.baseline and lab.baseline not in {c.server_id for c in last[0][2]}:
        raise ConfigError("lab.baseline", f"{lab.baseline!r} is not a configuration of this "
                                          f"matrix (e.g. {last[0][2][0].server_id!r})")
    return matrix


def _check_size(matrix: Matrix) -> None:
    """Refuse a matrix too big to run before building any of its cells."""
    n = matrix.size()
    if n <= MAX_CELLS:
        return
    threads = len(matrix._threads())
    factors = {"lab.repeats": matrix.lab.repeats,
               "servers": matrix._configuration_count() // threads, "lab.threads": threads,
               "experiments": matrix._point_count()}
    raise ConfigError(max(factors, key=lambda k: factors[k]),
                      f"the matrix has {n:,} cells (repeats × server configurations × "
                      f"endpoints × loads), more than {MAX_CELLS:,}; split it into smaller "
                      "configs")


def _check_ids(points: list[tuple[int, int, list[Cell]]]) -> None:
    """Each cell id names one cell and one log file: refuse ids that collide (``/hello`` and
    ``/hello/``, ``/a/b`` and ``/a_b``) or that make the log file name too long."""
    seen: dict[str, str] = {}
    for i, j, cells in points:
        path = f"experiments[{i}].endpoints[{j}]"
        for cell in cells:
            cid = cell.id
            size = len(f"{cid}.log".encode())
            if size > FILE_NAME_BYTES:
                raise ConfigError(path, f"too long: its cell id {_shown(cid)} makes a log "
                                        f"file name of {size} bytes, more than "
                                        f"{FILE_NAME_BYTES}; shorten the endpoint or the "
                                        "experiment's name")
            if cid in seen:
                other = seen[cid]
                where = f"servers.{cell.server}.options" if other == path else path
                raise ConfigError(where, f"{_shown(cell.endpoint.label)} gives the same cell "
                                         f"id {_shown(cid)} as {other}; cell ids name "
                                         "results and logs, so they must differ (an "
                                         "endpoint table may set a name)")
            seen[cid] = path


def load(path: Path, allow_non_loopback: bool = False, base_dir: Path | None = None,
         override: Override = NO_OVERRIDE) -> Matrix:
    """``base_dir``: what ``lab.app_dir`` is relative to (default: the file's folder);
    ``override``: the command line's scheduler and TLS files."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not TOML
    except FileNotFoundError:
        raise ConfigError(str(path), "no such config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), f"cannot read: {e}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), f"not valid TOML: {e}") from None
    return parse(raw, allow_non_loopback, base_dir or path.resolve().parent, override)
