"""The websocket kinds' table columns — who connected, the round trips or deliveries, and
what failed (a refused handshake is an error of its status) — and their charts: the
latency percentiles of round trips (echo) or deliveries (broadcast), as closed loops'."""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lab.report.fmt import fmt, pct
from lab.report.groups import Comparison, Row
from lab.report.model import ComparisonFacts
from lab.report.tables import Column, client_cpu, errors
from lab.store.schema import WebSocketFigures

if TYPE_CHECKING:  # matplotlib is imported only where a chart is drawn
    from lab.report.charts import Chart, Styles


def _ws(row: Row) -> list[WebSocketFigures]:
    return [f.websocket for f in row.ok if f.websocket]


def _connected(row: Row) -> str:
    """Accepted of asked in the worst repeat: '100/100'."""
    parts = _ws(row) or [r.figures.websocket for r in row.results
                         if r.figures and r.figures.websocket]
    worst = min(parts, key=lambda w: w.ws_connected, default=None)
    return f"{worst.ws_connected}/{worst.ws_clients}" if worst else "–"


def _handshake(key: str) -> Column:
    def cell(row: Row) -> str:
        return fmt(max((v for w in _ws(row) if (v := w.ws_handshake_ms.get(key)) is not None),
                       default=None))
    return Column(f"handshake {key} ms", cell)


def _per_worker(row: Row) -> str:
    return "/".join(map(str, row.split())) or "–"


def echo_columns(comp: Comparison) -> list[Column]:
    return [Column("connected", _connected, main=True, always=True),
            Column("errors", lambda r: str(sum(r.errors().values())), main=True, always=True),
            Column("round trip p50 ms", lambda r: pct(r.latency(), "p50"), main=True),
            Column("p99 ms", lambda r: pct(r.latency(), "p99"), main=True),
            Column("max ms", lambda r: pct(r.latency(), "max")),
            _handshake("p50"), _handshake("max"), Column("errors by kind", errors),
            Column("messages per worker", _per_worker), Column("client CPU %", client_cpu)]


def broadcast_columns(comp: Comparison) -> list[Column]:
    def missed(row: Row) -> str:
        return str(sum(w.ws_missed for w in _ws(row)))

    def last_max(row: Row) -> str:
        return fmt(max((w.ws_last_max_ms for w in _ws(row) if w.ws_last_max_ms is not None),
                       default=None))

    def groups(row: Row) -> str:
        return "/".join(sorted({str(w.ws_groups) for w in _ws(row)})) or "–"

    return [Column("connected", _connected, main=True, always=True),
            Column("missed", missed, main=True, always=True),
            Column("delivery p50 ms (all clients)", lambda r: pct(r.latency(), "p50"),
                   main=True),
            Column("last client max ms", last_max, main=True),
            Column("groups (workers)", groups), _handshake("p50"), _handshake("max"),
            Column("errors by kind", errors), Column("client CPU %", client_cpu)]


def charts(experiment: str, comps: list[ComparisonFacts], styles: "Styles", folder: Path
           ) -> "list[Chart | None]":
    from lab.report.charts import _percentiles  # matplotlib: only where a chart is drawn

    kind = comps[0].kind if comps else "websocket"
    return [_percentiles(experiment, kind, comps, styles, folder,
                         lambda c: f"{c.n} clients")]


def _held(row: Row) -> bool:
    """Every repeat connected all its clients and lost no message or delivery."""
    return bool(row.ok) and len(row.ok) == len(row.results) and not row.errors() and all(
        w.ws_connected == w.ws_clients and not w.ws_missed for w in _ws(row))


def _ranked(comp: ComparisonFacts, unit: str) -> str:
    """The rows that held every client, best headline first, with its figure."""
    better = 1 if comp.headline.higher_is_better else -1
    held = sorted((r for r in comp.measured if _held(r)),
                  key=lambda r: -better * (s.median if (s := r.spread()) else 0))
    return ", ".join(f"{r.server_id} {fmt(s.median, 4)}{unit}" for r in held
                     if (s := r.spread()) is not None)


def short(comps: Sequence[ComparisonFacts]) -> list[tuple[str, list[str]]]:
    """"Which server holds N WebSocket clients?": per echo or broadcast comparison, the
    configurations that connected all N and lost nothing, best first, and those that did
    not, with what failed. Verdicts between them are the tables'."""
    lines = []
    for comp in comps:
        if comp.kind not in ("websocket", "ws_broadcast"):
            continue
        echo = comp.kind == "websocket"
        what = ("echo, msgs/s" if echo else "broadcast, the last client's delivery p50")
        ranked = _ranked(comp, "" if echo else " ms")
        lost = [f"{r.server_id} ({_connected(r)} connected"
                + (f", {errors(r)} errors" if r.errors() else "")
                + (f", {sum(w.ws_missed for w in _ws(r))} missed" if any(
                    w.ws_missed for w in _ws(r)) else "")
                + (f"; failed: {'; '.join(reasons)}" if (reasons := sorted(
                    {x.failure.reason for x in r.results if x.failure})) else "") + ")"
                for r in comp.rows if not _held(r)]
        parts = [f"held all {comp.n} on {ranked}" if ranked else f"none held all {comp.n}"]
        parts += [f"**did not** on {'; '.join(lost)}"] if lost else []
        lines.append(f"`{comp.endpoint}`, {comp.n} clients ({what}): " + "; ".join(parts)
                     + ".")
    return [("Which server holds N WebSocket clients?", lines)] if lines else []
