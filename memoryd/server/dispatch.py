"""The method table: protocol method names to service calls.

docs/protocol.md documents each of these; a test checks that the two lists agree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memoryd.server.daemon import Daemon
    from memoryd.service import Context

Handler = Callable[[dict[str, Any], "Context"], Awaitable[Any]]


@dataclass(frozen=True)
class Method:
    name: str
    handler: Handler


def method_table(daemon: Daemon) -> dict[str, Method]:
    service = daemon.service
    methods = [
        Method("rpc.hello", daemon.hello),
        Method("memory.add", service.add),
        Method("memory.import", service.import_items),
        Method("memory.get", service.get),
        Method("memory.list", service.list_memories),
        Method("memory.search", service.search),
        Method("memory.update", service.update),
        Method("memory.delete", service.delete),
        Method("memory.history", service.history),
        Method("memory.export", service.export),
        Method("store.stats", service.stats),
        Method("store.status", service.status),
        Method("key.unlock", service.unlock),
        Method("key.passwd", service.passwd),
        Method("daemon.status", daemon.status),
        Method("daemon.shutdown", daemon.request_shutdown),
    ]
    return {m.name: m for m in methods}
