"""open: requests arrive at a fixed rate whether or not earlier ones have answered.

Latency is measured from each request's *scheduled* time, so a server (or client) that
falls behind shows it in the latency instead of quietly sending less (no coordinated
omission). How late the client itself sent is recorded too: if it fell behind its
schedule, the cell says so.
"""

import asyncio
import time

from lab.config import Experiment
from lab.endpoint import Endpoint
from lab.load.engines import ENGINES
from lab.load.samples import Measurement, Sample
from lab.load.window import measure, sleep_until
from lab.monitor import Window

BEHIND_P99_MS = 10.0  # the client's send lag beyond which its schedule is not trusted


async def run(base_url: str, exp: Experiment, endpoint: Endpoint, rate: int, window: Window,
              begin: float | None = None) -> Measurement:
    client = ENGINES[exp.engine].client(base_url, exp.params, exp.max_connections,
                                        exp.timeout_s)
    begin = begin or time.perf_counter()
    window_start = begin + exp.warmup_s
    window_end = window_start + exp.duration_s
    samples: list[Sample] = []
    lags: list[float] = []

    async def one(scheduled: float) -> None:
        sample = await client.send(endpoint, start=scheduled)
        if window_start <= scheduled < window_end:
            samples.append(sample)

    async def send() -> None:
        tasks = []
        for i in range(int((exp.warmup_s + exp.duration_s) * rate)):
            scheduled = begin + i / rate
            await sleep_until(scheduled)
            if scheduled >= window_start:
                lags.append(time.perf_counter() - scheduled)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)  # each bounded by the request timeout

    try:
        usage, _ = await asyncio.gather(measure(window, window_start, window_end), send())
    finally:
        await client.aclose()
    lags.sort()
    lag_p99_ms = 1e3 * lags[int(0.99 * (len(lags) - 1))] if lags else 0.0
    return Measurement(samples, usage, {
        "answer_span_s": answer_span_s(samples, window_start, window_end),
        "target_rps": rate,
        "scheduled": len(lags),
        "send_lag_p99_ms": lag_p99_ms,
        "send_lag_max_ms": 1e3 * lags[-1] if lags else 0.0,
        "client_behind": lag_p99_ms > BEHIND_P99_MS,
    })


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
