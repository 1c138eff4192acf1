"""burst: N requests sent at once; the batch's wall time and each request's latency.

This is the article's own experiment.
"""

import asyncio

from lab.config import Experiment
from lab.endpoint import Endpoint
from lab.load.engines import ENGINES
from lab.load.samples import Measurement
from lab.monitor import Window


async def run(base_url: str, exp: Experiment, endpoint: Endpoint, n: int,
              window: Window) -> Measurement:
    client = ENGINES[exp.engine].client(base_url, exp.params, n, exp.timeout_s)
    try:
        window.start()
        samples = await asyncio.gather(*(client.send(endpoint) for _ in range(n)))
        usage = window.end()
    finally:
        await client.aclose()
    return Measurement(list(samples), usage)
