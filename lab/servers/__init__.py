"""The server registry: one adapter module per server."""

from lab.servers import granian, gunicorn, hypercorn, uvicorn
from lab.servers.base import Adapter, Option, OptionValue

ADAPTERS: dict[str, Adapter] = {
    a.name: a for a in (uvicorn.ADAPTER, hypercorn.ADAPTER, granian.ADAPTER, gunicorn.ADAPTER)
}

__all__ = ["ADAPTERS", "Adapter", "Option", "OptionValue"]
