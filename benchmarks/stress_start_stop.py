"""Start and stop every server at 1 and 2 workers many times; print failures (expected 0)
and start-to-ready and stop-time percentiles. Not part of the default tests.

    python -m benchmarks.stress_start_stop [--cycles 50] [--server NAME ...]
"""

import argparse
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
from tabulate import tabulate

from lab.errors import ServerStartError
from lab.matrix.config import LabSettings
from lab.servers import ADAPTERS, Adapter
from lab.supervise import pgroup
from lab.supervise.process import running


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.stress_start_stop",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=50)
    p.add_argument("--server", action="append", choices=sorted(ADAPTERS))
    args = p.parse_args(argv)
    lab = LabSettings()
    rows = []
    with TemporaryDirectory(prefix="stress-") as tmp:
        for name in args.server or [n for n, a in ADAPTERS.items() if a.installed()]:
            adapter = ADAPTERS[name]
            for workers in (1, 2):
                starts, stops, failures, killed = [], [], [], 0
                for i in range(args.cycles):
                    try:
                        def server_argv(port: int, a: Adapter = adapter, w: int = workers
                                 ) -> list[str]:
                            return a.argv(sys.executable, lab.app, lab.host, port, w, {})

                        log = Path(tmp, f"{name}-{workers}.log")
                        with running(server_argv, lab.host, workers, log,
                                     lab.start_timeout_s, lab.stop_grace_s) as server:
                            httpx.get(f"{server.base_url}/hello", timeout=5).raise_for_status()
                            pgid = server.pgid
                        assert server.last_stop is not None and server.ready_s is not None
                        starts.append(server.ready_s)
                        stops.append(server.last_stop.seconds)
                        killed += server.last_stop.killed
                        if pgroup.members(pgid):
                            failures.append(f"cycle {i}: group {pgid} left processes")
                    except (ServerStartError, httpx.HTTPError) as e:
                        failures.append(f"cycle {i}: {e}")
                rows.append([name, workers, args.cycles, len(failures), killed,
                             *(f"{percentile(starts, q):.3f}" for q in (50, 90, 99)),
                             *(f"{percentile(stops, q):.3f}" for q in (50, 90, 99))])
                for f in failures:
                    print(f"{name} w{workers}: {f}", file=sys.stderr)
    print(tabulate(rows, headers=["server", "workers", "cycles", "failures", "SIGKILLed",
                                  "ready p50 s", "ready p90 s", "ready p99 s",
                                  "stop p50 s", "stop p90 s", "stop p99 s"],
                   tablefmt="github", disable_numparse=True))
    return 0 if all(r[3] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
