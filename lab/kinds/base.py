"""What an experiment kind is: one object with everything each layer asks of it.

The config reads its settings, engines and load axis; the runner, its load runner and
estimate; the report, its headline, its table columns and its charts. The parts that live in
those layers are named by import path, as uvicorn's ``HTTP_PROTOCOLS`` name their classes,
and imported on first use: those layers look kinds up here (no import cycle), and a command
that only reads a config does not import the HTTP clients (≈ 0.5 s) or matplotlib.
"""

import importlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from lab.load.samples import Measurement

if TYPE_CHECKING:  # named for the type checker only: these modules import lab.kinds
    from lab.matrix.config import Cell
    from lab.report.charts import Chart, Styles
    from lab.report.model import ComparisonFacts
    from lab.report.tables import Column
    from lab.store.schema import Figures

# (base_url, exp, endpoint, load, window[, begin]) → the cell's raw samples
Runner = Callable[..., Coroutine[Any, Any, Measurement]]
Columns = Callable[["ComparisonFacts"], list["Column"]]  # a comparison → its own columns
# (experiment, its comparisons, styles, folder) → its charts (None: nothing worth drawing)
Charts = Callable[[str, list["ComparisonFacts"], "Styles", Path], list["Chart | None"]]


class Fact(Enum):
    """What the report may state of a kind's rows, besides its headline's verdicts."""

    THROUGHPUT = "throughput"  # its headline is the server's rate: "Which server?"
    SCALING = "scaling"  # its rate at more workers against one: "How many workers?"
    SERIALISED = "serialised"  # N requests with a delay ran one after another, or at once
    PROBE_EFFECT = "probe effect"  # the probe stalled, slowed or stayed as fast as idle
    KNEES = "knees"  # fixed rates with an SLO: the highest rate that held it


@dataclass(frozen=True)
class Headline:
    """The one figure a kind's rows are ranked by."""

    name: str  # as a column header: "req/s"
    get: "Callable[[Figures], float | None]"
    higher_is_better: bool


def ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f} ms"


def rate(f: "Figures") -> str:
    """A window's rate: a progress line's main figure unless a kind says another."""
    return f"{f.rps:.0f} req/s,"


@dataclass(frozen=True)
class Kind:
    """One experiment kind (see `lab.kinds` for the built-in ones and `register`)."""

    name: str  # as the config's ``kind`` names it
    help: str  # one line for ``lab validate`` and the report's experiment heading
    load_key: str  # the list axis: "requests" for burst, "users" for closed, ...
    letter: str  # the axis in the cell id: n50, c64, rps200, bg10
    settings: tuple[str, ...]  # which of `lab.matrix.config.SETTINGS` the kind accepts
    engines: tuple[str, ...]  # the load generators it can run with
    default_engine: str
    headline: Headline
    estimate_s: "Callable[[Cell], float]"  # the cell's own time (`lab.run.estimate`)
    run_at: str  # "module:function": a `Runner`
    columns_at: str  # "module:function": `Columns`
    charts_at: str  # "module:function": `Charts`
    # How ``clients = k`` processes share the load: users in whole numbers, a rate exactly;
    # None: one client process only.
    split: Literal["users", "rate"] | None = None
    searched_headline: Headline | None = None  # the axis may be "auto": the highest load
    # within slo_p99_ms is searched for, and is then the headline
    lasts_as_endpoint: bool = False  # its time is the endpoint's (an estimate's floor)
    in_short: int = 99  # the report's headline chart is of the lowest kind that has one
    facts: frozenset[Fact] = frozenset()
    # The main figure a progress line states, before the p50, errors and client CPU.
    progress: "Callable[[Figures], str]" = rate
    # Its endpoints answer an HTTP request (the run's first start asks each one,
    # ``lab.supervise.appcheck``); a WebSocket route does not.
    http_endpoints: bool = True
    note: str = ""  # what the report says under each of its experiments' headings

    def __post_init__(self) -> None:
        if ("clients" in self.settings) != (self.split is not None):
            raise ValueError(f"kind {self.name!r}: the clients setting needs a split, and a "
                             "split the clients setting")
        if self.default_engine not in self.engines:
            raise ValueError(f"kind {self.name!r}: default engine {self.default_engine!r} "
                             "is not one of its engines")

    @property
    def searchable(self) -> bool:
        return self.searched_headline is not None

    @property
    def runner(self) -> Runner:
        return cast(Runner, resolve(self.run_at))

    @property
    def columns(self) -> Columns:
        return cast(Columns, resolve(self.columns_at))

    @property
    def charts(self) -> Charts:
        return cast(Charts, resolve(self.charts_at))


def resolve(path: str) -> object:
    """"module:attribute" → the attribute, its module imported now (once)."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
