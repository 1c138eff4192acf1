"""Every engine puts the same request line on the wire: the path percent-encoded alike
(wrk was given "/sp ace" raw and failed with its usage text), the query from the
experiment's params with the endpoint's own winning."""

import pytest

from lab.load.params import request_target
from lab.load.rawhttp import request_bytes
from lab.matrix.endpoint import Endpoint


@pytest.mark.parametrize(("path", "target"), [
    ("/hello", "/hello"), ("/sp ace", "/sp%20ace"), ("/café", "/caf%C3%A9"),
    ("/a/b;c=1", "/a/b;c=1"), ("/already%20encoded", "/already%20encoded"),
])
def test_paths_are_percent_encoded_as_http_clients_encode_them(path: str, target: str
                                                               ) -> None:
    assert request_target({}, Endpoint(path)) == target


def test_the_endpoints_own_query_wins_over_the_experiments_params() -> None:
    endpoint = Endpoint("/x", query=(("delay", "1"),))
    assert request_target({"delay": 0.2, "fast": True}, endpoint) == "/x?delay=1&fast=true"


def test_rawhttp_writes_one_whole_request_with_its_headers_and_body() -> None:
    endpoint = Endpoint("/items", method="POST", headers=(("X-A", "b"),), body=b'{"n":1}')
    assert request_bytes("127.0.0.1:8000", {}, endpoint) == (
        b"POST /items HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nX-A: b\r\n"
        b"Content-Length: 7\r\n\r\n{\"n\":1}")


def test_an_endpoints_own_host_header_replaces_the_one_rawhttp_writes() -> None:
    """Two Host lines are a 400 under RFC 9112; httpx, aiohttp and wrk send the user's."""
    endpoint = Endpoint("/", headers=(("host", "shop.example"),))
    assert request_bytes("127.0.0.1:8000", {}, endpoint) == (
        b"GET / HTTP/1.1\r\nhost: shop.example\r\n\r\n")
