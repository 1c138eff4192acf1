"""WebSocket clients of the websocket kinds: the lab's own on asyncio protocols (``rawws``,
the default: its CPU per message is about a third of the library's,
``benchmarks/ws_client_cost.py``) and the ``websockets`` library's asyncio client.

Both speak the same protocol to the server: text frames, no compression (the library
offers permessage-deflate unless told not to, and a server that accepts it would measure
zlib), no pings. A refused handshake is `Refused` with its status, a socket the server
closed is `Closed`, whichever engine saw it, so a cell's errors read the same.
"""

import asyncio
import base64
import hashlib
import os
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's, for Sec-WebSocket-Accept
CLOSE_WAIT_S = 1.0  # for the server's close frame, after the window
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


class Refused(Exception):
    """The server did not switch protocols: ``status`` is its HTTP answer (0: not HTTP)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"handshake refused: HTTP {status} {detail}".rstrip())
        self.status = status


class Closed(Exception):
    """The server closed the socket (or the connection was lost)."""


class Conn(Protocol):
    pid: int | None  # the worker that accepted it (the wrapper's first frame), if known

    async def send(self, text: str) -> None: ...

    async def recv(self) -> str: ...

    async def close(self) -> None: ...

    def abort(self) -> None:
        """Drop the connection now: a waiting ``recv`` raises `Closed`."""


# (host, port, request target, timeout_s, extra request headers) → an open connection
Connect = Callable[[str, int, str, float, dict[str, str]], Awaitable[Conn]]


def mask(data: bytes, key: bytes) -> bytes:
    """RFC 6455 masking (every client frame), XOR as one big integer: no numpy, and ~µs for
    the lab's small messages."""
    n = len(data)
    if not n:
        return b""
    key_stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key_stream, "big")).to_bytes(n, "big")


def frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """A final, masked client frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = random.getrandbits(32).to_bytes(4, "big")
    return head + key + mask(payload, key)


class _RawProtocol(asyncio.Protocol):
    """One socket: the handshake's answer, then server frames parsed as they arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self.head: asyncio.Future[bytes] = loop.create_future()  # the handshake's answer
        self._loop = loop
        self._buf = bytearray()
        self._parts: list[bytes] = []  # a fragmented message's frames so far
        self.messages: deque[str] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self.head.done():
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head.set_result(bytes(self._buf[:end]))
            del self._buf[:end + 4]
        self._frames()

    def _frames(self) -> None:
        buf, pos = self._buf, 0
        while len(buf) - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n, at = b1 & 0x7F, pos + 2
            if n >= 126:
                width = 2 if n == 126 else 8
                if len(buf) - at < width:
                    break
                n, at = int.from_bytes(buf[at:at + width], "big"), at + width
            if len(buf) - at < n:
                break
            payload, pos = bytes(buf[at:at + n]), at + n
            self._frame(b0, payload)
        del buf[:pos]

    def _frame(self, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        if opcode == PING:
            self._write(frame(payload, PONG))
        elif opcode == CLOSE:
            if not self.closed.done():
                self._write(frame(payload[:2], CLOSE))  # the closing handshake's answer
                self._lost()
        elif opcode != PONG:  # text, binary or a continuation
            self._parts.append(payload)
            if b0 & 0x80:
                self.messages.append(b"".join(self._parts).decode(errors="replace"))
                self._parts.clear()
                self._wake()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _lost(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.head.done():
            self.head.set_exception(Closed("closed before the handshake's answer"))
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()


class RawConn:
    """The lab's own client on one `_RawProtocol`."""

    def __init__(self, protocol: _RawProtocol) -> None:
        self._p = protocol
        self.pid: int | None = None

    async def send(self, text: str) -> None:
        if self._p.closed.done():
            raise Closed("closed by the server")
        self._p._write(frame(text.encode()))

    async def recv(self) -> str:
        p = self._p
        while not p.messages:
            if p.closed.done():
                raise Closed("closed by the server")
            p.waiter = p._loop.create_future()
            await p.waiter
        return p.messages.popleft()

    async def close(self) -> None:
        p = self._p
        if not p.closed.done():
            p._write(frame((1000).to_bytes(2, "big"), CLOSE))
            try:
                await asyncio.wait_for(asyncio.shield(p.closed), CLOSE_WAIT_S)
            except TimeoutError:
                pass
        if p.transport is not None:
            p.transport.close()

    def abort(self) -> None:
        if self._p.transport is not None:
            self._p.transport.abort()


def _head(raw: bytes) -> tuple[int, str, dict[str, str]]:
    """The handshake answer's status, reason and headers (lower-case names)."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise Refused(0, f"(not HTTP: {lines[0][:60]!r})")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


async def raw_connect(host: str, port: int, target: str, timeout_s: float,
                      headers: dict[str, str]) -> Conn:
    loop = asyncio.get_running_loop()
    key = base64.b64encode(os.urandom(16))
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
               f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()
    async with asyncio.timeout(timeout_s):
        transport, protocol = await loop.create_connection(lambda: _RawProtocol(loop),
                                                           host, port)
        try:
            transport.write(request)
            status, reason, answer = _head(await protocol.head)
            if status != 101:
                raise Refused(status, reason)
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
            if answer.get("sec-websocket-accept") != accept:
                raise Refused(101, "with a wrong Sec-WebSocket-Accept")
        except BaseException:
            transport.close()
            raise
    return RawConn(protocol)


class LibraryConn:
    """The ``websockets`` library's asyncio client, its exceptions as the lab's."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self.pid: int | None = None

    async def send(self, text: str) -> None:
        try:
            await self._ws.send(text)
        except ConnectionClosed as e:
            raise Closed(str(e)) from None

    async def recv(self) -> str:
        try:
            message = await self._ws.recv()
        except ConnectionClosed as e:
            raise Closed(str(e)) from None
        return message if isinstance(message, str) else message.decode(errors="replace")

    async def close(self) -> None:
        await self._ws.close()

    def abort(self) -> None:
        self._ws.transport.abort()


async def library_connect(host: str, port: int, target: str, timeout_s: float,
                          headers: dict[str, str]) -> Conn:
    try:
        ws = await ws_connect(f"ws://{host}:{port}{target}", additional_headers=headers,
                              compression=None,
                                   proxy=None, open_timeout=timeout_s, ping_interval=None,
                                   max_size=None, close_timeout=CLOSE_WAIT_S)
    except InvalidStatus as e:
        raise Refused(e.response.status_code, e.response.reason_phrase) from None
    except InvalidHandshake as e:
        raise Refused(0, f"({type(e).__name__}: {e})") from None
    return LibraryConn(ws)


WS_ENGINES: dict[str, Connect] = {"rawws": raw_connect, "websockets": library_connect}
