"""interference: does a slow endpoint stall *unrelated* requests?

The probe endpoint's latency is measured idle, then again while c users keep the slow
endpoint busy. Each probe opens a new connection, so a multi-worker server may hand it to
any worker, as it would a new client; with ``probe_connect = "warm"`` (the default) that
connection is opened and answered once before the probe is timed. This shows `async def`
+ `time.sleep` stalling the event loop for everyone on that worker, and `def` +
`time.sleep` not doing so.
"""

import asyncio

from lab.load.engines import ENGINES, Client, close_all
from lab.load.histogram import latency_figures
from lab.load.monitor import Window
from lab.load.samples import Measurement, Sample, Tally
from lab.matrix.config import Experiment
from lab.matrix.endpoint import Endpoint
from lab.store.schema import InterferenceFigures, KindFigures


async def _probe(base_url: str, exp: Experiment, interval_s: float) -> list[Sample]:
    out = []
    probe = exp.probe
    for _ in range(exp.probes):
        # A client per probe: a fresh connection, as an unrelated user would open. Warm
        # (the default): opened and answered once before the timed request, so the probe
        # times the server's answer, not the connection's set-up.
        client = ENGINES[exp.engine].client(base_url, {}, 1, exp.timeout_s)
        try:
            if exp.probe_connect == "warm":
                await client.connect(1, probe)
            out.append(await client.send(probe))
        finally:
            await client.aclose()
        await asyncio.sleep(interval_s)
    return out


async def run(base_url: str, exp: Experiment, endpoint: Endpoint, users: int,
              window: Window) -> Measurement:
    # Idle probes go back to back: spaced out, each would wait for the machine to wake
    # from idle (a request after 20 ms idle read 0.9 ms on one connection here, 0.18 ms
    # back to back); loaded, the interval spreads them over the background's cycle.
    idle = await _probe(base_url, exp, 0.0)
    stop = asyncio.Event()
    clients: list[Client] = [ENGINES[exp.engine].client(base_url, exp.params, 1, exp.timeout_s)
                             for _ in range(users)]
    background: list[Sample] = []

    async def user(client: Client) -> None:
        while not stop.is_set():
            background.append(await client.send(endpoint))

    tasks = [asyncio.create_task(user(c)) for c in clients]
    try:
        await asyncio.sleep(exp.settle_s)
        window.start()
        loaded = await _probe(base_url, exp, exp.probe_interval_s)
        usage = window.end()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)  # each ends after one request
        await close_all(clients)
    idle_tally = Tally.of(idle)
    return Measurement(loaded, usage, KindFigures(interference=InterferenceFigures(
        probe=exp.probe.label, probe_connect=exp.probe_connect,
        idle_latency_ms=latency_figures(idle_tally.histogram),
        idle_histogram=idle_tally.histogram, idle_errors=sum(idle_tally.errors.values()),
        background_requests=len(background),
        background_errors=sum(s.error is not None for s in background))))
