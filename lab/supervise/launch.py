"""How a server serves the app, wherever it starts: what it imports, the environment that
names the user's app to the wrapper, and when it counts as ready."""

from dataclasses import dataclass

from lab.matrix.config import Cell, LabSettings
from lab.servers.asgi_wrap import APP_DIR_ENV, APP_ENV, LOOP_METER_ENV, SERVED, THREADS_ENV
from lab.supervise.process import Readiness


@dataclass(frozen=True)
class Launch:
    """How a server serves the app: what it is given to import, the environment that names
    the user's app to the wrapper (and the configuration's thread limiter, ``threads``), and
    when it is ready."""

    app: str
    env: dict[str, str]
    readiness: Readiness
    app_dir: str | None

    @classmethod
    def of(cls, lab: LabSettings, threads: int | None = None) -> "Launch":
        readiness = Readiness(lab.ready_path, lab.ready_status, markers=lab.wrap)
        if not lab.wrap:  # the config refuses lab.threads without the wrapper
            return cls(lab.app, {}, readiness, lab.app_dir)
        env = {APP_ENV: lab.app, **({APP_DIR_ENV: lab.app_dir} if lab.app_dir else {}),
               **({LOOP_METER_ENV: "1"} if lab.loop_meter else {}),
               **({THREADS_ENV: str(threads)} if threads is not None else {})}
        return cls(SERVED, env, readiness, lab.app_dir)

    @classmethod
    def for_cell(cls, lab: LabSettings, cell: Cell) -> "Launch":
        return cls.of(lab, cell.threads)
