"""gunicorn: `python -m gunicorn -k uvicorn_worker.UvicornWorker`, uvicorn's server in the
workers that gunicorn's arbiter forks, watches and restarts."""

from lab.servers.base import Adapter, choice, integer, no_h2c, switch

WORKER_CLASSES = ("uvicorn_worker.UvicornWorker", "uvicorn_worker.UvicornH11Worker")


def _bind(host: str, port: int) -> str:
    # gunicorn splits host:port at the first colon unless an IPv6 host is in brackets
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


ADAPTER = Adapter(
    name="gunicorn",
    distribution="gunicorn",
    module="gunicorn",
    base_argv=lambda app, host, port, workers: [
        app, "--bind", _bind(host, port), "--workers", str(workers), "--error-logfile", "-",
    ],
    options={
        "worker_class": choice("--worker-class", WORKER_CLASSES,
                               "uvicorn worker: auto loop and HTTP, or asyncio + h11"),
        "keep_alive": integer("--keep-alive", 0, "keep-alive timeout, s"),
        "backlog": integer("--backlog", 1, "listen backlog"),
        "graceful_timeout": integer("--graceful-timeout", 0, "shutdown grace, s"),
        "timeout": integer("--timeout", 0, "a worker silent this long is restarted, s"),
        "access_log": switch(["--access-logfile", "-"], [], "log every request"),
    },
    defaults={"worker_class": WORKER_CLASSES[0], "access_log": False},
    facts={
        "loop": (None, "auto (uvloop if installed); UvicornH11Worker: asyncio"),
        "http": ("worker_class", "auto (httptools if installed)"),
        "keep-alive": ("keep_alive", "2 s"),
        "access log": ("access_log", "off"),
    },
    runs_on=("uvicorn-worker", "uvicorn"),
    # UvicornWorker builds uvicorn's Config from gunicorn's settings and its CONFIG_KWARGS
    # (loop, http): nothing sets uvicorn's http2.
    h2c=no_h2c("uvicorn_worker's workers have no setting for uvicorn's --http2"),
)
