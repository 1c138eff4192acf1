"""open: requests arrive at a fixed rate whether or not earlier ones have answered.

Latency is measured from each request's *scheduled* time, so a server (or client) that
falls behind shows it in the latency instead of quietly sending less (no coordinated
omission). How late the client itself sent is recorded too: if it fell behind its
schedule, the cell says so.
"""

import asyncio
import time

from lab.load.engines import ENGINES
from lab.load.monitor import Window
from lab.load.samples import Measurement, Sample
from lab.load.window import measure
from lab.matrix.config import Experiment
from lab.matrix.endpoint import Endpoint
from lab.store.schema import KindFigures, OpenFigures

BEHIND_P99_MS = 10.0  # the client's send lag beyond which its schedule is not trusted
EARLY_S = 0.001  # a timer tick: how early a request may go out with its batch


async def run(base_url: str, exp: Experiment, endpoint: Endpoint, rate: float,
              window: Window, begin: float | None = None) -> Measurement:
    client = ENGINES[exp.engine].client(base_url, exp.params, exp.max_connections,
                                        exp.timeout_s)
    begin = begin or time.perf_counter()
    window_start = begin + exp.warmup_s
    window_end = window_start + exp.duration_s
    total = int((exp.warmup_s + exp.duration_s) * rate)
    samples: list[Sample] = []
    lags: list[float] = []
    answered = asyncio.Event()
    left = total

    def outside(_: Sample) -> None:  # warm-up (or after the window): answered, not counted
        nonlocal left
        left -= 1
        if left == 0:
            answered.set()

    def inside(sample: Sample) -> None:
        samples.append(sample)
        outside(sample)

    async def send() -> None:
        # Each wake-up sends every request due within the next EARLY_S: the loop's timers
        # tick in milliseconds, and a shorter sleep returns at once and spins the CPU. A request
        # is timed from its scheduled moment, or from when it was written if that came
        # first: a late send costs latency, never a request, and an early one hides none.
        i = 0
        while i < total:
            now = time.perf_counter()
            scheduled = begin + i / rate
            if scheduled > now + EARLY_S:
                await asyncio.sleep(max(EARLY_S, scheduled - now - EARLY_S))
                continue
            while i < total and (scheduled := begin + i / rate) <= now + EARLY_S:
                counted = window_start <= scheduled < window_end  # by schedule, not send
                if counted:
                    lags.append(max(0.0, now - scheduled))  # how late; early is on time
                client.submit(endpoint, min(scheduled, now), inside if counted else outside)
                i += 1
        if total:
            await answered.wait()  # each request is bounded by the timeout

    try:
        usage, _ = await asyncio.gather(measure(window, window_start, window_end), send())
    finally:
        await client.aclose()
    lags.sort()
    lag_p99_ms = 1e3 * lags[int(0.99 * (len(lags) - 1))] if lags else 0.0
    return Measurement(samples, usage, KindFigures(open=OpenFigures(
        target_rps=rate, scheduled=len(lags), send_lag_p99_ms=lag_p99_ms,
        send_lag_max_ms=1e3 * lags[-1] if lags else 0.0,
        client_behind=lag_p99_ms > BEHIND_P99_MS,
        answer_span_s=answer_span_s(samples, window_start, window_end))))


def answer_span_s(samples: list[Sample], window_start: float, window_end: float) -> float:
    """The time over which the window's requests were answered: the achieved rate is the
    successful answers over it.

    A server that fell behind answers the window's requests after the window, so the span
    runs to the last successful answer, not only to the window's end. A failed request does
    not stretch it: one request that times out 10 s after the window would otherwise turn
    a server that kept up into one that answered at a fraction of the rate.
    """
    last = max((s.start + s.latency_s for s in samples if s.error is None), default=window_end)
    return max(window_end, last) - window_start
