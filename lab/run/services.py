"""Services of a run: apps the measured app depends on (a slow upstream API), each served
once on loopback for the whole run by a real server in a guarded process group, and
stopped with everything else. Every measured server gets their URLs in its environment."""

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from lab.errors import ServerStartError, ServiceError
from lab.matrix.config import LabSettings, Service
from lab.servers import ADAPTERS
from lab.store.results import RunDir
from lab.supervise.process import start, url_host
from lab.supervise.reaper import Ledger

DATA_DIR_ENV = "LAB_DATA_DIR"  # a folder of the run the app may write to (its database)


@contextmanager
def running(services: tuple[Service, ...], lab: LabSettings, run: RunDir,
            check: Callable[[], None], hurry: Callable[[], bool]) -> Iterator[dict[str, str]]:
    """The environment every measured server gets: each service's URL, and the run's
    data folder. The services are stopped on exit, whatever happened inside."""
    data = run.path / "data"
    data.mkdir(exist_ok=True)
    env = {DATA_DIR_ENV: str(data.resolve())}  # the servers run in the app's folder
    with ExitStack() as stack:
        for service in services:
            def argv(port: int, s: Service = service) -> list[str]:
                return ADAPTERS[s.server].argv(sys.executable, s.app, lab.host, port, 1, {})

            try:
                server = start(argv, lab.host, 1, run.logs / f"service-{service.name}.log",
                               lab.start_timeout_s, check=check, ledger=Ledger(run.path),
                               env=lab.placement.client_env())
            except ServerStartError as e:
                raise ServiceError(f"services.{service.name}: did not start ({e.reason})") \
                    from None
            stack.callback(server.stop, lab.stop_grace_s, hurry)
            env[service.url_env] = f"http://{url_host(lab.host)}:{server.port}"
        yield env
