"""memoryd's process: one per data directory, serving JSON-RPC on a private Unix socket.

Start-up: take the data-dir lock, open (or create) the key and the store, bind the socket
in a 0700 folder with mode 0600, write the pid file. Each connection is checked with
SO_PEERCRED and served line by line. SIGTERM/SIGINT (or ``daemon.shutdown``) stop taking
requests, let work in flight finish, flush the vector index and close the database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import stat
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from memoryd import PROTOCOL_VERSION, __version__, errors, heap
from memoryd.config import Paths, Settings, load_settings, resolve_paths
from memoryd.errors import ConfigError, MemorydError
from memoryd.logs import redacted_traceback, setup_logging
from memoryd.model import format_time, utcnow
from memoryd.server.dispatch import method_table
from memoryd.server.protocol import RpcError, error_reply, parse_request, result_reply
from memoryd.service import Context, MemoryService

log = logging.getLogger("memoryd")

SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, including the NUL
SHUTDOWN_GRACE_S = 30.0
CAPABILITIES = [
    "hybrid-search",
    "lexical-search",
    "vector-search",
    "explain",
    "import",
    "export",
    "history",
    "passphrase",
]


class StartupError(MemorydError):
    """memoryd cannot start; the message tells the user what to do."""


class Daemon:
    def __init__(self, paths: Paths, settings: Settings):
        self.paths = paths
        self.settings = settings
        self.service = MemoryService(paths, settings)
        self.methods = method_table(self)
        self.started_at = utcnow()
        self._started_mono = time.monotonic()
        self.connections = 0
        self._inflight: set[asyncio.Task[Any]] = set()
        self._stopping: asyncio.Event | None = None
        self._lock_fd: int | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def acquire_lock(self) -> None:
        self.paths.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.paths.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise StartupError(
                f"memoryd is already running for {self.paths.data_dir}"
                + (f" (pid {holder})" if holder else "")
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _prepare_runtime_dir(self) -> None:
        runtime = self.paths.runtime_dir
        if len(str(self.paths.socket).encode()) > SOCKET_PATH_MAX:
            raise StartupError(
                f"socket path is too long for a Unix socket: {self.paths.socket}"
                " (use a shorter MEMORYD_HOME)"
            )
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = runtime.stat()
        if info.st_uid != os.getuid():
            raise StartupError(f"{runtime} belongs to another user; refusing to use it")
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.chmod(runtime, 0o700)
        # We hold the data-dir lock, so a socket file left here is from a daemon that died.
        if self.paths.socket.exists() or self.paths.socket.is_symlink():
            log.info("removing stale socket")
            self.paths.socket.unlink()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        await self.service.start()
        self._prepare_runtime_dir()
        old_umask = os.umask(0o177)  # the socket is created 0600, never briefly wider
        try:
            server = await asyncio.start_unix_server(
                self._handle_connection,
                path=str(self.paths.socket),
                limit=self.settings.server.max_request_bytes + 1,
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.paths.socket, 0o600)
        pid_file = self.paths.runtime_dir / "memoryd.pid"
        pid_file.write_text(f"{os.getpid()}\n")
        log.info(
            "memoryd %s listening (pid %d, %s)",
            __version__,
            os.getpid(),
            "locked" if self.service.locked else "unlocked",
        )
        try:
            await self._stopping.wait()
        finally:
            log.info("shutting down")
            server.close()
            await self._finish_inflight()
            await self.service.close()
            with contextlib.suppress(OSError):
                self.paths.socket.unlink()
            with contextlib.suppress(OSError):
                pid_file.unlink()
            log.info("stopped")

    async def _finish_inflight(self) -> None:
        if self._inflight:
            log.info("waiting for %d request(s) in flight", len(self._inflight))
            await asyncio.wait(list(self._inflight), timeout=SHUTDOWN_GRACE_S)

    # -- connections ----------------------------------------------------------------------------

    async def _handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        sock = writer.get_extra_info("socket")
        uid = _peer_uid(sock)
        if uid != os.getuid():
            log.warning("refused a connection from uid %s", uid)
            writer.close()
            return
        if self.connections >= self.settings.server.max_connections:
            writer.write(
                error_reply(None, MemorydError("too many connections", code=errors.UNAVAILABLE))
            )
            writer.close()
            return
        self.connections += 1
        ctx = Context(actor=f"uid:{uid}")
        try:
            while self._stopping is not None and not self._stopping.is_set():
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    limit = self.settings.server.max_request_bytes
                    writer.write(
                        error_reply(
                            None,
                            MemorydError(
                                f"request is larger than {limit} bytes",
                                code=errors.REQUEST_TOO_LARGE,
                            ),
                        )
                    )
                    await writer.drain()
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                reply = await self._process(line, ctx)
                if reply is not None:
                    writer.write(reply)
                    await writer.drain()
        except (ConnectionError, BrokenPipeError):
            pass
        except asyncio.CancelledError:
            # Shutdown cancels idle connections. End quietly: Python 3.11's stream
            # callback calls exception() on a cancelled handler task and logs a bogus
            # traceback for it.
            pass
        finally:
            self.connections -= 1
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()

    async def _process(self, line: bytes, ctx: Context) -> bytes | None:
        try:
            request = parse_request(line, self.settings.server.max_json_depth)
        except RpcError as exc:
            return error_reply(exc.request_id, exc)
        reply_id = None if request.is_notification else request.id
        method = self.methods.get(request.method)
        if method is None:
            error = MemorydError(
                f"unknown method {request.method[:64]!r}", code=errors.METHOD_NOT_FOUND
            )
            return None if request.is_notification else error_reply(reply_id, error)
        if self._stopping is not None and self._stopping.is_set():
            return error_reply(
                reply_id, MemorydError("memoryd is shutting down", code=errors.SHUTTING_DOWN)
            )
        started = time.perf_counter()
        task = asyncio.ensure_future(method.handler(request.params, ctx))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        try:
            # shield: a request that times out keeps running to its end, so a write that
            # was under way is completed (or rolled back) rather than cut in half.
            result = await asyncio.wait_for(
                asyncio.shield(task), self.settings.server.request_timeout
            )
        except TimeoutError:
            log.warning("%s timed out", request.method)
            reply = error_reply(
                reply_id,
                MemorydError(
                    f"{request.method} took longer than {self.settings.server.request_timeout:g}s",
                    code=errors.TIMEOUT,
                ),
            )
        except MemorydError as exc:
            log.info("%s -> %s", request.method, exc.name)
            reply = error_reply(reply_id, exc)
        except Exception as exc:  # noqa: BLE001 - a bug must cost one request, never the daemon
            log.error("%s failed: %s", request.method, redacted_traceback(exc))
            reply = error_reply(
                reply_id,
                MemorydError(
                    f"internal error in {request.method} (see the memoryd log)",
                    code=errors.INTERNAL_ERROR,
                ),
            )
        else:
            log.debug("%s ok in %.1f ms", request.method, (time.perf_counter() - started) * 1e3)
            reply = result_reply(reply_id, result)
        return None if request.is_notification else reply

    # -- methods the daemon itself answers --------------------------------------------------

    async def hello(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        client = params.get("client")
        if client is not None:
            if not isinstance(client, str) or not 0 < len(client) <= 128:
                raise errors.InvalidParams("client must be a string of 1-128 characters")
            ctx.actor = client
        return {
            "name": "memoryd",
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "locked": self.service.locked,
            "methods": sorted(self.methods),
            "capabilities": CAPABILITIES,
            "notices": self.service.take_notices(),
        }

    async def status(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "version": __version__,
            "started_at": format_time(self.started_at),
            "uptime_s": round(time.monotonic() - self._started_mono, 1),
            "socket": str(self.paths.socket),
            "data_dir": str(self.paths.data_dir),
            "log_file": str(self.paths.log_file),
            "connections": self.connections,
            "locked": self.service.locked,
            # "uvloop" or "asyncio" (``server.event_loop``)
            "event_loop": type(asyncio.get_running_loop()).__module__.partition(".")[0],
        }

    async def request_shutdown(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        assert self._stopping is not None
        # Answer first, then stop: the caller learns its request was accepted.
        asyncio.get_running_loop().call_later(0.05, self._stopping.set)
        return {"stopping": True}


def _peer_uid(sock: socket.socket | None) -> int | None:
    if sock is None:
        return None
    if hasattr(socket, "SO_PEERCRED"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", creds)[1])
    return None  # unsupported platform: refuse rather than trust


def event_loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the daemon's event loop (``server.event_loop``): uvloop's, or ``None``
    for the standard library's (``asyncio.Runner``'s default).

    uvloop's loop does a request's socket reads and writes, tasks and timers in C: an
    ``rpc.hello`` round trip at 100k memories took 0.041-0.045 ms p50 against 0.079-0.124
    with the standard loop, two daemons each (docs/performance-log.md). When uvloop is
    not installed (it is a dependency, but has no build for every platform), the
    standard loop serves.
    """
    if name == "asyncio":
        return None
    if name != "uvloop":
        raise ConfigError(f"server.event_loop must be uvloop or asyncio, got {name!r}")
    try:
        import uvloop
    except ImportError:
        log.info("uvloop is not installed: the standard event loop serves")
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_foreground(paths: Paths | None = None, stderr: TextIO = sys.stderr) -> int:
    """Run memoryd in this process until it is stopped; returns the exit status."""
    paths = paths or resolve_paths()
    # Everything memoryd writes (database, index, logs, pid) is for this user alone.
    os.umask(0o077)
    # Two malloc arenas keep a RAM-tier daemon small; above it Lance's threads need their
    # own (``heap.limit_arenas``). Decided now, before any thread allocates: glibc fixes
    # the limit once its threads have arenas, so a store that outgrows RAM while this
    # daemon runs keeps two until the next start.
    if not paths.index_on_disk:
        heap.limit_arenas()
    heap.tune_collector()
    try:
        settings = load_settings(paths)
        new_loop = event_loop_factory(settings.server.event_loop)
        setup_logging(paths.log_file, settings.log.level)
        daemon = Daemon(paths, settings)
        daemon.acquire_lock()
    except (MemorydError, OSError) as exc:
        print(f"memoryd: error: {exc}", file=stderr)
        return 1
    try:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(daemon.serve())
    except MemorydError as exc:
        log.error("cannot start: %s", exc)
        print(f"memoryd: error: {exc}", file=stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - report one line, keep the stack in the log
        log.error("crashed: %s", redacted_traceback(exc))
        print(f"memoryd: error: {type(exc).__name__} (see {paths.log_file})", file=stderr)
        return 1
    finally:
        daemon.release_lock()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="memoryd",
        description="The memoryd daemon. Usually started for you by the `memory` CLI; "
        "`memoryd run` runs it in the foreground (for systemd or launchd).",
    )
    parser.add_argument("--version", action="version", version=f"memoryd {__version__}")
    parser.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=["run"],
        help="run the daemon in the foreground (the default)",
    )
    parser.parse_args(argv)
    sys.exit(run_foreground())


if __name__ == "__main__":
    main()


__all__ = ["Daemon", "main", "run_foreground"]
