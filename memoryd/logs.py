"""Logging set-up. Logs carry ids, counts and error types, never memory content."""

from __future__ import annotations

import logging
import logging.handlers
import os
import traceback
from pathlib import Path


def setup_logging(log_file: Path, level: str = "INFO") -> None:
    log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=5 * 1024 * 1024, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    os.chmod(log_file, 0o600)
    # Third-party loggers can echo values they were handed; keep them to warnings.
    for noisy in ("lancedb", "lance", "fastembed", "huggingface_hub", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def redacted_traceback(exc: BaseException) -> str:
    """The exception's type and stack, without its message: messages can quote the
    values (memory text) that made an operation fail."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    return f"{type(exc).__module__}.{type(exc).__name__} (message withheld)\n{frames}"
