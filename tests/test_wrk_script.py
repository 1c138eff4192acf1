"""wrk's Lua script applies the same check as the Python engines: both are run on the same
responses, the script in LuaJIT (wrk's own interpreter, loaded through ctypes), without wrk
or a server."""

import ctypes
import ctypes.util
import json

import pytest

from lab.load.samples import check
from lab.load.wrk import SCRIPT, script_args
from lab.matrix.endpoint import Endpoint

LUA_GLOBALSINDEX = -10002


def luajit() -> ctypes.CDLL | None:
    for name in ("luajit-5.1", "libluajit-5.1.so.2"):
        path = ctypes.util.find_library(name) or name
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


LUA = luajit()
pytestmark = pytest.mark.skipif(LUA is None, reason="LuaJIT (wrk's interpreter) not found")


def lua_str(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return '"' + "".join(f"\\{b}" for b in data) + '"'


def run_script(endpoint: Endpoint, responses: list[tuple[int, dict[str, str], bytes]]
               ) -> list[str | None]:
    """Each response's verdict from the script: None (ok), http_<status> or bad_body."""
    assert LUA is not None
    LUA.luaL_newstate.restype = ctypes.c_void_p
    LUA.lua_tolstring.restype = ctypes.c_char_p
    state = ctypes.c_void_p(LUA.luaL_newstate())
    LUA.luaL_openlibs(state)
    args = ", ".join(lua_str(a) for a in script_args(endpoint))
    calls = []
    for status, headers, body in responses:
        table = ", ".join(f"[{lua_str(k)}] = {lua_str(v)}" for k, v in headers.items())
        calls.append(f"""
local before_bad, before_status = badbody, statuses[{status}] or 0
response({status}, {{{table}}}, {lua_str(body)})
if (statuses[{status}] or 0) > before_status then table.insert(out, "http_{status}")
elseif badbody > before_bad then table.insert(out, "bad_body")
else table.insert(out, "ok") end""")
    program = ("wrk = {headers = {}}\n" + SCRIPT.read_text() + f"\ninit({{{args}}})\n"
               "out = {}\n" + "\n".join(calls) + "\nresult = table.concat(out, ' ')\n")
    try:
        assert LUA.luaL_loadstring(state, program.encode()) == 0, \
            LUA.lua_tolstring(state, -1, None)
        assert LUA.lua_pcall(state, 0, 0, 0) == 0, LUA.lua_tolstring(state, -1, None)
        LUA.lua_getfield(state, LUA_GLOBALSINDEX, b"result")
        text = LUA.lua_tolstring(state, -1, None).decode()
    finally:
        LUA.lua_close(state)
    return [None if v == "ok" else v for v in text.split()]


BODIES = [
    b'{"a": {"b": [1, 2], "c": "x"}, "d": null}',
    b'{"a": {"b": [1]}}',
    b'{"a": {"b": [1, 2.0]}}',
    b'{"a": {"b": [true, 2]}}',
    b'{"a": "b"}',
    b'[1, 2]',
    b'not json',
    b'{"a": {"b": [1, 2]}} trailing',
    b'',
    b'{"name": "caf\\u00e9 \\ud83d\\ude00", "list": {"n": 1}}',
    '{"name": "café 😀", "list": {"n": 1}, "e": 1e3}'.encode(),
]
ENDPOINTS = [
    Endpoint("/"),
    Endpoint("/", status=201),
    Endpoint("/", contains="b"),
    Endpoint("/", json_subset=json.dumps({"a": {"b": [1, 2]}})),
    Endpoint("/", json_subset=json.dumps({"name": "café 😀", "list": {"n": 1}})),
    Endpoint("/", json_subset=json.dumps({"e": 1000})),
    Endpoint("/", json_subset=json.dumps({})),
]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.json_subset or e.contains
                         or str(e.status))
def test_the_script_judges_every_response_as_the_python_engines_do(endpoint: Endpoint
                                                                   ) -> None:
    responses = [(status, {"x-lab-worker": "12"}, body)
                 for status in (200, 201, 404) for body in BODIES]
    python = [check(status, "12", body, endpoint)[0] for status, _, body in responses]
    assert run_script(endpoint, responses) == python


def test_the_script_counts_the_worker_from_the_header_whatever_its_case() -> None:
    assert LUA is not None
    verdicts = run_script(Endpoint("/"), [(200, {"X-Lab-Worker": "7"}, b"x"),
                                          (200, {}, b"y")])
    assert verdicts == [None, None]  # no header: still a success, only not attributed
