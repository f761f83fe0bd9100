"""The JSON-lines file format of `memory import` and `memory export`.

One memory object per line. Import reads the fields `memory.add` takes and accepts (and
drops) the bookkeeping fields export writes, so an export file imports as it is. Values are
checked by the daemon; here a line only has to be a JSON object with `content` and no field
this format does not know.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from memoryd import IMPORT_BATCH_MAX

# Passed to memory.import as they are.
IMPORT_FIELDS = frozenset({
    "content", "namespace", "kind", "tags", "metadata", "importance", "source",
    "thread", "position", "created_at", "expires_at",
})
# Written by export but owned by the daemon: a re-import gets new ones.
EXPORT_ONLY_FIELDS = frozenset({"id", "updated_at", "accessed_at", "access_count", "embedded"})

# Lines a memory.import call carries: the most the daemon takes in one call. With the
# real model, 10k memories imported at 1,595-1,645 a second this way against 1,406-1,460
# with 256 a call (the daemon embeds a bigger batch more evenly over its cores, and pays
# its ~16 ms a call fewer times).
BATCH_ITEMS = IMPORT_BATCH_MAX
# The whole request line must stay under server.max_request_bytes; leave room for the
# envelope ({"jsonrpc": …, "method": "memory.import", "params": {"items": [...]}}).
ENVELOPE_BYTES = 256


class LineError(ValueError):
    def __init__(self, message: str, name: str = "invalid_params"):
        super().__init__(message)
        self.name = name


def parse_line(text: str, *, default_namespace: str | None = None,
               into_namespace: str | None = None) -> dict[str, Any]:
    """One import line to `memory.add` params; raises LineError with a one-line reason."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LineError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError as exc:  # e.g. a number too long to convert
        raise LineError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise LineError(f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - IMPORT_FIELDS - EXPORT_ONLY_FIELDS)
    if unknown:
        raise LineError("unknown field" + ("s" if len(unknown) > 1 else "") + ": "
                        + ", ".join(unknown))
    if obj.get("content") is None:
        raise LineError("content is required")
    # null means "not set"; the daemon applies its default.
    item = {k: v for k, v in obj.items() if k in IMPORT_FIELDS and v is not None}
    if into_namespace:
        item["namespace"] = into_namespace
    elif default_namespace and "namespace" not in item:
        item["namespace"] = default_namespace
    return item


def encoded_size(item: dict[str, Any]) -> int:
    # Same encoding as memoryd.client.Client.call, so sizes match what goes on the wire.
    return len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())


@dataclass
class Batch:
    lines: list[int] = field(default_factory=list)  # 1-based line numbers, one per item
    items: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0
    consumed: int = 0  # input lines read for this batch (blank and bad ones included)


@dataclass
class Problem:
    line: int
    name: str
    message: str


def batches(lines: Iterable[str], *, max_request_bytes: int,
            default_namespace: str | None = None, into_namespace: str | None = None,
            problems: list[Problem]) -> Iterator[Batch]:
    """Group parsed lines into `memory.import` batches; bad lines go to ``problems``."""
    limit = max_request_bytes - ENVELOPE_BYTES
    batch = Batch()
    for number, raw in enumerate(lines, start=1):
        batch.consumed += 1
        if not raw.strip():
            continue
        try:
            item = parse_line(raw, default_namespace=default_namespace,
                              into_namespace=into_namespace)
        except LineError as exc:
            problems.append(Problem(number, exc.name, str(exc)))
            continue
        size = encoded_size(item) + 1
        if size > limit:
            problems.append(Problem(number, "request_too_large",
                                    f"too large ({size} bytes; a request may be at most "
                                    f"{max_request_bytes})"))
            continue
        if batch.items and (len(batch.items) >= BATCH_ITEMS or batch.size + size > limit):
            batch.consumed -= 1  # the current line starts the next batch
            yield batch
            batch = Batch(consumed=1)
        batch.lines.append(number)
        batch.items.append(item)
        batch.size += size
    if batch.items or batch.consumed:
        yield batch


def dump_line(memory: dict[str, Any]) -> str:
    return json.dumps(memory, ensure_ascii=False, separators=(",", ":")) + "\n"
