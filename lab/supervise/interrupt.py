"""SIGINT/SIGTERM handling: handlers only record the signal; the run loop acts on it."""

import asyncio
import signal
from collections.abc import Awaitable
from types import FrameType
from typing import Any, TypeVar

from lab.errors import Interrupted

T = TypeVar("T")


class Interrupts:
    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0
        self._task: asyncio.Future[Any] | None = None

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # HUP: terminal closed
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _: FrameType | None) -> None:
        self.count += 1
        self.signum = self.signum or signum
        task = self._task
        if task is not None and not task.done():
            # Wakes the event loop, so a running experiment stops at once.
            task.get_loop().call_soon_threadsafe(task.cancel)

    @property
    def hurry(self) -> bool:
        """A second signal: stop servers with SIGKILL, without a grace period."""
        return self.count >= 2

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)

    async def guard(self, aw: Awaitable[T]) -> T:
        """Run ``aw`` so that a signal cancels it and surfaces as ``Interrupted``."""
        task = asyncio.ensure_future(aw)
        self._task = task
        if self.signum is not None:  # it came before there was a task to cancel
            task.cancel()
        try:
            return await task
        except asyncio.CancelledError:
            self.check()
            raise
        finally:
            self._task = None
