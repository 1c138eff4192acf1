"""The stream kind's table columns and its line in In short: who buffered a stream."""

from collections import Counter
from collections.abc import Callable, Iterable

from lab.kinds.stream import NAME, Streaming, streaming
from lab.load.histogram import Histogram, latency_figures
from lab.report.fmt import fmt, pct, split
from lab.report.groups import Row
from lab.report.model import ComparisonFacts
from lab.report.tables import Column, client_cpu, errors
from lab.store.schema import Figures, StreamFigures


def verdict(row: Row) -> str:
    """Each repeat's judgement by the buffering rule: "streamed", or "buffered ⚠", or how
    the repeats differed."""
    judged = Counter(j.value for f in row.ok if (j := streaming(f)) is not None)
    if not judged:
        return "–"
    text = ", ".join(v if len(judged) == 1 else f"{v} {n}" for v, n in judged.most_common())
    return text + (" ⚠" if "buffered" in judged else "")


def _merged(get: Callable[[StreamFigures], Histogram | None]
            ) -> Callable[[Row], dict[str, float | None]]:
    def percentiles(row: Row) -> dict[str, float | None]:
        """Percentiles over every repeat, from their merged histograms."""
        merged = Histogram()
        for f in row.ok:
            if f.stream and (h := get(f.stream)):
                merged = merged.merge(h)
        return latency_figures(merged)
    return percentiles


ttfb = _merged(lambda s: s.ttfb_histogram)
span = _merged(lambda s: s.body_span_histogram)


def paced(row: Row) -> float | None:
    return next((f.stream.paced_ms for f in row.ok if f.stream), None)


def share(row: Row) -> str:
    """Body span p50 ÷ the endpoint's pacing: near 1 streamed, near 0 buffered."""
    body, made = span(row).get("p50"), paced(row)
    return fmt(body / made, 2) if body is not None and made else "–"


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
            Column("body span p50 ms", lambda r: fmt(span(r).get("p50")), main=True),
            Column("span ÷ pacing", share, main=True),
            Column("chunks/s per connection", chunks, main=True),
            Column("errors", lambda r: str(sum(r.errors().values())), main=True),
            Column("TTFB p90 ms", lambda r: fmt(ttfb(r).get("p90"))),
            Column("TTFB max ms", lambda r: fmt(ttfb(r).get("max"))),
            Column("TTLB p90 ms", lambda r: pct(r.latency(), "p90")),
            Column("TTLB max ms", lambda r: pct(r.latency(), "max")),
            Column("pacing ms", lambda r: fmt(paced(r))),
            Column("per response", per_response),
            Column("idle round trip ms", network),
            Column("errors by kind", errors), Column("responses per worker", split),
            Column("client CPU %", client_cpu)]


def short(comps: Iterable[ComparisonFacts]) -> list[tuple[str, list[str]]]:
    """"Who buffers streams?": per endpoint, the configurations the rule judged buffered
    (at any load or repeat), those that streamed, those too quick to tell and those whose
    pacing was unknown."""
    judged: dict[str, dict[Streaming, set[str]]] = {}
    for comp in comps:
        if comp.kind != NAME:
            continue
        by = judged.setdefault(comp.endpoint, {})
        for row in comp.rows:
            for f in row.ok:
                if (j := streaming(f)) is not None:
                    by.setdefault(j, set()).add(row.server_id)
    lines = []
    for endpoint, by in judged.items():
        buffered = by.get(Streaming.BUFFERED, set())
        streamed = by.get(Streaming.STREAMED, set()) - buffered
        quick = by.get(Streaming.TOO_QUICK, set()) - buffered - streamed
        unknown = by.get(Streaming.UNKNOWN, set()) - buffered - streamed - quick
        parts = ([f"**buffered** by {_names(buffered)}: its body came all at once, at the "
                  "end"] if buffered else [])
        parts += [f"streamed by {_names(streamed) if buffered or quick else 'every server'}"
                  ] if streamed else []
        parts += [f"too quick to tell on {_names(quick)}"] if quick else []
        parts += [f"not judged on {_names(unknown)} (its pacing unknown: set `paced_ms`)"
                  ] if unknown else []
        lines.append(f"`{endpoint}`: " + "; ".join(parts) + ".")
    return [("Who buffers streams?", lines)] if lines else []


def _names(ids: set[str]) -> str:
    return ", ".join(sorted(ids))
