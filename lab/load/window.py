"""Time a measured window that starts after a warm-up, on the perf_counter clock.

perf_counter is CLOCK_MONOTONIC on Linux, shared by every process, so client processes
given the same ``begin`` measure the same window.
"""

import asyncio
import time

from lab.monitor import Usage, Window


async def sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.perf_counter()))


async def measure(window: Window, start: float, end: float) -> Usage:
    await sleep_until(start)
    window.start()
    await sleep_until(end)
    return window.end()
