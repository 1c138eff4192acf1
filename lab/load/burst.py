"""burst: N requests written at once; the batch's wall time and each request's latency.

This is the article's own experiment, timed as the server sees it: with ``connect =
"warm"`` (the default) the N connections are opened and each checked with one request of
the lab's ready path before the window, so the window holds only the N requests; the wall
time runs from the first request written to the last response read. ``connect = "cold"``
opens a new connection per request inside the window (keep-alive vs a connection per
request), timed from the first request begun. How far apart the first and the last
request were written (the send spread) is recorded: a client that spread its sends
measured itself, not the server.
"""

from lab.load.engines import ENGINES
from lab.load.monitor import Window
from lab.load.samples import Measurement, Sample
from lab.matrix.config import Experiment
from lab.matrix.endpoint import Endpoint
from lab.store.schema import BurstFigures, KindFigures


async def run(base_url: str, exp: Experiment, endpoint: Endpoint, n: int,
              window: Window) -> Measurement:
    client = ENGINES[exp.engine].client(base_url, exp.params, n, exp.timeout_s)
    try:
        if exp.connect == "warm":
            await client.connect(n, exp.ready)
        window.start()
        samples = await client.burst(endpoint, n)
        usage = window.end()
    finally:
        await client.aclose()
    wall_s, spread_ms = timing(samples, exp.connect == "cold")
    return Measurement(samples, usage, KindFigures(burst=BurstFigures(exp.connect, spread_ms)),
                       wall_s=wall_s)


def timing(samples: list[Sample], cold: bool = False) -> tuple[float, float | None]:
    """The batch as the server saw it: first request written → last response read (cold:
    from the first request begun, its connection being part of it), and the spread of the
    writes. An engine that does not know when it wrote a request (None) is timed from when
    it was asked to send it. (wall seconds, send spread ms)"""
    if not samples:
        return 0.0, None
    sent = [s.sent if s.sent is not None else s.start for s in samples]
    first = min(s.start for s in samples) if cold else min(sent)
    last = max(s.start + s.latency_s for s in samples)
    return last - first, 1e3 * (max(sent) - min(sent))
