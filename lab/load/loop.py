"""The event loop the lab's clients run on: uvloop, whose transports cost the client less
CPU per request than asyncio's (``benchmarks/client_cost.py``)."""

from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return uvloop.run(coro)
