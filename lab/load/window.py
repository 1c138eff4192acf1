"""Time a measured window that starts after a warm-up, on the perf_counter clock.

perf_counter is CLOCK_MONOTONIC on Linux, shared by every process, so client processes
given the same ``begin`` measure the same window.
"""

import asyncio
import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

from lab.load.monitor import Usage, Window


async def sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.perf_counter()))


async def measure(window: Window, start: float, end: float) -> Usage:
    await sleep_until(start)
    window.start()
    await sleep_until(end)
    return window.end()


@contextmanager
def quiet_gc() -> Iterator[None]:
    """No garbage-collector pauses in the client while it measures: a pause of tens of ms
    (seen here at 3000 req/s) would be charged to the server as latency. Collected before,
    frozen and resumed after; reference counting still frees almost everything."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
