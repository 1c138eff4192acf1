"""The apps' contract with the lab, and the thin ASGI wrapper that fulfils it for any app.

Servers serve ``lab.asgi_wrap:app``; the user's app (``LAB_APP = "module:attr"``, imported
from ``LAB_APP_DIR``) runs inside, untouched. The wrapper

- adds ``x-lab-worker: <pid>`` to every HTTP response, so every engine (wrk's Lua script
  too) attributes each answer to the worker that gave it, whatever the body;
- passes lifespan through, and writes the worker's ready marker (``LAB_READY_DIR/<pid>``)
  once the app's start-up has completed, so the lab waits for *every* worker;
- starts an app without lifespan support on every server: when the app raises or returns
  before completing start-up (a bare ASGI callable), the wrapper completes it for the
  server itself, as uvicorn's ``--lifespan auto`` would, and marks the worker ready; it
  also marks a worker at its first request (a server that runs no lifespan at all).

One module that both sides import: the lab reads the header's name and the environment's
names from here, the servers the wrapper. It imports only the standard library at module
level, and the user's app only where ``LAB_APP`` is set (in the servers), so the lab can
import it for the names. It runs on any event loop (asyncio, uvloop, trio): it starts no
tasks and only relays messages.
"""

import importlib
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

WORKER_HEADER = "x-lab-worker"  # lower case: what every server sends and wrk's table holds
APP_ENV = "LAB_APP"  # the user's app, "module:attr"
APP_DIR_ENV = "LAB_APP_DIR"  # the folder it is imported from (optional)
READY_DIR_ENV = "LAB_READY_DIR"  # one marker file per worker that finished start-up
SERVED = "lab.asgi_wrap:app"  # what the servers are given when the lab wraps the app

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def mark_ready() -> None:
    """This worker has started: its marker file, named by its pid."""
    ready_dir = os.environ.get(READY_DIR_ENV)
    if ready_dir:
        Path(ready_dir, str(os.getpid())).touch()


class Wrapped:
    """The user's app with the worker header and ready markers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._header: tuple[bytes, bytes] | None = None  # built in the worker, not at import
        self._marked = False

    def _mark(self) -> None:
        if not self._marked:
            self._marked = True
            mark_ready()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self._header is None:
                self._header = (WORKER_HEADER.encode(), str(os.getpid()).encode())
                self._mark()
            header = self._header

            async def send_with_header(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", ()), header]}
                await send(message)

            await self.app(scope, receive, send_with_header)
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = {"received": False, "answered": False}

        async def relay_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                state["received"] = True
            return message

        async def relay_send(message: Message) -> None:
            if message["type"] in ("lifespan.startup.complete", "lifespan.startup.failed"):
                state["answered"] = True
                if message["type"] == "lifespan.startup.complete":
                    self._mark()
            await send(message)

        try:
            await self.app(scope, relay_receive, relay_send)
        except Exception as e:
            if state["answered"]:
                raise  # failed start-up (already told) or a failure at shutdown: the app's
            print(f"lab.asgi_wrap: the app does not support lifespan ({type(e).__name__}: "
                  f"{e}); starting without it", file=sys.stderr, flush=True)
        if state["answered"]:
            return
        # No lifespan support: the app raised or returned before start-up completed.
        if not state["received"]:
            await receive()  # lifespan.startup
        self._mark()
        await send({"type": "lifespan.startup.complete"})
        while (await receive())["type"] != "lifespan.shutdown":
            pass
        await send({"type": "lifespan.shutdown.complete"})


def load_app(spec: str, app_dir: str | None = None) -> Any:
    """The object ``spec`` ("module:attr") names, imported with ``app_dir`` first on the
    path. Raises ImportError or AttributeError as importing it would."""
    if app_dir and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    module, _, attr = spec.partition(":")
    loaded: Any = importlib.import_module(module)
    for part in attr.split("."):
        loaded = getattr(loaded, part)
    return loaded


async def _unset(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError(f"{SERVED} serves the app named by ${APP_ENV} (module:attr), which "
                       "is not set")


# Loaded at import in each server process, so a broken app fails the server's start as it
# would unwrapped (hypercorn looks `app` up in the module's namespace: it must be there).
# The lab itself imports this module without $LAB_APP, for the names above.
app = Wrapped(load_app(os.environ[APP_ENV], os.environ.get(APP_DIR_ENV))
              if os.environ.get(APP_ENV) else _unset)
