""""In short": the report's answers to the three questions — `def` or `async def`, which
server, how many workers — in a few sentences, each computed from the model."""

from lab.report import article
from lab.report.fmt import fmt
from lab.report.model import Report


def _which_server(report: Report) -> list[str]:
    """Per closed comparison: the baseline (the preferred configuration, else the best row
    that may win) and what the verdicts say of the others. No winner from a row whose
    figure may be the client's or the machine's."""
    out = []
    for comp in report.comparisons:
        base = comp.baseline
        if comp.kind != "closed" or base is None:
            continue
        s = base.spread()
        assert s is not None
        head = f"`{comp.endpoint}`, {comp.n} users"
        limited = sorted(row.server_id for row in comp.measured if row.limit() is not None)
        note = (f" Not comparable (client or machine at its limit): {', '.join(limited)}."
                if limited else "")
        if base.limit() is not None:
            out.append(f"{head}: no verdict — every configuration's figure may be the client's "
                       f"or the machine's, not the server's.{note}")
            continue
        others = {row.server_id: row.verdict for row in comp.measured
                  if row is not base and row.server_id not in limited and row.verdict}
        better = [sid for sid, x in others.items() if x.significant and x.ratio < 1]
        worse = [f"{sid} ({x.ratio:.2f}×)" for sid, x in others.items()
                 if x.significant and x.ratio > 1]
        unclear = [sid for sid, x in others.items() if x.significant is False]
        who = "baseline " if report.preferred == base.server_id else "most req/s on "
        text = f"{head}: {who}{base.server_id} ({fmt(s.median, 4)} req/s)"
        if better:
            text += f"; significantly more on {', '.join(better)}"
        if unclear:
            text += f"; no clear difference from {', '.join(unclear)}"
        if worse:
            text += f"; significantly fewer on {', '.join(worse)}"
        if others and all(x.significant is None for x in others.values()):
            text += " (too few repeats: no verdicts)"
        out.append(text + "." + note)
    return out


def in_short(report: Report) -> list[str]:
    return article.in_short(report.comparisons) + _which_server(report)
