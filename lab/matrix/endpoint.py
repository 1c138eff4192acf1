"""What one endpoint of an experiment sends, and what counts as a good answer to it.

A config's endpoint is a path (``"/hello"``: GET, any 2xx) or a table with a method,
query, headers, a JSON or raw body, the expected status and an optional body check (a
substring, or a JSON subset). Every engine sends the same request and applies the same
check: a response that fails it is an error of its kind (``http_404``, ``bad_body``), never
a success.
"""

import json
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Endpoint:
    path: str
    method: str = "GET"
    query: Pairs = ()
    headers: Pairs = ()
    body: bytes | None = None  # as sent: raw, or the JSON body encoded
    status: int | None = None  # the expected status; None: any 2xx
    contains: str | None = None  # the body must contain this text
    json_subset: str | None = None  # JSON text: the body must be JSON containing this
    name: str | None = None  # the config's name for it, else derived from method and path

    @property
    def label(self) -> str:
        """How results and reports name it: ``/hello``, ``POST /items``, or its name."""
        if self.name:
            return self.name
        text = self.path if self.method == "GET" else f"{self.method} {self.path}"
        return text + (f"?{urlencode(self.query)}" if self.query else "")

    @property
    def slug(self) -> str:
        """Its part of a cell id: ``hello``, ``post-items``, ``root``."""
        if self.name:
            return self.name
        path = self.path.strip("/").replace("/", "_") or "root"
        return path if self.method == "GET" else f"{self.method.lower()}-{path}"

    @cached_property
    def closes(self) -> bool:
        """Sent with ``Connection: close``: the client closes the connection after the answer
        (every engine: rawhttp itself, httpx and aiohttp by the header, wrk by the server's
        answer to it, which the wrapper's connection count checks)."""
        return any(n.lower() == "connection" and v.strip().lower() == "close"
                   for n, v in self.headers)

    def closing(self) -> "Endpoint":
        """The same request on a connection of its own (``connection = "close"``)."""
        if self.closes:
            return self
        kept = tuple((n, v) for n, v in self.headers if n.lower() != "connection")
        return replace(self, headers=(*kept, ("Connection", "close")))

    def status_ok(self, status: int) -> bool:
        return status == self.status if self.status is not None else 200 <= status < 300

    def body_problem(self, body: bytes) -> bool:
        """Does the body fail the endpoint's check (``bad_body``)?"""
        if self.contains is not None and self.contains.encode() not in body:
            return True
        if self.json_subset is not None:
            try:
                data = json.loads(body)
            except ValueError:
                return True
            return not is_subset(json.loads(self.json_subset), data)
        return False

    def record(self) -> dict[str, Any]:
        """The request and its check, for the results line and the cell's key."""
        return {"method": self.method, "path": self.path, "query": dict(self.query),
                "headers": dict(self.headers),
                "body": None if self.body is None else self.body.decode("utf-8", "replace"),
                "status": self.status or "2xx", "contains": self.contains,
                "json": None if self.json_subset is None else json.loads(self.json_subset)}


def is_subset(want: Any, got: Any) -> bool:
    """Every key of ``want`` in ``got`` with a matching value, recursively; lists match
    element by element; other values by equality (1 and 1.0 alike, true and 1 not)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and is_subset(v, got[k])
                                             for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(want) == len(got) and all(
            is_subset(w, g) for w, g in zip(want, got, strict=True))
    if isinstance(want, bool) or isinstance(got, bool):
        return type(want) is type(got) and want == got
    return bool(want == got)
