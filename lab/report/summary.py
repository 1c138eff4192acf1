""""In short": the report's answers to the three questions — `def` or `async def`, which
server, how many workers — in a few sentences, each read from the model."""

from lab.kinds import Fact, get
from lab.report.facts import Scaling
from lab.report.fmt import fmt
from lab.report.heads import head
from lab.report.http2 import which_for_http2
from lab.report.keepalive import keep_alive_worth
from lab.report.model import ComparisonFacts, Report, RowFacts


def _which_server(report: Report) -> list[str]:
    """Per closed comparison: the baseline (the preferred configuration, else the best row
    that may win) and what the verdicts say of the others. No winner from a row whose
    figure may be the client's or the machine's."""
    out = []
    for comp in report.comparisons:
        base = comp.baseline
        if Fact.THROUGHPUT not in get(comp.kind).facts or not comp.measured:
            continue
        name = head(comp, report.comparisons)
        limited = sorted(row.server_id for row in comp.measured if row.limit() is not None)
        note = (f" Not comparable (client or machine at its limit): {', '.join(limited)}."
                if limited else "")
        if base is None:
            out.append(f"{name}: no verdict — no configuration has all its repeats ok and a "
                       f"figure that is the server's, not the client's or the machine's.{note}")
            continue
        s = base.spread()
        assert s is not None
        who = "baseline " if report.preferred == base.server_id else "most req/s on "
        text = f"{name}: {who}{base.server_id} ({fmt(s.median, 4)} req/s)"
        out.append(text + _against(comp, base, limited) + "." + note)
    return out


def _against(comp: ComparisonFacts, base: RowFacts, limited: list[str]) -> str:
    """What the verdicts say of the other rows against the baseline (higher is better)."""
    others = {row.server_id: row.verdict for row in comp.measured
              if row is not base and row.server_id not in limited and row.verdict}
    better = [sid for sid, x in others.items() if x.significant and x.ratio < 1]
    worse = [f"{sid} ({x.ratio:.2f}×)" for sid, x in others.items()
             if x.significant and x.ratio > 1]
    unclear = [sid for sid, x in others.items() if x.significant is False]
    text = ""
    if better:
        text += f"; significantly more on {', '.join(better)}"
    if unclear:
        text += f"; no clear difference from {', '.join(unclear)}"
    if worse:
        text += f"; significantly fewer on {', '.join(worse)}"
    if others and all(x.significant is None for x in others.values()):
        text += " (too few repeats: no verdicts)"
    return text


BOUNDS = {"client": "at least (the client could send no faster)",
          "max": "at least (knee_max_rps, the highest rate tried)"}


def _knees(report: Report) -> list[str]:
    """Per searched open-model comparison (rates = "auto"): the rate each configuration
    holds within the SLO, with its range over repeats, and what the verdicts say against
    the best."""
    out = []
    for comp in report.comparisons:
        if not comp.searched:
            continue
        held, none = [], []
        for row in sorted(comp.rows, key=lambda r: -(s.median if (s := r.spread()) else 0)):
            s = row.spread()
            if s is None:
                none.append(row.server_id)
                continue
            bounds = {b for f in row.ok if (b := f.knee and f.knee.knee_bound) in BOUNDS}
            spread = f" ({fmt(s.low, 4)}–{fmt(s.high, 4)})" if s.n > 1 else ""
            held.append(f"{row.server_id} {' '.join(BOUNDS[b] for b in sorted(bounds))}"
                        f"{' ' if bounds else ''}{fmt(s.median, 4)} req/s{spread}")
        slo = comp.load.get("slo_p99_ms")
        text = (f"`{comp.endpoint}`, the highest rate held with p99 ≤ {fmt(slo)} ms and "
                f"< 0.1 % errors (open model): " + "; ".join(held))
        if none:
            text += ("; " if held else "") + f"no rate held on {', '.join(none)}"
        base = comp.baseline
        if base is not None:
            limited = sorted(r.server_id for r in comp.measured if r.limit() is not None)
            verdicts = _against(comp, base, limited).lstrip("; ")
            text += f" — against {base.server_id}: {verdicts}" if verdicts else ""
            if limited:
                text += f"; not comparable (client or machine at its limit): {', '.join(limited)}"
        out.append(text + ".")
    return out


def _scaling(row: RowFacts, x: Scaling) -> tuple[str, bool]:
    """req/s at w workers over req/s at one, and whether a limit makes it unreadable."""
    used = x.workers_used
    notes = [f"only {used} of {row.workers} workers got requests"] if 0 < used < row.workers \
        else []
    threads = f" with {row.threads} threads" if row.threads else ""  # lab.threads, when set
    text = f"{row.server}{threads} ×{x.ratio:.2f} at {row.workers} workers"
    if x.limited:
        return text + (f" ({notes[0]})" if notes else ""), True
    v = x.verdict
    why = v.text if v.significant is None else (
        f"efficiency {100 * x.efficiency:.0f} %, "
        + ("significant" if v.significant else "no clear difference"))
    return f"{text} ({'; '.join([why, *notes])})", False


def _how_many_workers(report: Report) -> list[str]:
    """Per closed comparison: req/s at more workers relative to one, per server variant
    (in the order of the table), fewer workers first; those whose client or machine was
    at its limit are named together."""
    out = []
    for comp in report.comparisons:
        if Fact.SCALING not in get(comp.kind).facts:
            continue
        order = list(dict.fromkeys(row.variant for row in comp.measured))
        found = [_scaling(row, x) for row in sorted(
            comp.measured, key=lambda r: (order.index(r.variant), r.workers))
                 if (x := row.scaling)]
        readable = [text for text, limited in found if not limited]
        limited = [text for text, limited in found if limited]
        if limited:
            readable.append(", ".join(limited) + " — not comparable: client or machine at "
                            "its limit, not the servers' ceiling")
        if readable:
            out.append(f"{head(comp, report.comparisons)}: req/s relative to 1 worker: "
                       + "; ".join(readable) + ".")
    return out


def in_short(report: Report, def_or_async: list[str]) -> list[tuple[str, list[str]]]:
    """(question, its answers) for each question this run's cells can answer; the first's
    answers come from the article's claims or the ways an experiment compared."""
    answers = [("`def` or `async def`?", def_or_async),
               ("Which server?", _which_server(report) + _knees(report)),
               ("How many workers?", _how_many_workers(report)),
               ("Which server for HTTP/2?", which_for_http2(report.comparisons)),
               ("What is keep-alive worth?", keep_alive_worth(report.comparisons))]
    return [(q, a) for q, a in answers if a]
