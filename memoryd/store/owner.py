"""A thread that owns one engine handle; the event loop awaits work done on it.

The aiosqlite pattern: a single worker thread runs submitted callables in order, so the
engine (a DuckDB connection, a LanceDB table) is never touched from two threads, and async
handlers simply ``await owner.run(fn, ...)``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class OwnerThread:
    def __init__(self, name: str):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``fn`` on the owner thread without waiting (work whose result a later
        ``run`` on this thread needs: it runs in order, before that)."""
        return self._executor.submit(fn, *args)

    def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run on the owner thread and block the caller (start-up and shutdown only)."""
        return self._executor.submit(fn, *args, **kwargs).result()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)
