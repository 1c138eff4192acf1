"""stream: N readers read streamed responses; time to first and last body byte, chunks/s,
and whether the server (or the app's middleware) buffered the stream.

The headline is TTFB p50: what a reader of a stream waits for before it sees anything, and
the figure a buffering server gives away (its first byte comes with the last). Chunks/s is
paced by the endpoint (its interval), the same on every server that streams.
"""

import math
from enum import Enum

from lab.kinds import Headline, Kind, register
from lab.kinds.base import ms
from lab.load.params import request_query
from lab.matrix.config import Cell, Experiment
from lab.matrix.endpoint import Endpoint
from lab.run.estimate import CELL_OVERHEAD_S
from lab.store.schema import Figures

# The buffering rule. A server that streams passes each chunk on as the endpoint makes it:
# the body arrives over the endpoint's own pacing, (chunks − 1) × interval. One that buffers
# (or an app's middleware that does) sends it all at the end: it arrives within a read or
# two. A busy machine delays chunks but cannot make the last arrive before the endpoint made
# it, so the body's own span, TTLB − TTFB, is what the rule reads — not TTLB alone, which
# queueing at N readers stretches. Judged only where the pacing is ≥ 10 idle round trips of
# the ready path and ≥ 5 ms: a quicker body arrives at once from any server.
NAME = "stream"
BUFFERED_SHARE = 0.1
MIN_ROUND_TRIPS = 10
MIN_PACED_MS = 5.0
RULE = (f"A stream counts as **buffered** when its body arrived within a tenth of the time "
        f"the endpoint took to make it: body span p50 (TTLB − TTFB, per response) < "
        f"{BUFFERED_SHARE:g} × its pacing ((chunks − 1) × interval of its query, or the "
        f"experiment's `paced_ms`). It is judged only where the pacing is at least "
        f"{MIN_ROUND_TRIPS} idle round trips of the ready path and {MIN_PACED_MS:g} ms; a "
        "quicker body is *too quick to tell*, and one whose pacing is unknown, *not judged*.")
NOTE = ("*TTFB* runs from the request written to the first body bytes read, *TTLB* to the "
        "last; *chunks/s per connection* counts the socket reads that brought body bytes, per "
        "second of a response (a server that streams delivers each chunk as it is made; one "
        f"that buffers, one read at the end). {RULE}")
DEFAULT_RESPONSE_S = 0.1  # an endpoint whose pacing is unknown


class Streaming(Enum):
    STREAMED = "streamed"
    BUFFERED = "buffered"
    TOO_QUICK = "too quick to tell"  # its pacing does not outlast the network enough
    UNKNOWN = "not judged"  # the endpoint's pacing is not known (set paced_ms)


def ttfb_p50(f: Figures) -> float | None:
    return f.stream.ttfb_ms.get("p50") if f.stream else None


def streaming(f: Figures) -> Streaming | None:
    """The buffering rule on one cell's figures (None: nothing to judge)."""
    s = f.stream
    span = s.body_span_ms.get("p50") if s else None
    if s is None or span is None:
        return None
    if s.paced_ms is None:
        return Streaming.UNKNOWN
    if s.paced_ms < max(MIN_PACED_MS, MIN_ROUND_TRIPS * (s.network_ms or 0.0)):
        return Streaming.TOO_QUICK
    return Streaming.BUFFERED if span < BUFFERED_SHARE * s.paced_ms else Streaming.STREAMED


def paced_ms(exp: Experiment, endpoint: Endpoint) -> float | None:
    """The endpoint's own first → last chunk: ``paced_ms``, else its query's
    ``(chunks − 1) × interval`` (apps.article's /stream and /sse); None: not known."""
    if exp.paced_ms is not None:
        return exp.paced_ms
    query = request_query(exp.params, endpoint)
    try:
        paced = 1e3 * max(0, int(query["chunks"]) - 1) * float(query["interval"])
    except (KeyError, ValueError):
        return None
    return paced if math.isfinite(paced) else None


def estimate_s(cell: Cell) -> float:
    paced = paced_ms(cell.experiment, cell.endpoint)
    return CELL_OVERHEAD_S + cell.experiment.responses * (
        DEFAULT_RESPONSE_S if paced is None else paced / 1e3)


def progress(f: Figures) -> str:
    judged = streaming(f)
    return (f"TTFB p50 {ms(ttfb_p50(f))}, "
            + ("–" if judged is None else judged.value) + ", TTLB")


KIND = register(Kind(
    name=NAME,
    help="N readers each read `responses` streamed responses; time to first and last body "
         "byte, chunks/s, and whether the stream was buffered",
    load_key="readers", letter="rd", settings=("responses", "paced_ms"),
    engines=("rawhttp",), default_engine="rawhttp",
    headline=Headline("TTFB p50 ms", ttfb_p50, False),
    estimate_s=estimate_s,
    run_at="lab.load.stream:run", columns_at="lab.report.stream:columns",
    charts_at="lab.report.charts:stream_charts",
    in_short=4, progress=progress, note=NOTE,
))
