"""The experiment kinds' runners: each runs against a base URL and returns raw samples."""

from collections.abc import Callable, Coroutine
from typing import Any

from lab.load import burst, closed, interference, open_model
from lab.load.samples import Measurement

# (base_url, exp, endpoint, load, window[, begin]) → the cell's raw samples
Runner = Callable[..., Coroutine[Any, Any, Measurement]]
RUNNERS: dict[str, Runner] = {
    "burst": burst.run,
    "closed": closed.run,
    "open": open_model.run,
    "interference": interference.run,
}
MULTI_PROCESS = ("closed", "open")  # the kinds that accept clients = k
