"""apps.article behind a middleware that buffers: under ``/held`` every response's body is
held until its last message (``more_body`` false) and sent as one, as a middleware that
reads a whole body (to compress, sign or log it) does. Other paths pass through."""

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apps.article import app as article

HELD = "/held"


class HoldBody:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(HELD + "/"):
            await self.app(scope, receive, send)
            return
        parts: list[bytes] = []

        async def held(message: Message) -> None:
            if message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"".join(parts)}
            await send(message)

        inner: dict[str, Any] = {**scope, "path": scope["path"][len(HELD):]}
        await self.app(inner, receive, held)


app = HoldBody(article)
