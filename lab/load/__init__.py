"""Experiment kinds: each runs against a base URL and returns raw samples."""

from collections.abc import Awaitable, Callable

from lab.config import Experiment
from lab.load import burst, closed
from lab.load.samples import Measurement, Sample

Runner = Callable[[str, Experiment, str, int], Awaitable[Measurement]]
RUNNERS: dict[str, Runner] = {"burst": burst.run, "closed": closed.run}

__all__ = ["RUNNERS", "Measurement", "Sample"]
