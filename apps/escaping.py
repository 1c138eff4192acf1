"""apps.article whose workers each start a helper that escapes into its own session
(``setsid``), as a daemonising library might: for testing that the lab still ends it."""

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from apps import article


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    helper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    async with article.lifespan(app):
        yield
    del helper  # left running on purpose: the lab must end it


app = FastAPI(title="escaping", lifespan=lifespan)
app.include_router(article.app.router)
