"""anyio's default thread limiter in a worker: where FastAPI and Starlette run `def`
endpoints and sync dependencies (40 tokens per event loop unless the app changes it).

The wrapper applies the lab's ``threads`` axis to it (``LAB_THREADS``) and the loop meter
samples it. Standard library only at import: anyio is looked up only when the app has
imported it, so a bare ASGI app is served as before.
"""

import os
import sys
from typing import Any


def default_limiter() -> Any | None:
    """The running event loop's default thread limiter, when the app uses anyio (called on
    the loop, inside a request); None for an app that does not, or a loop anyio does not
    know."""
    if "anyio" not in sys.modules:
        return None
    try:
        from anyio.to_thread import current_default_thread_limiter

        return current_default_thread_limiter()
    except Exception as e:  # anyio's NoEventLoopError, sniffio's, a foreign loop
        print(f"lab.servers.threadpool: no default thread limiter ({type(e).__name__}: {e})",
              file=sys.stderr, flush=True)
        return None


def apply_tokens(variable: str) -> Any | None:
    """The default limiter (`default_limiter`), given the tokens named by ``$variable`` if
    set. A bad value is reported once and the app's own kept."""
    limiter = default_limiter()
    if limiter is None:
        return None
    given = os.environ.get(variable)
    if given:
        try:
            limiter.total_tokens = int(given)
        except (ValueError, TypeError) as e:
            print(f"lab.servers.threadpool: ${variable} = {given!r} not applied ({e})",
                  file=sys.stderr, flush=True)
    return limiter


def waiting(limiter: Any) -> int:
    """The tasks waiting for a token. Read from the watchdog's thread: the queue's length
    alone (``statistics()`` would copy the set of borrowers while the loop changes it)."""
    queue = getattr(limiter, "_wait_queue", None)
    if queue is not None:
        return len(queue)
    return int(limiter.statistics().tasks_waiting)  # another backend: trio's limiter
