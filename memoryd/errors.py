"""Error codes shared by the daemon and every client.

Each error has a stable numeric JSON-RPC code and a stable string name; clients show
the name (``memory ... --json`` prints ``{"error": {"code": name, "message": ...}}``).
Messages are one line and never contain memory content.
"""

from __future__ import annotations

from typing import Any

# JSON-RPC 2.0 reserved codes, then memoryd's own in -32000..-32099.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

NOT_FOUND = -32001
LOCKED = -32002
BAD_PASSPHRASE = -32003
REQUEST_TOO_LARGE = -32004
TIMEOUT = -32005
UNAVAILABLE = -32006
CONFLICT = -32007
KEY_ERROR = -32008
SHUTTING_DOWN = -32009

NAMES = {
    PARSE_ERROR: "parse_error",
    INVALID_REQUEST: "invalid_request",
    METHOD_NOT_FOUND: "method_not_found",
    INVALID_PARAMS: "invalid_params",
    INTERNAL_ERROR: "internal_error",
    NOT_FOUND: "not_found",
    LOCKED: "locked",
    BAD_PASSPHRASE: "bad_passphrase",
    REQUEST_TOO_LARGE: "request_too_large",
    TIMEOUT: "timeout",
    UNAVAILABLE: "unavailable",
    CONFLICT: "conflict",
    KEY_ERROR: "key_error",
    SHUTTING_DOWN: "shutting_down",
}
CODES = {name: code for code, name in NAMES.items()}


class MemorydError(Exception):
    """An error a user may see: a stable code and a one-line message."""

    code: int = INTERNAL_ERROR

    def __init__(
        self, message: str, *, code: int | None = None, data: dict[str, Any] | None = None
    ):
        super().__init__(message.splitlines()[0] if message else message)
        if code is not None:
            self.code = code
        self.data = data or {}

    @property
    def name(self) -> str:
        return NAMES.get(self.code, "error")

    @property
    def message(self) -> str:
        return str(self)

    def to_rpc(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "data": {"name": self.name, **self.data},
        }


class InvalidParams(MemorydError):
    code = INVALID_PARAMS


class NotFound(MemorydError):
    code = NOT_FOUND


class Locked(MemorydError):
    code = LOCKED


class BadPassphrase(MemorydError):
    code = BAD_PASSPHRASE


class Unavailable(MemorydError):
    code = UNAVAILABLE


class Conflict(MemorydError):
    code = CONFLICT


class KeyProblem(MemorydError):
    """The data key is missing, damaged, or does not open this database."""

    code = KEY_ERROR


class ConfigError(MemorydError):
    code = INVALID_PARAMS


class ClientError(MemorydError):
    """Raised in clients: the daemon could not be reached or answered nonsense."""

    code = UNAVAILABLE
