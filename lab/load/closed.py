"""closed: c users each send a request, wait for its answer, and send the next.

Requests started during the warm-up are not counted; the window is ``duration_s`` long
and every loop stops by itself at its end (plus one request timeout at most).
"""

import asyncio
import time

from lab.config import Experiment
from lab.load.engines import ENGINES, Client, close_all
from lab.load.samples import Measurement, Sample


async def run(base_url: str, exp: Experiment, endpoint: str, users: int) -> Measurement:
    engine = ENGINES[exp.engine]
    make = engine.client
    clients: list[Client] = (
        [make(base_url, exp.params, 1, exp.timeout_s) for _ in range(users)]
        if engine.per_user else [make(base_url, exp.params, users, exp.timeout_s)]
    )
    t_begin = time.perf_counter()
    window_start = t_begin + exp.warmup_s
    window_end = window_start + exp.duration_s
    samples: list[Sample] = []

    async def user(client: Client) -> None:
        while time.perf_counter() < window_end:
            sample = await client.get(endpoint)
            if sample.start >= window_start:
                samples.append(sample)

    async def window() -> tuple[float, float]:
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        cpu0 = time.process_time()
        await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
        return time.process_time() - cpu0, time.perf_counter() - window_start

    try:
        (cpu, wall), *_ = await asyncio.gather(
            window(), *(user(clients[i % len(clients)]) for i in range(users)))
    finally:
        await close_all(clients)
    return Measurement(samples, wall, cpu, {"clients": len(clients)})
