"""granian: Rust HTTP core; `--interface asgi` is required (its default, rsgi, answers 500)."""

from collections.abc import Mapping

from lab.servers.base import Adapter, OptionValue, choice, integer, switch


def h2c(options: Mapping[str, OptionValue]) -> tuple[str, ...] | str:
    """Its default ``--http auto`` serves HTTP/1.1 and h2c on one port (one start for both)."""
    return "its --http 1 serves HTTP/1.1 only" if options.get("http") == "1" else ()

ADAPTER = Adapter(
    name="granian",
    distribution="granian",
    module="granian",
    base_argv=lambda app, host, port, workers: [
        "--interface", "asgi", "--host", host, "--port", str(port), "--workers", str(workers),
        app,
    ],
    options={
        "loop": choice("--loop", ("auto", "asyncio", "uvloop", "rloop"), "event loop"),
        "runtime_mode": choice("--runtime-mode", ("auto", "mt", "st"), "Rust runtime mode"),
        "runtime_threads": integer("--runtime-threads", 1, "Rust runtime threads per worker"),
        "blocking_threads": integer("--blocking-threads", 1, "blocking threads per worker"),
        "backpressure": integer("--backpressure", 1, "max concurrent requests per worker"),
        "http": choice("--http", ("auto", "1", "2"), "HTTP version"),
        "task_impl": choice("--task-impl", ("asyncio", "rust"), "async task implementation"),
        "workers_kill_timeout": integer("--workers-kill-timeout", 1, "worker kill timeout, s"),
        "access_log": switch(["--access-log"], ["--no-access-log"], "log every request"),
    },
    defaults={"access_log": False},
    facts={
        "loop": ("loop", "auto (uvloop if installed)"),
        "http": ("http", "auto: HTTP/1.1 + 2 (Rust hyper)"),
        "keep-alive": (None, "on"),
        "runtime threads": ("runtime_threads", "1"),
        "access log": ("access_log", "off"),
    },
    h2c=h2c,
)
