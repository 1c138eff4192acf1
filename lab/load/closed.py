"""closed: c users each send a request, wait for its answer, and send the next.

Requests started during the warm-up are not counted; the window is ``duration_s`` long
and every loop stops by itself at its end (plus one request timeout at most).
"""

import asyncio
import time

from lab.load.engines import ENGINES, Client, close_all
from lab.load.monitor import Window
from lab.load.samples import Measurement, Sample
from lab.load.window import measure
from lab.matrix.config import Experiment
from lab.matrix.endpoint import Endpoint


async def run(base_url: str, exp: Experiment, endpoint: Endpoint, users: int, window: Window,
              begin: float | None = None) -> Measurement:
    engine = ENGINES[exp.engine]
    make = engine.client
    clients: list[Client] = (
        [make(base_url, exp.params, 1, exp.timeout_s) for _ in range(users)]
        if engine.per_user else [make(base_url, exp.params, users, exp.timeout_s)]
    )
    window_start = (begin or time.perf_counter()) + exp.warmup_s
    window_end = window_start + exp.duration_s
    samples: list[Sample] = []

    async def user(client: Client) -> None:
        while time.perf_counter() < window_end:
            sample = await client.send(endpoint)
            if sample.start >= window_start:
                samples.append(sample)

    try:
        timing = asyncio.ensure_future(measure(window, window_start, window_end))
        await asyncio.gather(*(user(clients[i % len(clients)]) for i in range(users)))
        usage = await timing
    finally:
        await close_all(clients)
    return Measurement(samples, usage)
