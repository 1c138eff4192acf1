"""Markdown tables of a comparison: a main table a person reads — the headline with its
range, relative to the baseline, the verdict and the few figures that explain it — and the
rest (latency beyond p99, errors by kind, per-worker split, CPU, memory, engine) in a
collapsed detail table under it."""

import math
from collections.abc import Callable
from dataclasses import dataclass

from tabulate import tabulate

from lab.kinds import get
from lab.report.fmt import fmt, fmt_spread, pct, peaks, rate, split
from lab.report.groups import Comparison, Getter, Row
from lab.report.keepalive import CLOSE, connections_per_worker, opens_per_request
from lab.report.model import ComparisonFacts, Flag, RowFacts
from lab.store.schema import NOT_SERVED


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[RowFacts], str]
    main: bool = False  # in the main table; else in the detail table
    always: bool = False  # filled in for a row without a headline figure too


def errors(row: Row) -> str:
    counts = row.errors()
    if not counts:
        return "0"
    return f"{sum(counts.values())} (" + ", ".join(f"{k} {n}" for k, n in counts.items()) + ")"


def client_cpu(row: RowFacts) -> str:
    """The client's CPU % (typical repeat), with the limits it hit: every kind's column."""
    typical = row.typical()
    limits = [f" ⚠ {f.value}" for f in row.limit_flags]
    return fmt(typical.client_cpu_pct if typical else None, 2) + "".join(limits)


def _median(get: Getter, digits: int = 3) -> Callable[[Row], str]:
    def cell(row: Row) -> str:
        s = row.spread(get)
        return fmt(s.median if s else None, digits)
    return cell


def _resources() -> list[Column]:
    return [Column("server cores used", _median(lambda f: f.server_cores_used)),
            Column("req/s per server core", _median(lambda f: f.rps_per_server_core, 4)),
            Column("peak RSS MB", _median(lambda f: f.server_peak_rss_mb))]


def _latency(*keys: str) -> list[Column]:
    def column(key: str) -> Column:
        return Column(f"{key} ms", lambda r: pct(r.latency(), key))
    return [column(k) for k in keys]


def _spread_ms(row: Row) -> str:
    worst = max((f.burst.send_spread_ms for f in row.ok
                 if f.burst and f.burst.send_spread_ms is not None),
                default=None)
    return fmt(worst, 2)


def burst_columns(comp: Comparison) -> list[Column]:
    def estimate(row: Row) -> str:
        s = row.spread()
        return fmt(comp.n * comp.delay / s.median, 2) if s and comp.delay else "–"

    return [Column("peak in flight per worker", peaks, main=True),
            Column("errors", lambda r: str(sum(r.errors().values())), main=True),
            Column("send spread ms (max)", _spread_ms, main=True),
            *([Column("N·delay/wall (an estimate)", estimate)] if comp.delay else []),
            *_latency("p50", "p99", "max"), Column("errors by kind", errors),
            Column("requests per worker", split),
            Column("client CPU %", client_cpu)]


def _scaling(row: RowFacts) -> str:
    x = row.scaling
    return "–" if x is None else f"{x.ratio:.2f}× ({100 * x.efficiency:.0f} % eff.)"


def _connections(comp: Comparison) -> list[Column]:
    """New connections per request (the kernel's count: a main column where each request
    should have its own), and over keep-alive the connections each worker served (with a
    connection per request, the requests per worker are its connections). Results of runs
    before these were counted have neither."""
    if not any(f.tcp_opens is not None for row in comp.rows for f in row.ok):
        return []

    def per_request(row: Row) -> str:
        s = row.spread(opens_per_request)
        return "–" if s is None else f"{s.median:.2f}"

    if comp.load.get("connection") == CLOSE:
        return [Column("connections per request", per_request, main=True)]
    return [Column("connections per request", per_request),
            Column("connections per worker", connections_per_worker)]


def _spoken(row: Row) -> str:
    """The protocol h2load reports its connections spoke, flagged where it is not the one
    the cell asked for (an h2 cell answered in HTTP/1.1)."""
    spoken = sorted({f.h2load.protocol or "none" for f in row.ok if f.h2load})
    asked = {r.load.get("http", "1.1") for r in row.results}
    wrong = any(p != ("h2c" if a == "2" else "http/1.1") for p in spoken for a in asked)
    return ", ".join(spoken) + (f" ⚠ not the HTTP {'/'.join(sorted(asked))} asked"
                                if wrong else "")


def _h2load(comp: Comparison) -> bool:
    return any(r.engine == "h2load" for row in comp.rows for r in row.results)


def closed_columns(comp: Comparison) -> list[Column]:
    spoken = [Column("spoken", _spoken, main=True)] if _h2load(comp) else []
    return [*spoken, Column("error rate", lambda r: rate(r.error_rate()), main=True),
            Column("scaling vs 1 worker", _scaling, main=True),
            Column("p99 ms", lambda r: pct(r.latency(), "p99"), main=True),
            *_latency("p50", "p99.9"), Column("errors by kind", errors),
            Column("requests per worker", split), *_connections(comp), *_resources()[:2],
            Column("engine", lambda r: ", ".join(sorted(r.engines))),
            Column("client CPU %", client_cpu), _resources()[2]]


def open_columns(comp: Comparison) -> list[Column]:
    def lag(row: RowFacts) -> str:
        worst = max((f.open.send_lag_p99_ms for f in row.ok
                     if f.open and f.open.send_lag_p99_ms is not None),
                    default=None)
        return fmt(worst, 2) + (" ⚠ client behind schedule"
                                if Flag.CLIENT_BEHIND in row.flags else "")

    knee = [Column("knee found", _bound, main=True),
            Column("probes", lambda r: "/".join(str(len(f.knee.knee_probes) if f.knee else 0)
                                                 for f in r.ok))
            ] if comp.searched else []
    return [*knee,
            Column("achieved req/s", lambda r: fmt_spread(r.spread(lambda f: f.rps), 4),
                   main=True),
            Column("error rate", lambda r: rate(r.error_rate()), main=True),
            *_latency("p50", "p99.9", "max"), Column("errors by kind", errors),
            Column("client send lag p99 ms", lag), Column("client CPU %", client_cpu),
            *_connections(comp), *_resources()]


BOUND_TEXT = {"found": "yes", "client": "lower bound: the client could send no faster",
              "max": "lower bound: knee_max_rps held", "unconfirmed": "no: failed to confirm",
              "below": "no rate held"}


def _bound(row: RowFacts) -> str:
    return ", ".join(sorted({BOUND_TEXT.get(b or "", "?") for b in row.knee_bounds}))


def interference_columns(comp: Comparison) -> list[Column]:
    def idle(row: Row) -> str:
        return fmt_spread(row.spread(lambda f: f.idle_ms("p50")))

    def times(row: Row) -> str:
        s, i = row.spread(), row.spread(lambda f: f.idle_ms("p50"))
        return f"{s.median / i.median:.0f}×" if s and i and i.median else "–"

    return [Column("probe p50 ms (idle)", idle, main=True),
            Column("× idle", times, main=True),
            Column("errors", lambda r: str(sum(r.errors().values())), main=True),
            *_latency("p90", "max"), Column("errors by kind", errors),
            Column("background requests",
                   lambda r: str(sum(f.interference.background_requests for f in r.ok
                                     if f.interference)))]


def _verdict(row: RowFacts) -> str:
    assert row.verdict is not None
    used, ran = len(row.values()), len(row.results)
    found = row.flags
    notes = ([f"{used} of {ran} repeats ok"] if Flag.MISSING_REPEATS in found else []) \
        + (["⚠ client behind schedule"] if Flag.CLIENT_BEHIND in found else [])
    return row.verdict.text + (f" ({'; '.join(notes)})" if notes else "")


def _relative(ratio: float) -> str:
    return "–" if math.isnan(ratio) else f"{ratio:.2f}"  # NaN: no baseline to be relative to


def _unmeasured(row: Row) -> str:
    """Why a row has no headline figure: its repeats failed, or too few samples."""
    if refused := [r.failure.reason for r in row.results
                   if r.status == NOT_SERVED and r.failure]:
        return refused[0]  # "not served: <server> does not speak h2c (why)"
    if failed := row.failures():
        return "failed: " + ", ".join(failed)
    n = max((r.figures.latency_samples for r in row.results if r.figures), default=0)
    return f"– (n={n}: too few samples for the headline)"


def _runs(row: Row) -> str:
    return ", ".join(sorted({r.source_run or "?" for r in row.results}))


SLOW_DRAIN_S = 1.0  # a server still busy with a warm-up's cut requests this long after it


def notes(comp: Comparison) -> list[str]:
    """What a reader must know of the engine beside the table: what h2load cannot check,
    and servers that kept the requests of streams h2load let go of in flight."""
    if not _h2load(comp):
        return []
    lines = ["h2load checks each answer's status only: its rows have no body check, and no "
             "per-worker split (it cannot read the wrapper's worker header). *spoken* is "
             "the protocol h2load's own report names."]
    for row in comp.rows:
        waits = [w for f in row.ok if f.h2load and (w := f.h2load.h2load_settle_s)]
        if waits and max(waits) >= SLOW_DRAIN_S:
            lines.append(f"{row.server_id} still had requests in flight up to "
                         f"{max(waits):.1f} s after h2load's warm-up let go of them (the "
                         "lab waits at most one request timeout_s): it did not end the "
                         "requests of streams whose connection the client closed.")
    return lines


def table(comp: ComparisonFacts) -> str:
    """The main table, then the detail table in a collapsed block. In a merged report, a
    *run* column says where each row was measured: rows of different runs did not run side
    by side."""
    columns = get(comp.kind).columns(comp)
    if any(r.source_run for row in comp.rows for r in row.results):
        columns.append(Column("run", _runs, main=True, always=True))
    main = [c for c in columns if c.main]
    detail = [c for c in columns if not c.main]
    body, more = [], []
    for row in comp.rows:
        if not row.values():
            body.append([row.server_id, _unmeasured(row), "", "",
                         *(c.cell(row) if c.always else "" for c in main)])
            continue
        assert row.verdict is not None
        body.append([row.server_id, fmt_spread(row.spread(), 4 if comp.headline.higher_is_better
                                               else 3),
                     _relative(row.verdict.ratio), _verdict(row), *(c.cell(row) for c in main)])
        more.append([row.server_id, *(c.cell(row) for c in detail)])
    headers = ["configuration", comp.headline.name, "relative", "verdict",
               *(c.header for c in main)]
    out = tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)
    if more:
        out += ("\n\n<details><summary>More figures: " + ", ".join(c.header for c in detail)
                + "</summary>\n\n"
                + tabulate(more, headers=["configuration", *(c.header for c in detail)],
                           tablefmt="github", disable_numparse=True) + "\n\n</details>")
    return out
