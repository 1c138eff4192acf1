"""apps.article with workers that ignore SIGTERM: for testing that the lab still stops
them (SIGKILL to the whole group after the grace period) and records that it had to."""

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from apps import article


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with article.lifespan(app):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        yield


app = FastAPI(title="stubborn", lifespan=lifespan)
app.include_router(article.app.router)
