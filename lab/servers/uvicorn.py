"""uvicorn: `python -m uvicorn`, multi-process via its own supervisor."""

from collections.abc import Mapping
from importlib import util

from lab.servers.base import Adapter, OptionValue, choice, integer, switch


def h2c(options: Mapping[str, OptionValue]) -> tuple[str, ...] | str:
    """uvicorn's HTTP/2 is its zttp protocol's (``--http zttp --http2``, the `zttp` package):
    an h2 cell's server is started with it, unless another protocol was chosen."""
    http = options.get("http", "auto")
    if http not in ("auto", "zttp"):
        return f"its --http {http} has no HTTP/2; --http zttp --http2 has"
    if util.find_spec("zttp") is None:
        return "its HTTP/2 (--http zttp --http2) needs the zttp package, not installed"
    return ("--http2",) if http == "zttp" else ("--http", "zttp", "--http2")

ADAPTER = Adapter(
    name="uvicorn",
    distribution="uvicorn",
    module="uvicorn",
    base_argv=lambda app, host, port, workers: [
        app, "--host", host, "--port", str(port), "--workers", str(workers),
    ],
    options={
        "loop": choice("--loop", ("auto", "asyncio", "uvloop"), "event loop"),
        "http": choice("--http", ("auto", "h11", "httptools", "zttp"),
                       "HTTP/1.1 implementation (zttp: also HTTP/2 in h2 cells)"),
        # none: WebSockets off, a handshake is answered 404 (uvicorn 0.55's choices)
        "ws": choice("--ws", ("auto", "none", "websockets", "websockets-sansio", "wsproto"),
                     "WebSocket implementation"),
        "access_log": switch(["--access-log"], ["--no-access-log"], "log every request"),
        "timeout_keep_alive": integer("--timeout-keep-alive", 0, "keep-alive timeout, s"),
        "limit_concurrency": integer("--limit-concurrency", 1, "503 above this many tasks"),
        "backlog": integer("--backlog", 1, "listen backlog"),
    },
    defaults={"access_log": False},
    facts={
        "loop": ("loop", "auto (uvloop if installed)"),
        "http": ("http", "auto (httptools if installed)"),
        "keep-alive": ("timeout_keep_alive", "5 s"),
        "access log": ("access_log", "on"),
    },
    h2c=h2c,
)
