""""Which server for HTTP/2?": per closed comparison over h2c, each configuration's req/s
against its own over HTTP/1.1 on the same cells (the twin comparison without ``http``
and ``streams``), and the servers that cannot serve it. The verdicts between servers are
"Which server?"'s, which names these comparisons too."""

from collections.abc import Sequence

from lab.kinds import Fact, get
from lab.report.fmt import fmt
from lab.report.heads import head
from lab.report.model import ComparisonFacts, RowFacts
from lab.report.twins import twins
from lab.store.schema import NOT_SERVED


def _against_h1(row: RowFacts, h1: RowFacts | None) -> str:
    s = row.spread()
    assert s is not None
    base = h1.spread() if h1 is not None else None
    text = f"{row.server_id} {fmt(s.median, 4)} req/s"
    if base is not None and base.median > 0:
        text += f" ({s.median / base.median:.2f}× its {fmt(base.median, 4)} over HTTP/1.1)"
    return text + ("; not comparable: client or machine at its limit" if row.limit() else "")


def which_for_http2(comps: Sequence[ComparisonFacts]) -> list[str]:
    h1_of = {id(h2): h1 for h1, h2 in twins(comps, "http", "1.1", "2", frozenset({"streams"}))}
    out = []
    for comp in comps:
        if comp.load.get("http") != "2" or Fact.THROUGHPUT not in get(comp.kind).facts:
            continue
        h1 = {r.server_id: r for r in h1_of[id(comp)].rows} if id(comp) in h1_of else {}
        ranked = sorted(comp.measured, key=lambda r: -(s.median if (s := r.spread()) else 0))
        parts = [_against_h1(r, h1.get(r.server_id)) for r in ranked]
        refused = [r.server_id for r in comp.rows
                   if r.results and all(x.status == NOT_SERVED for x in r.results)]
        if refused:
            parts.append(f"not served (no h2c): {', '.join(refused)}")
        if parts:
            out.append(f"{head(comp, comps)}: " + "; ".join(parts) + ".")
    return out
