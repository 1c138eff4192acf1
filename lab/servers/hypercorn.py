"""hypercorn: `python -m hypercorn`, asyncio/uvloop/trio worker classes."""

from lab.servers.base import Adapter, choice, integer, switch

ADAPTER = Adapter(
    name="hypercorn",
    distribution="hypercorn",
    module="hypercorn",
    base_argv=lambda app, host, port, workers: [
        app, "--bind", f"{host}:{port}", "--workers", str(workers),
    ],
    options={
        "worker_class": choice("--worker-class", ("asyncio", "uvloop", "trio"), "event loop"),
        "keep_alive": integer("--keep-alive", 0, "keep-alive timeout, s"),
        "backlog": integer("--backlog", 1, "listen backlog"),
        "graceful_timeout": integer("--graceful-timeout", 0, "shutdown grace, s"),
        "access_log": switch(["--access-logfile", "-"], [], "log every request"),
    },
    defaults={"access_log": False},
    facts={
        "loop": ("worker_class", "asyncio"),
        "http": (None, "h11 / h2 (pure Python)"),
        "keep-alive": ("keep_alive", "5 s"),
        "access log": ("access_log", "off"),
    },
    h2c=lambda options: (),  # h11 and h2 (prior knowledge) on one port, always
)
