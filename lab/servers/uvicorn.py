"""uvicorn: `python -m uvicorn`, multi-process via its own supervisor."""

from lab.servers.base import Adapter, choice, integer, switch

ADAPTER = Adapter(
    name="uvicorn",
    distribution="uvicorn",
    module="uvicorn",
    base_argv=lambda app, host, port, workers: [
        app, "--host", host, "--port", str(port), "--workers", str(workers),
    ],
    options={
        "loop": choice("--loop", ("auto", "asyncio", "uvloop"), "event loop"),
        "http": choice("--http", ("auto", "h11", "httptools"), "HTTP/1.1 implementation"),
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
)
