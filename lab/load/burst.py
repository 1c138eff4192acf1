"""burst: N requests sent at once; the batch's wall time and each request's latency.

This is the article's own experiment.
"""

import asyncio
import time

from lab.config import Experiment
from lab.load.engines import ENGINES
from lab.load.samples import Measurement


async def run(base_url: str, exp: Experiment, endpoint: str, n: int) -> Measurement:
    client = ENGINES[exp.engine].client(base_url, exp.params, n, exp.timeout_s)
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        samples = await asyncio.gather(*(client.get(endpoint) for _ in range(n)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        await client.aclose()
    return Measurement(list(samples), wall, cpu)
