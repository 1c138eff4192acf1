"""What every engine puts on the request line: the same path encoding and the same query."""

from collections.abc import Mapping
from urllib.parse import quote, urlencode

from lab.matrix.endpoint import Endpoint

Params = Mapping[str, str | int | float | bool]
# RFC 3986 path characters stay as they are; anything else (a space, "é") is
# percent-encoded, as httpx and aiohttp encode it, so every engine requests the same path.
PATH_SAFE = "/:@!$&'()*+,;=~%"


def query_params(params: Params) -> dict[str, str]:
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}


def request_query(params: Params, endpoint: Endpoint) -> dict[str, str]:
    """The experiment's params with the endpoint's own query (which wins)."""
    return {**query_params(params), **dict(endpoint.query)}


def request_target(params: Params, endpoint: Endpoint) -> str:
    """The request line's target: the encoded path and the query."""
    query = urlencode(request_query(params, endpoint))
    return quote(endpoint.path, safe=PATH_SAFE) + (f"?{query}" if query else "")
