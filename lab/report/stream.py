"""The stream kind's table columns and chart: TTFB against TTLB, and who buffered."""

from collections import Counter

from lab.kinds.stream import streaming
from lab.load.histogram import Histogram, latency_figures
from lab.report.fmt import fmt, pct, split
from lab.report.groups import Row
from lab.report.model import ComparisonFacts
from lab.report.tables import Column, _cpu, errors
from lab.store.schema import Figures


def verdict(row: Row) -> str:
    """Each repeat's judgement by the buffering rule: "streamed", or "buffered ⚠", or how
    the repeats differed."""
    judged = Counter(j.value for f in row.ok if (j := streaming(f)) is not None)
    if not judged:
        return "–"
    text = ", ".join(v if len(judged) == 1 else f"{v} {n}" for v, n in judged.most_common())
    return text + (" ⚠" if "buffered" in judged else "")


def ttfb(row: Row) -> dict[str, float | None]:
    """TTFB percentiles over every repeat, from their merged histograms."""
    merged = Histogram()
    for f in row.ok:
        if f.stream and f.stream.ttfb_histogram:
            merged = merged.merge(f.stream.ttfb_histogram)
    return latency_figures(merged)


def share(row: Row) -> str:
    """TTFB p50 ÷ TTLB p50: near 0 streamed, near 1 buffered (all of it came at the end)."""
    first, last = ttfb(row).get("p50"), row.latency().get("p50")
    return fmt(first / last, 2) if first is not None and last else "–"


def chunks_per_s(f: Figures) -> float | None:
    return f.stream.chunks_per_s if f.stream else None


def columns(comp: ComparisonFacts) -> list[Column]:
    def per_response(row: Row) -> str:
        f = row.typical()
        if f is None or f.stream is None or not f.ok:
            return "–"
        return (f"{fmt(f.stream.chunks_per_response)} reads, "
                f"{fmt(f.stream.body_bytes / f.ok, 4)} B")

    def network(row: Row) -> str:
        f = row.typical()
        return fmt(f.stream.network_ms if f and f.stream else None)

    def chunks(row: Row) -> str:
        s = row.spread(chunks_per_s)
        return fmt(s.median if s else None)

    return [Column("streamed?", verdict, main=True),
            Column("TTLB p50 ms", lambda r: pct(r.latency(), "p50"), main=True),
            Column("TTFB ÷ TTLB", share, main=True),
            Column("chunks/s per connection", chunks, main=True),
            Column("errors", lambda r: str(sum(r.errors().values())), main=True),
            Column("TTFB p90 ms", lambda r: fmt(ttfb(r).get("p90"))),
            Column("TTFB max ms", lambda r: fmt(ttfb(r).get("max"))),
            Column("TTLB p90 ms", lambda r: pct(r.latency(), "p90")),
            Column("TTLB max ms", lambda r: pct(r.latency(), "max")),
            Column("per response", per_response),
            Column("idle round trip ms", network),
            Column("errors by kind", errors), Column("responses per worker", split),
            Column("client CPU %", _cpu)]


def charts(*_: object) -> list[None]:
    return []  # the table says it all: two times and a verdict per row
