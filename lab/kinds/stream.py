"""stream: N readers read streamed responses; time to first and last body byte, chunks/s,
and whether the server (or the app's middleware) buffered the stream.

The headline is TTFB p50: what a reader of a stream waits for before it sees anything, and
the figure a buffering server gives away (its first byte comes with the last). Chunks/s is
paced by the endpoint (its interval), the same on every server that streams.
"""

from enum import Enum

from lab.kinds import Headline, Kind, register
from lab.kinds.base import ms
from lab.matrix.config import Cell
from lab.run.estimate import CELL_OVERHEAD_S
from lab.store.schema import Figures

# The buffering rule. A response is "bunched" when its first body byte came at 90 % of its
# time or later; a stream is judged only when a response lasts ≥ 10 idle round trips of the
# ready path (and ≥ 5 ms), so that its own pacing, not the network or a busy machine's
# scheduling, decides. A server that streams K chunks paced `interval` apart sends the first
# at once: its TTFB is a small share of TTLB even when a busy machine delays every chunk.
BUNCHED_SHARE = 0.9
MIN_ROUND_TRIPS = 10
MIN_TTLB_MS = 5.0
RULE = (f"A stream counts as buffered when its time to first body byte is at least "
        f"{BUNCHED_SHARE:g} × its time to last byte (p50 of each): the body came all at once, "
        f"at the end, although the endpoint paced it out. It is judged only where TTLB p50 "
        f"is at least {MIN_ROUND_TRIPS} idle round trips of the ready path and "
        f"{MIN_TTLB_MS:g} ms; a quicker response is too quick to tell.")
NOTE = ("*TTFB* runs from the request written to the first body bytes read, *TTLB* to the "
        "last; *chunks/s per connection* counts the socket reads that brought body bytes, per "
        "second of a response (a server that streams delivers each chunk as it is made; one "
        f"that buffers, one read at the end). {RULE}")
DEFAULT_RESPONSE_S = 0.1  # an endpoint whose pacing the params do not say


class Streaming(Enum):
    STREAMED = "streamed"
    BUFFERED = "buffered"
    TOO_QUICK = "too quick to tell"  # the response did not outlast the network enough


def ttfb_p50(f: Figures) -> float | None:
    return f.stream.ttfb_ms.get("p50") if f.stream else None


def streaming(f: Figures) -> Streaming | None:
    """The buffering rule on one cell's figures (None: nothing to judge)."""
    ttfb, ttlb = ttfb_p50(f), f.latency_ms.get("p50")
    if f.stream is None or ttfb is None or ttlb is None:
        return None
    if ttlb < max(MIN_TTLB_MS, MIN_ROUND_TRIPS * (f.stream.network_ms or 0.0)):
        return Streaming.TOO_QUICK
    return Streaming.BUFFERED if ttfb >= BUNCHED_SHARE * ttlb else Streaming.STREAMED


def response_s(cell: Cell) -> float:
    """apps.article's /stream and /sse: (chunks − 1) × interval."""
    p = cell.experiment.params
    chunks, interval = p.get("chunks"), p.get("interval")
    if isinstance(chunks, int) and isinstance(interval, int | float):
        return max(0, chunks - 1) * float(interval)
    return DEFAULT_RESPONSE_S


def estimate_s(cell: Cell) -> float:
    return CELL_OVERHEAD_S + cell.experiment.responses * response_s(cell)


def progress(f: Figures) -> str:
    judged = streaming(f)
    return (f"TTFB p50 {ms(ttfb_p50(f))}, "
            + ("–" if judged is None else judged.value) + ", TTLB")


KIND = register(Kind(
    name="stream",
    help="N readers each read `responses` streamed responses; time to first and last body "
         "byte, chunks/s, and whether the stream was buffered",
    load_key="readers", letter="rd", settings=("responses",),
    engines=("rawhttp",), default_engine="rawhttp",
    headline=Headline("TTFB p50 ms", ttfb_p50, False),
    estimate_s=estimate_s,
    run_at="lab.load.stream:run", columns_at="lab.report.stream:columns",
    charts_at="lab.report.stream:charts",
    in_short=4, progress=progress, note=NOTE,
))
