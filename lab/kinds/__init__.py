"""The experiment kinds, one module each, registered like `lab.servers` adapters.

A kind is one `Kind` object: its settings and engines (read by the config), its runner
(the runner), its headline, table columns and charts (the report). Every layer looks a kind
up here by the name a config or a results line gives it. A new kind is one module that
builds a `Kind` and passes it to `register` (see ``tests/test_kinds.py``).
"""

import importlib

from lab.kinds.base import Fact, Headline, Kind, Runner

BUILT_IN = ("burst", "closed", "open", "interference", "stream", "websocket", "ws_broadcast")
_KINDS: dict[str, Kind] = {}
_loading = False  # the built-in modules are being imported: each registers itself


def register(kind: Kind) -> Kind:
    """Add a kind (a built-in one registers itself as its module is imported); a name taken
    by another kind is an error."""
    known = _KINDS if _loading else kinds()
    if kind.name in known and known[kind.name] is not kind:
        raise ValueError(f"experiment kind {kind.name!r} is registered already")
    _KINDS[kind.name] = kind
    return kind


def kinds() -> dict[str, Kind]:
    """Every kind by name, the built-in ones first. Their modules are imported on the first
    call, not with this package: each uses the layers (config, load, report) that call it."""
    global _loading
    if not _loading and not all(name in _KINDS for name in BUILT_IN):
        _loading = True
        try:
            for name in BUILT_IN:
                importlib.import_module(f"lab.kinds.{name}")
        finally:
            _loading = False
    return _KINDS


def get(name: str) -> Kind:
    return kinds()[name]


__all__ = ["BUILT_IN", "Fact", "Headline", "Kind", "Runner", "get", "kinds", "register"]
