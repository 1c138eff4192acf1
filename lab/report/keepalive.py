""""What is keep-alive worth?": each closed comparison run with ``connection = "close"``
against its keep-alive twin (the same kind, endpoint, load and params but for the
connection), per server configuration in both: req/s kept alive over req/s with a new
connection per request, and what the server's side saw of those connections."""

from collections.abc import Sequence

from lab.kinds import Fact, get
from lab.report.fmt import fmt
from lab.report.heads import head
from lab.report.model import ComparisonFacts, RowFacts
from lab.report.twins import twins
from lab.store.schema import Figures

KEEP_ALIVE, CLOSE = "keep-alive", "close"
# Below this many connections accepted per request, a "close" row did not get a connection
# per request: the server kept connections open although each request asked it to close.
ONE_PER_REQUEST = 0.9


def opens_per_request(f: Figures) -> float | None:
    """Connections the kernel accepted in the window per request sent in it."""
    return f.tcp_opens / f.requests if f.tcp_opens is not None and f.requests else None


def connections_per_worker(row: RowFacts) -> str:
    """The wrapper's count of client connections that sent each worker requests (typical
    repeat), largest first: '11/5'."""
    typical = row.typical()
    counts = sorted(typical.connections.values(), reverse=True) if typical else []
    return "/".join(map(str, counts)) or "–"


def _worth(kept: RowFacts, closed: RowFacts) -> str | None:
    a, b = kept.spread(), closed.spread()
    if a is None or b is None or b.median <= 0:
        return None
    text = f"{kept.server_id} {a.median / b.median:.2f}× ({fmt(a.median, 4)} vs " \
           f"{fmt(b.median, 4)} req/s"
    if a.n > 1 and b.n > 1:
        low, high = a.low / b.high, a.high / b.low
        text += f", {low:.2f}–{high:.2f}× over repeats" + (
            ": within noise" if low <= 1 <= high else "")
    if kept.limit() or closed.limit():
        text += "; not comparable: client or machine at its limit"
    typical = closed.typical()
    per = opens_per_request(typical) if typical else None
    if per is not None and per < ONE_PER_REQUEST:
        text += (f"; ⚠ only {per:.2f} connections per request: the server kept connections "
                 "open despite `Connection: close`")
    if closed.workers > 1 and closed.split() and kept.split():
        text += (f"; per-worker split {'/'.join(map(str, closed.split()))} closing, "
                 f"{'/'.join(map(str, kept.split()))} kept alive")
    return text + ")"


def keep_alive_worth(comps: Sequence[ComparisonFacts]) -> list[str]:
    out = []
    for kept, closed in twins(comps, "connection", KEEP_ALIVE, CLOSE):
        if Fact.THROUGHPUT not in get(closed.kind).facts:
            continue
        rows = {r.server_id: r for r in kept.rows}
        found = [t for r in closed.rows if r.server_id in rows
                 and (t := _worth(rows[r.server_id], r)) is not None]
        pers = [p for r in closed.measured if (f := r.typical()) is not None
                and (p := opens_per_request(f)) is not None]
        if not found:
            continue
        span = f"{min(pers):.2f}" + (f"–{max(pers):.2f}" if max(pers) > min(pers) else "") \
            if pers else ""
        seen = (f" The servers accepted {span} connections per request with `close` (the "
                "kernel's count)." if pers else "")
        out.append(f"{head(kept, comps)}: req/s kept alive ÷ req/s with a "
                   f"new connection per request: {'; '.join(found)}.{seen}")
    return out
