"""Turn untrusted request params into typed values, or a one-line ``invalid_params`` error.

Messages name the field and what was wrong with it, never the value itself (a value may be
memory content, and messages end up in logs).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memoryd.config import SearchSettings
from memoryd.errors import InvalidParams
from memoryd.model import NewMemory, SearchFilters, is_id, parse_time

MAX_CONTENT_CHARS = 100_000
MAX_QUERY_CHARS = 10_000
MAX_METADATA_BYTES = 64 * 1024
MAX_TAGS = 64
NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_\-.:/]{1,128}$")
KIND_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
TAG_RE = re.compile(r"^[^\s,]{1,128}$")
SEARCH_MODES = ("hybrid", "lexical", "vector")

MEMORY_FIELDS = {
    "content",
    "namespace",
    "kind",
    "tags",
    "metadata",
    "importance",
    "source",
    "thread",
    "position",
    "created_at",
    "expires_at",
}
FILTER_FIELDS = {"namespace", "tags", "kind", "thread", "since", "until", "metadata"}


def require_object(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidParams("params must be an object")
    return params


def check_keys(params: dict[str, Any], allowed: set[str]) -> None:
    if params.keys() <= allowed:  # the usual case, without building a set
        return
    unknown = sorted(set(params) - allowed)
    if unknown:
        shown = ", ".join(repr(k)[:40] for k in unknown[:5])
        raise InvalidParams(f"unknown param(s): {shown}")


def memory_id(params: dict[str, Any], key: str = "id") -> str:
    value = params.get(key)
    if not isinstance(value, str) or not is_id(value):
        raise InvalidParams(f"{key} must be a memory id (a UUID string)")
    return str(value).lower()


def content(value: Any, field: str = "content", limit: int = MAX_CONTENT_CHARS) -> str:
    if not isinstance(value, str):
        raise InvalidParams(f"{field} must be a string")
    if not value.strip():
        raise InvalidParams(f"{field} must not be empty")
    if len(value) > limit:
        raise InvalidParams(f"{field} is longer than {limit:,} characters")
    if "\x00" in value:
        raise InvalidParams(f"{field} must not contain NUL characters")
    return value


def namespace(value: Any) -> str:
    if not isinstance(value, str) or not NAMESPACE_RE.match(value):
        raise InvalidParams("namespace must be 1-128 characters of letters, digits, _ - . : /")
    return value


def kind(value: Any) -> str:
    if not isinstance(value, str) or not KIND_RE.match(value):
        raise InvalidParams("kind must be 1-64 characters of letters, digits, _ -")
    return value


def tags(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise InvalidParams("tags must be a list of strings")
    if len(value) > MAX_TAGS:
        raise InvalidParams(f"at most {MAX_TAGS} tags")
    for tag in value:
        if not TAG_RE.match(tag):
            raise InvalidParams("each tag must be 1-128 characters without spaces or commas")
    return sorted(set(value))


def metadata(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidParams("metadata must be an object")
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidParams("metadata must hold only JSON values (no NaN or Infinity)") from None
    if len(encoded.encode()) > MAX_METADATA_BYTES:
        raise InvalidParams(f"metadata is larger than {MAX_METADATA_BYTES // 1024} KiB")
    return value


def number(value: Any, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParams(f"{field} must be a number")
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidParams(f"{field} must be between {low:g} and {high:g}")
    return float(value)


def integer(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(f"{field} must be an integer")
    if not low <= value <= high:
        raise InvalidParams(f"{field} must be between {low} and {high}")
    return value


def optional_text(value: Any, field: str, limit: int = 512) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidParams(f"{field} must be a string of 1-{limit} characters")
    return value


def timestamp(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidParams(f"{field} must be an ISO-8601 date or date-time string")
    try:
        return parse_time(value)
    except ValueError:
        raise InvalidParams(f"{field} must be an ISO-8601 date or date-time") from None


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidParams(f"{field} must be true or false")
    return value


def new_memory(params: dict[str, Any]) -> NewMemory:
    check_keys(params, MEMORY_FIELDS)
    if "content" not in params:
        raise InvalidParams("content is required")
    return NewMemory(**memory_fields(params))


def memory_fields(params: dict[str, Any]) -> dict[str, Any]:
    """Validated values of the memory fields present in ``params``."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key == "content":
            out[key] = content(value)
        elif key == "namespace":
            out[key] = namespace(value)
        elif key == "kind":
            out[key] = kind(value)
        elif key == "tags":
            out[key] = tags(value)
        elif key == "metadata":
            out[key] = metadata(value)
        elif key == "importance":
            out[key] = number(value, "importance", 0.0, 1.0)
        elif key in ("source", "thread"):
            out[key] = optional_text(value, key)
        elif key == "position":
            out[key] = None if value is None else integer(value, "position", 0, 2**62)
        elif key in ("created_at", "expires_at"):
            out[key] = None if value is None else timestamp(value, key)
    return out


def search_filters(params: dict[str, Any]) -> SearchFilters:
    f = SearchFilters()
    if params.get("namespace") is not None:
        f.namespace = namespace(params["namespace"])
    if params.get("tags") is not None:
        f.tags = tags(params["tags"])
    if params.get("kind") is not None:
        f.kind = kind(params["kind"])
    if params.get("thread") is not None:
        f.thread = optional_text(params["thread"], "thread")
    if params.get("since") is not None:
        f.since = timestamp(params["since"], "since")
    if params.get("until") is not None:
        f.until = timestamp(params["until"], "until")
    if params.get("metadata") is not None:
        f.metadata = metadata(params["metadata"])
    return f


def limit(params: dict[str, Any], default: int, maximum: int) -> int:
    value = params.get("limit", default)
    return integer(value, "limit", 1, maximum)


def cursor(params: dict[str, Any]) -> str | None:
    value = params.get("after")
    if value is None:
        return None
    if not isinstance(value, str) or not is_id(value):
        raise InvalidParams("after must be a cursor from a previous page")
    return value.lower()


@dataclass
class SearchRequest:
    query: str
    limit: int
    mode: str
    explain: bool
    filters: SearchFilters
    recency_weight: float
    importance_weight: float


SEARCH_FIELDS = FILTER_FIELDS | {
    "query",
    "limit",
    "mode",
    "explain",
    "recency_weight",
    "importance_weight",
}


def search_request(params: dict[str, Any], settings: SearchSettings) -> SearchRequest:
    check_keys(params, SEARCH_FIELDS)
    mode = params.get("mode", "hybrid")
    if mode not in SEARCH_MODES:
        raise InvalidParams("mode must be one of hybrid, lexical, vector")
    return SearchRequest(
        query=content(params.get("query"), "query", MAX_QUERY_CHARS),
        limit=limit(params, settings.default_limit, settings.max_limit),
        mode=mode,
        explain=boolean(params.get("explain", False), "explain"),
        filters=search_filters(params),
        recency_weight=number(
            params.get("recency_weight", settings.recency_weight), "recency_weight", 0.0, 10.0
        ),
        importance_weight=number(
            params.get("importance_weight", settings.importance_weight),
            "importance_weight",
            0.0,
            10.0,
        ),
    )
