"""A slow upstream HTTP API, the kind a real service waits on: the lab starts it as a
service of the run (see ``[services]`` in configs/realistic.toml) and passes its URL to the
app under test in ``UPSTREAM_URL``."""

import asyncio

from fastapi import FastAPI, Query

app = FastAPI(title="upstream")


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/slow")
async def slow(delay: float = Query(0.05, ge=0, le=10)) -> dict[str, object]:
    await asyncio.sleep(delay)  # the upstream itself never blocks: its latency is the delay
    return {"upstream": "slow", "delay": delay}
