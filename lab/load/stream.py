"""stream: N readers each read whole streamed responses, one after another, and the lab's
own client (rawhttp) notes when each socket read brought body bytes.

Per response: time to first body byte (TTFB) and to last (TTLB, the sample's latency), both
from the request written; the body's reads (chunks as they arrived) and bytes. Each reader
has its keep-alive connection, opened and checked before the window, and reads
``responses`` responses, each bounded by ``timeout_s``. Before the window the ready path's
idle round trip is timed on one of them: the network's (and the server's own) time, which a
stream's pacing must well exceed before its body's span can tell streaming from buffering.
"""

import asyncio
import statistics

from lab.kinds.stream import paced_ms
from lab.load.histogram import Histogram, latency_figures
from lab.load.monitor import Window
from lab.load.rawhttp import RawClient
from lab.load.samples import Measurement, Sample
from lab.matrix.config import Experiment
from lab.matrix.endpoint import Endpoint
from lab.store.schema import KindFigures, StreamFigures

NETWORK_PROBES = 5


async def run(base_url: str, exp: Experiment, endpoint: Endpoint, readers: int,
              window: Window) -> Measurement:
    client = RawClient(base_url, exp.params, readers, exp.timeout_s)

    async def reader() -> list[Sample]:
        return [await client.send(endpoint, timed=True) for _ in range(exp.responses)]

    try:
        await client.connect(readers, exp.ready)
        network = [(await client.send(exp.ready)).latency_s for _ in range(NETWORK_PROBES)]
        window.start()
        per_reader = await asyncio.gather(*(reader() for _ in range(readers)))
        usage = window.end()
    finally:
        await client.aclose()
    samples = [s for r in per_reader for s in r]
    return Measurement(samples, usage, KindFigures(stream=figures(
        samples, 1e3 * statistics.median(network), paced_ms(exp, endpoint))))


def figures(samples: list[Sample], network_ms: float | None, paced: float | None
            ) -> StreamFigures:
    """The body figures of the successful responses that had a body."""
    bodies = [(s, s.body) for s in samples if s.error is None and s.body is not None]
    ttfb, span = Histogram(), Histogram()
    for s, body in bodies:
        ttfb.record(body.first - s.start)
        span.record(s.start + s.latency_s - body.first)
    reads = sum(body.reads for _, body in bodies)
    seconds = sum(s.latency_s for s, _ in bodies)
    return StreamFigures(
        ttfb_ms=latency_figures(ttfb), ttfb_histogram=ttfb,
        body_span_ms=latency_figures(span), body_span_histogram=span,
        chunks_per_s=reads / seconds if seconds > 0 else None,
        chunks_per_response=reads / len(bodies) if bodies else None,
        body_bytes=sum(body.nbytes for _, body in bodies), network_ms=network_ms,
        paced_ms=paced)
