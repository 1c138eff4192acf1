"""Is the lab's client the bottleneck? For each server at 1 worker on /hello, measure the
same closed loop with the lab's engines and with wrk, side by side, and print the ratios.

    python -m benchmarks.client_ceiling [--users 64] [--duration 3] [--server NAME ...]

A ratio well below 1 means the Python client, not the server, set the figure. wrk must be
installed (apt-get install wrk).
"""

import argparse
import os
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

from tabulate import tabulate

from lab.load import wrk
from lab.load.stats import MachineShare
from lab.matrix.config import Cell, Experiment, LabSettings
from lab.matrix.endpoint import Endpoint
from lab.run.runner import Context, Launch, measure
from lab.servers import ADAPTERS, Adapter
from lab.store.results import RunDir
from lab.supervise.interrupt import Interrupts
from lab.supervise.process import running

ENGINES = (("aiohttp", 1), ("aiohttp", 2), ("httpx", 1), ("wrk", 1))  # (engine, processes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.client_ceiling",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    p.add_argument("--server", action="append", choices=sorted(ADAPTERS))
    args = p.parse_args(argv)
    if not wrk.available():
        print("error: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    lab = LabSettings()
    launch = Launch.of(lab)
    rows = []
    with TemporaryDirectory(prefix="ceiling-") as tmp:
        for name in args.server or [n for n, a in ADAPTERS.items() if a.installed()]:
            adapter = ADAPTERS[name]
            def server_argv(port: int, a: Adapter = adapter) -> list[str]:
                return a.argv(sys.executable, launch.app, lab.host, port, 1, {})

            run = RunDir(Path(tmp))
            run.logs.mkdir(exist_ok=True)
            ctx = Context(lab, run, Interrupts(), MachineShare(len(os.sched_getaffinity(0)), True))
            with running(server_argv, lab.host, 1, Path(tmp, f"{name}.log"), lab.start_timeout_s,
                         lab.stop_grace_s, env=launch.env, readiness=launch.readiness,
                         app_dir=launch.app_dir) as server:
                results = {}
                for engine, clients in ENGINES:
                    exp = Experiment("ceiling", "closed", (Endpoint("/hello"),), (args.users,), {},
                                     engine, 10.0, duration_s=args.duration, warmup_s=1.0,
                                     clients=clients)
                    cell = Cell(name, 1, (), exp, Endpoint("/hello"), args.users, 1)
                    results[(engine, clients)] = measure(cell, server, ctx, engine)
            ceiling = results[("wrk", 1)].rps or float("nan")
            for (engine, clients), f in results.items():
                rps = f.rps or 0.0
                rows.append([name, f"{engine} ×{clients}", f"{rps:.0f}",
                             f"{f.client_cpu_pct or 0:.0f}", f"{f.server_cpu_pct or 0:.0f}",
                             f"{rps / ceiling:.2f}"])
    print(tabulate(rows, headers=["server", "client engine × processes", "req/s",
                                  "client CPU %", "server CPU %", "÷ wrk"],
                   tablefmt="github", disable_numparse=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
