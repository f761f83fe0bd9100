"""`memory`: the command line front end of memoryd.

Each command parses its input, makes client calls, and renders the answer; the work is done
by the daemon. Nothing here may import an engine (duckdb, lancedb, fastembed, numpy,
pyarrow), directly or through memoryd modules, so that `memory --version` stays instant;
`memory daemon run` imports the server lazily, inside the command.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import click

from memoryd import __version__
from memoryd.client import Client, is_running, start_daemon
from memoryd.config import load_settings, resolve_paths
from memoryd.errors import MemorydError

from . import jsonl
from .output import (
    compact_json,
    fail,
    fields,
    format_table,
    human_bytes,
    json_option,
    render,
    table,
    wants_json,
    warn,
)
from .timeparse import When, to_local

CLIENT_NAME = f"memory-cli/{__version__}"
LOCKED_HINT = "memoryd is locked: run `memory unlock`"
PASSPHRASE_ENV = "MEMORYD_PASSPHRASE"
DEBUG_ENV = "MEMORY_CLI_DEBUG"

_ID: dict[str, Any] = {"fg": "yellow"}
_NS: dict[str, Any] = {"fg": "cyan"}
_DIM: dict[str, Any] = {"dim": True}


class MemoryGroup(click.Group):
    """The root group: turns every runtime error into one line (or JSON) and exit 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order they are defined: most used first

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.UsageError,
                BrokenPipeError):
            raise  # click's own handling: exit codes 0/1/2 and a quiet broken pipe
        except click.ClickException as exc:
            fail("error", exc.format_message())
        except MemorydError as exc:
            # A locked daemon refuses most calls; say how to get going again.
            message = LOCKED_HINT if exc.name == "locked" else exc.message
            # A daemon that failed to start passes on its own "memoryd: error: ..." line;
            # one "error:" is enough.
            fail(exc.name, message.removeprefix("memoryd: error: "))
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            first = (str(exc).splitlines() or [""])[0]
            detail = f": {first}" if first else ""
            fail("internal_error", f"unexpected {type(exc).__name__}{detail}")


# -- shared options and helpers ------------------------------------------------------------

def _tags(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    # Tags may not contain commas, so `-t a,b` is a convenient spelling of `-t a -t b`.
    tags: list[str] = []
    for value in values:
        for tag in value.split(","):
            tag = tag.strip()
            if tag and tag not in tags:
                tags.append(tag)
    return tags


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


class MetaPair(click.ParamType):
    """`key=value`; the value is JSON if it parses as JSON, else the plain string."""

    name = "key=value"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return value
        key, sep, raw = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"expected key=value, got {value!r}", param, ctx)
        try:
            # NaN/Infinity parse in Python but are not JSON: keep them as strings.
            parsed = json.loads(raw, parse_constant=_reject_constant)
        except ValueError:
            parsed = raw
        return key.strip(), parsed


def namespace_option(help_text: str = "Namespace (default: default).") -> Any:
    return click.option("-n", "--namespace", metavar="NS", help=help_text)


def tag_option(help_text: str) -> Any:
    return click.option("-t", "--tag", "tags", multiple=True, callback=_tags, metavar="TAG",
                        help=help_text)


def meta_option(help_text: str) -> Any:
    return click.option("--meta", "meta", multiple=True, type=MetaPair(), help=help_text)


def connect(ctx: click.Context, *, autostart: bool = True) -> Client:
    """A connected client; starts the daemon on demand and passes its notices on."""
    client = Client(autostart=autostart, client_name=CLIENT_NAME)
    ctx.call_on_close(client.close)
    client.connect()
    if client.started_daemon and sys.stderr.isatty():
        warn("started memoryd in the background")
    for notice in client.notices:
        click.echo(click.style(notice, fg="yellow"), err=True)
    return client


def read_text(text: str) -> str:
    """TEXT as given, or all of stdin for `-` (without the trailing newline)."""
    if text != "-":
        return text
    return sys.stdin.read().rstrip("\r\n")


def read_secret(path: Path) -> str:
    secret = path.read_text(encoding="utf-8")
    if secret.endswith("\n"):
        secret = secret[:-1].rstrip("\r")
    if not secret:
        fail("invalid_params", f"{path}: the passphrase file is empty")
    return secret


def _number(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


def _score(value: Any) -> str:
    return _number(value, ".4f")


def _signal(value: Any) -> str:
    return _number(value, ".4g")


def _tags_text(tags: Any) -> str:
    return ", ".join(tags) if tags else "-"


# -- the group -----------------------------------------------------------------------------

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=MemoryGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="memory",
                      message="%(prog)s %(version)s")
@json_option
def cli() -> None:
    """memory: a local, encrypted memory for you and your AI tools.

    `memory` talks to memoryd, a small per-user daemon that keeps memories in an encrypted
    database and finds them by words and by meaning. The daemon starts on demand.

    \b
    Examples:
      memory add "Alice is allergic to peanuts" -t health
      echo "The spare key is under the blue pot" | memory add - -n home
      memory search "what is alice allergic to"
      memory search peanuts --since 7d --explain
      memory import notes.jsonl --namespace notes
      memory export -o backup.jsonl

    \b
    Where things live:
      data, config (config.toml, key.json), socket and logs sit in the usual per-user
      folders; `memory config show` prints them. Set MEMORYD_HOME to keep all of them
      under one folder (e.g. for tests or a second instance).

    Every command takes --json: then stdout carries only JSON, errors included. Exit
    status: 0 ok, 1 error, 2 bad usage.
    """


# -- memories ------------------------------------------------------------------------------

@cli.command()
@click.argument("text")
@namespace_option()
@tag_option("Tag (repeatable, or comma separated).")
@meta_option("Metadata key=value (repeatable); the value is JSON if it parses, else text.")
@click.option("--kind", help="Kind of memory (default: note), e.g. fact, preference.")
@click.option("--importance", type=click.FloatRange(0, 1), help="0 to 1 (default 0.5).")
@click.option("--thread", help="Conversation or document this memory belongs to.")
@click.option("--position", type=click.IntRange(min=0), help="Place in the thread (>= 0).")
@click.option("--created-at", type=When(), metavar="WHEN",
              help="The time the memory is about (ISO date/time, 3d, yesterday...).")
@json_option
@click.pass_context
def add(ctx: click.Context, text: str, namespace: str | None, tags: list[str],
        meta: tuple[tuple[str, Any], ...], kind: str | None, importance: float | None,
        thread: str | None, position: int | None, created_at: str | None) -> None:
    """Remember TEXT (or stdin with `-`).

    Adding the same text twice to a namespace stores it once; the second add reports
    the existing memory as a duplicate.

    \b
    Examples:
      memory add "Alice is allergic to peanuts" -t health --meta source=chat
      pbpaste | memory add - --kind fact --importance 0.9
    """
    content = read_text(text)
    client = connect(ctx)
    result = client.add(
        content, namespace=namespace, tags=tags or None, metadata=dict(meta) or None,
        kind=kind, importance=importance, thread=thread, position=position,
        created_at=created_at,
    )
    memory = dict(result["memory"])
    memory["duplicate"] = bool(result.get("duplicate"))

    def human(m: dict[str, Any]) -> None:
        if m["duplicate"]:
            click.echo(f"duplicate of {click.style(m['id'], **_ID)} (nothing stored)")
        else:
            click.echo(f"added {click.style(m['id'], **_ID)}")

    render(memory, human)


def _show_memory(m: dict[str, Any]) -> None:
    thread = m.get("thread")
    if thread is not None and m.get("position") is not None:
        thread = f"{thread} #{m['position']}"
    pairs: list[tuple[str, Any]] = [
        ("id", click.style(m.get("id", ""), **_ID)),
        ("namespace", m.get("namespace")),
        ("kind", m.get("kind")),
        ("tags", _tags_text(m.get("tags"))),
        ("importance", m.get("importance")),
        ("created", to_local(m.get("created_at"))),
        ("updated", to_local(m.get("updated_at"))),
    ]
    if thread is not None:
        pairs.append(("thread", thread))
    if m.get("source"):
        pairs.append(("source", m["source"]))
    if m.get("metadata"):
        pairs.append(("metadata", compact_json(m["metadata"])))
    if m.get("expires_at"):
        pairs.append(("expires", to_local(m["expires_at"])))
    pairs.append(("embedded", "yes" if m.get("embedded") else "not yet"))
    fields(pairs)
    click.echo()
    click.echo(m.get("content", ""))


@cli.command()
@click.argument("memory_id", metavar="ID")
@json_option
@click.pass_context
def get(ctx: click.Context, memory_id: str) -> None:
    """Show one memory by its full id.

    \b
    Example:
      memory get 0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b
    """
    render(connect(ctx).get(memory_id), _show_memory)


def _memory_rows(memories: list[dict[str, Any]]) -> None:
    if not memories:
        click.echo("no memories", err=True)
        return
    rows = [[m["id"], to_local(m.get("created_at")), m.get("namespace", ""), m.get("content", "")]
            for m in memories]
    table(rows, ["id", "created", "namespace", "content"], [_ID, _DIM, _NS, None])


LIST_PAGE_MAX = 1000


@cli.command("list")
@namespace_option("Only this namespace.")
@tag_option("Only memories with this tag (repeatable: all must match).")
@click.option("--kind", help="Only this kind.")
@click.option("--thread", help="Only this thread.")
@click.option("--since", type=When(), metavar="WHEN",
              help="Created at or after (7d, 2024-05-01...).")
@click.option("--until", type=When(end_of_day=True), metavar="WHEN",
              help="Created at or before (a date includes that whole day).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many memories.")
@click.option("--after", metavar="CURSOR",
              help="Continue from the `next` cursor of a --json listing.")
@json_option
@click.pass_context
def list_cmd(ctx: click.Context, namespace: str | None, tags: list[str], kind: str | None,
             thread: str | None, since: str | None, until: str | None, limit: int,
             after: str | None) -> None:
    """List memories, newest first.

    \b
    Examples:
      memory list -n work --since yesterday
      memory list -t health --limit 10 --json
    """
    client = connect(ctx)
    memories: list[dict[str, Any]] = []
    cursor = after
    while len(memories) < limit:
        page = client.list(namespace=namespace, tags=tags or None, kind=kind, thread=thread,
                           since=since, until=until, after=cursor,
                           limit=min(limit - len(memories), LIST_PAGE_MAX))
        memories.extend(page.get("memories") or [])
        cursor = page.get("next")
        if not cursor:
            break
    render({"memories": memories, "next": cursor}, lambda d: _memory_rows(d["memories"]))


def _explain_line(signals: dict[str, Any]) -> str:
    parts = []
    for name, value in signals.items():
        if isinstance(value, dict):
            rank = value.get("rank")
            parts.append(f"{name} {_signal(value.get('score'))}"
                         + (f" (#{rank})" if rank is not None else " (-)"))
        else:
            parts.append(f"{name} {_score(value)}")
    return "   ".join(parts)


def _show_hits(result: dict[str, Any]) -> None:
    if result.get("degraded"):
        warn(f"searched by words only: {result['degraded']}")
    hits = result.get("hits") or []
    if not hits:
        click.echo("no matches", err=True)
        return
    rows = [[str(rank), _score(hit.get("score")), hit.get("id", ""), hit.get("namespace", ""),
             hit.get("content", "")] for rank, hit in enumerate(hits, start=1)]
    lines = format_table(rows, ["#", "score", "id", "namespace", "content"],
                         [None, {"fg": "green"}, _ID, _NS, None])
    click.echo(lines[0])
    indent = " " * (len(str(len(hits))) + 2)
    for hit, line in zip(hits, lines[1:], strict=True):
        click.echo(line)
        if hit.get("signals"):
            click.echo(click.style(indent + _explain_line(hit["signals"]), dim=True))


@cli.command()
@click.argument("query")
@namespace_option("Only this namespace.")
@click.option("-k", "--limit", type=click.IntRange(1, 1000), help="Number of hits (default 10).")
@tag_option("Only memories with this tag (repeatable: all must match).")
@click.option("--kind", help="Only this kind.")
@click.option("--thread", help="Only this thread.")
@meta_option("Only memories whose metadata has key=value (repeatable).")
@click.option("--since", type=When(), metavar="WHEN",
              help="Created at or after: ISO date/time, or 7d, 12h, 2w, yesterday, today.")
@click.option("--until", type=When(end_of_day=True), metavar="WHEN",
              help="Created at or before (a date includes that whole day).")
@click.option("--mode", type=click.Choice(["hybrid", "lexical", "vector"]),
              help="hybrid (default): words and meaning; lexical: words; vector: meaning.")
@click.option("--explain", is_flag=True,
              help="Show each signal's score and rank, and the fused score.")
@click.option("--recency-weight", type=click.FloatRange(0, 10), metavar="W",
              help="Favour recent memories: add W x 0.5^(age / half-life) (default 0).")
@click.option("--importance-weight", type=click.FloatRange(0, 10), metavar="W",
              help="Favour important memories: add W x importance (default 0).")
@json_option
@click.pass_context
def search(ctx: click.Context, query: str, namespace: str | None, limit: int | None,
           tags: list[str], kind: str | None, thread: str | None,
           meta: tuple[tuple[str, Any], ...], since: str | None, until: str | None,
           mode: str | None, explain: bool, recency_weight: float | None,
           importance_weight: float | None) -> None:
    """Find memories by words and meaning.

    Put a phrase in double quotes to require it; end a word with * to match its prefix.

    \b
    Examples:
      memory search "what is alice allergic to"
      memory search deploy -n work -k 5 --since 2w --explain
      memory search invoice --meta source=email --mode lexical --json
      memory search '"error budget" deploy*' --recency-weight 0.3
    """
    result = connect(ctx).search(
        query, namespace=namespace, limit=limit, tags=tags or None, kind=kind, thread=thread,
        metadata=dict(meta) or None, since=since, until=until, mode=mode,
        explain=True if explain else None, recency_weight=recency_weight,
        importance_weight=importance_weight,
    )
    render(result, _show_hits)


@cli.command()
@click.argument("memory_id", metavar="ID")
@click.argument("text", required=False)
@tag_option("Replace the tags with these (repeatable).")
@click.option("--clear-tags", is_flag=True, help="Remove all tags.")
@meta_option("Set a metadata key (repeatable); other keys are kept.")
@click.option("--drop-meta", multiple=True, metavar="KEY",
              help="Remove a metadata key (repeatable).")
@click.option("--importance", type=click.FloatRange(0, 1), help="0 to 1.")
@click.option("--kind", help="New kind.")
@click.option("-n", "--namespace", metavar="NS", help="Move to this namespace.")
@click.option("--thread", help="New thread.")
@click.option("--position", type=click.IntRange(min=0), help="New place in the thread.")
@click.option("--created-at", type=When(), metavar="WHEN", help="New time the memory is about.")
@json_option
@click.pass_context
def edit(ctx: click.Context, memory_id: str, text: str | None, tags: list[str],
         clear_tags: bool, meta: tuple[tuple[str, Any], ...], drop_meta: tuple[str, ...],
         importance: float | None, kind: str | None, namespace: str | None,
         thread: str | None, position: int | None, created_at: str | None) -> None:
    """Change a memory: new TEXT (or stdin with `-`), and/or fields.

    With neither TEXT nor an option, opens $EDITOR on the current text; saving it
    unchanged changes nothing.

    \b
    Examples:
      memory edit 0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b "Alice is allergic to tree nuts"
      memory edit 0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b -t health -t family --importance 0.8
      memory edit 0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b      # opens your editor
    """
    if tags and clear_tags:
        raise click.UsageError("--tag and --clear-tags cannot be combined")
    client = connect(ctx)
    changes: dict[str, Any] = {}
    current: dict[str, Any] | None = None
    if tags or clear_tags:
        changes["tags"] = tags
    if meta or drop_meta:
        # memory.update replaces metadata as a whole; merging here makes --meta set a key.
        current = client.get(memory_id)
        metadata = dict(current.get("metadata") or {})
        metadata.update(dict(meta))
        for key in drop_meta:
            metadata.pop(key, None)
        changes["metadata"] = metadata
    for name, value in (("importance", importance), ("kind", kind), ("namespace", namespace),
                        ("thread", thread), ("position", position),
                        ("created_at", created_at)):
        if value is not None:
            changes[name] = value
    if text is not None:
        changes["content"] = read_text(text)
    elif not changes:
        current = client.get(memory_id)
        edited = click.edit(current.get("content", ""), require_save=True)
        # click.edit adds a final newline to the file; the stored text may not have one.
        if edited is None or edited.rstrip("\n") == current.get("content", "").rstrip("\n"):
            render({**current, "changed": False}, lambda _m: click.echo("no change"))
            return
        edited = edited.rstrip("\n")
        if not edited.strip():
            fail("invalid_params", "the edited text is empty; nothing changed")
        changes["content"] = edited
    memory = client.update(memory_id, **changes)

    def human(m: dict[str, Any]) -> None:
        click.echo(f"updated {click.style(m.get('id', memory_id), **_ID)}")

    render({**memory, "changed": True}, human)


@cli.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@json_option
@click.pass_context
def rm(ctx: click.Context, ids: tuple[str, ...]) -> None:
    """Delete memories by id (no confirmation: an exact id is explicit).

    The memory's text goes from its history too; a content-free record of the deletion
    stays. Exits 1 if any id could not be deleted; the others are still deleted.

    \b
    Example:
      memory rm 0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b 0193a1b2-8d4e-7f50-9bac-1d2e3f4a5b6c
    """
    client = connect(ctx)
    deleted: list[str] = []
    errors: list[dict[str, Any]] = []
    for memory_id in dict.fromkeys(ids):
        try:
            client.delete(memory_id)
        except MemorydError as exc:
            # Per-id problems (not_found, a malformed id) must not stop the rest; a daemon
            # that cannot serve at all will fail the next id the same way, so stop there.
            if exc.name not in ("not_found", "invalid_params"):
                raise
            errors.append({"id": memory_id, "error": {"code": exc.name, "message": exc.message}})
        else:
            deleted.append(memory_id)

    def human(d: dict[str, Any]) -> None:
        for memory_id in d["deleted"]:
            click.echo(f"deleted {click.style(memory_id, **_ID)}")
        for err in d["errors"]:
            click.echo(f"{click.style('error:', fg='red', bold=True)} {err['id']}: "
                       f"{err['error']['message']}", err=True)

    render({"deleted": deleted, "errors": errors}, human)
    if errors:
        ctx.exit(1)


def _show_history(events: list[dict[str, Any]]) -> None:
    rows = [[str(e.get("seq", "")), to_local(e.get("at")), str(e.get("actor") or "-"),
             str(e.get("action", "")), ", ".join(sorted(e.get("changes") or {}))]
            for e in events]
    table(rows, ["seq", "at", "actor", "action", "changed"], [None, _DIM, None, {"bold": True}])


@cli.command()
@click.argument("memory_id", metavar="ID")
@json_option
@click.pass_context
def history(ctx: click.Context, memory_id: str) -> None:
    """Show how a memory changed over time, oldest first.

    \b
    Example:
      memory history 0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b --json
    """
    events = connect(ctx).history(memory_id)
    render({"events": events}, lambda d: _show_history(d["events"]))


# -- import / export -----------------------------------------------------------------------

class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, _n: int) -> None:
        return None


def _max_request_bytes() -> int:
    try:
        return load_settings(resolve_paths()).server.max_request_bytes
    except MemorydError:
        return 4 * 1024 * 1024  # the daemon will say what is wrong with the config


@cli.command("import")
@click.argument("source", metavar="FILE|-", type=click.File("r", encoding="utf-8-sig"))
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl",
              show_default=True, help="Input format: one JSON object per line.")
@click.option("-n", "--namespace", metavar="NS", help="Namespace for lines that name none.")
@click.option("--into", metavar="NS",
              help="Put every line into this namespace, whatever the line says.")
@json_option
@click.pass_context
def import_cmd(ctx: click.Context, source: Any, fmt: str, namespace: str | None,
               into: str | None) -> None:
    """Import memories from a JSON-lines FILE (or stdin with `-`).

    Each line is an object with `content` and optionally namespace, tags, metadata, kind,
    importance, created_at, thread, position, source, expires_at. The extra fields
    `memory export` writes (id, updated_at, ...) are ignored, so an export imports as is.
    Blank lines are skipped. Bad lines are reported as `line N: ...` and the good ones
    are still stored; the exit status is 1 if any line failed.

    \b
    Examples:
      memory import notes.jsonl --namespace notes
      memory export -n work | memory import - --into work-copy
    """
    try:
        lines = source.read().split("\n")
    except UnicodeDecodeError as exc:
        fail("invalid_params", f"{source.name}: not UTF-8 text (byte {exc.start})")
    if lines and lines[-1] == "":
        lines.pop()
    client = connect(ctx)
    problems: list[jsonl.Problem] = []
    counts = {"imported": 0, "duplicates": 0}
    bar: Any = (click.progressbar(length=len(lines), label="importing", file=sys.stderr)
                if sys.stderr.isatty() and lines else _NoProgress())
    try:
        with bar:
            for batch in jsonl.batches(lines, max_request_bytes=_max_request_bytes(),
                                       default_namespace=namespace, into_namespace=into,
                                       problems=problems):
                if batch.items:
                    _import_batch(client, batch, problems, counts)
                bar.update(batch.consumed)
    finally:
        problems.sort(key=lambda p: p.line)
        if not wants_json():
            for problem in problems:
                click.echo(f"line {problem.line}: {problem.message}", err=True)
    summary = {
        "imported": counts["imported"], "duplicates": counts["duplicates"],
        "failed": len(problems),
        "errors": [{"line": p.line, "code": p.name, "message": p.message} for p in problems],
    }
    render(summary, lambda s: click.echo(
        f"imported {s['imported']}, duplicates {s['duplicates']}, failed {s['failed']}"))
    if problems:
        ctx.exit(1)


def _import_batch(client: Client, batch: jsonl.Batch, problems: list[jsonl.Problem],
                  counts: dict[str, int]) -> None:
    try:
        result = client.import_items(batch.items)
    except MemorydError as exc:
        # The whole call failed (daemon gone, locked, ...): later batches would fail alike.
        raise MemorydError(f"{exc.message} (at line {batch.lines[0]}; imported "
                           f"{counts['imported']} before that)", code=exc.code,
                           data={"name": exc.name}) from None
    for entry in result.get("results") or []:
        line = batch.lines[int(entry["index"])]
        if entry.get("error"):
            err = entry["error"]
            name = (err.get("data") or {}).get("name") or "error"
            problems.append(jsonl.Problem(line, name, str(err.get("message", "failed"))))
        elif entry.get("duplicate"):
            counts["duplicates"] += 1
        else:
            counts["imported"] += 1


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl",
              show_default=True, help="Output format: one JSON object per line.")
@namespace_option("Only this namespace (default: all).")
@click.option("-o", "--output", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE (mode 0600) instead of stdout.")
@json_option
@click.pass_context
def export(ctx: click.Context, fmt: str, namespace: str | None, output: Path | None) -> None:
    """Write memories as JSON lines, oldest first.

    The output holds your memories in plain text: keep it somewhere safe. With -o the
    file is created readable by you only, and appears complete or not at all.

    \b
    Examples:
      memory export -o backup.jsonl
      memory export -n work | gzip > work.jsonl.gz
    """
    client = connect(ctx)
    if output is None or str(output) == "-":
        stream = sys.stdout
        count = sum(1 for _ in _write_export(client, namespace, stream))
        stream.flush()
        if sys.stderr.isatty() and not wants_json():
            click.echo(f"exported {count} memories", err=True)
        return
    target = output.expanduser().resolve()
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            count = sum(1 for _ in _write_export(client, namespace, out))
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    render({"exported": count, "path": str(target)},
           lambda d: click.echo(f"exported {d['exported']} memories to {d['path']}"))


def _write_export(client: Client, namespace: str | None, out: Any) -> Any:
    for memory in client.export(namespace=namespace):
        out.write(jsonl.dump_line(memory))
        yield memory


# -- store ---------------------------------------------------------------------------------

def _show_stats(s: dict[str, Any]) -> None:
    disk = s.get("disk_bytes") or {}
    fields([("memories", s.get("memories", 0)), ("threads", s.get("threads", 0)),
            ("database", human_bytes(disk.get("database"))),
            ("vectors", human_bytes(disk.get("vectors")))])
    for title, counts in (("namespace", s.get("namespaces")), ("kind", s.get("kinds")),
                          ("tag", s.get("tags"))):
        if counts:
            click.echo()
            ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            table([[name, str(n)] for name, n in ordered[:20]], [title, "memories"],
                  fit_last=False)
            if len(ordered) > 20:
                click.echo(click.style(f"... and {len(ordered) - 20} more", dim=True))


@cli.command()
@json_option
@click.pass_context
def stats(ctx: click.Context) -> None:
    """Count memories by namespace, kind and tag, and show disk use.

    \b
    Example:
      memory stats --json
    """
    render(connect(ctx).stats(), _show_stats)


def _show_status(s: dict[str, Any]) -> None:
    emb = s.get("embedding") or {}
    index = s.get("vector_index") or {}
    key = s.get("key") or {}
    model = f"{emb.get('provider', '-')} {emb.get('model', '')}".strip()
    state = str(emb.get("state", "-"))
    if emb.get("error"):
        state += f" ({emb['error']})"
    pairs: list[tuple[str, Any]] = [
        ("locked", "yes (run `memory unlock`)" if s.get("locked") else "no")]
    # A locked store cannot count anything; the daemon leaves those fields out.
    if "memories" in s:
        pairs.append(("memories", s["memories"]))
    if "waiting_for_embedding" in s:
        pairs.append(("waiting", f"{s['waiting_for_embedding']} to embed"))
    tier = s.get("search_tier")
    if tier == "ram":
        ram = s.get("ram_vectors") or {}
        loaded = "" if ram.get("ready") else ", loading"
        if (ram.get("first_pass") or {}).get("ready"):
            loaded += ", first pass ready"
        pairs.append(("vectors", f"in RAM, {ram.get('rows', 0)} rows{loaded}"))
    elif tier == "index" or index:
        not_ready = "" if index.get("ready") else ", not ready"
        if index.get("rebuilding"):
            not_ready = ", rebuilding (searches by words meanwhile)"
        pairs.append(("vectors", f"encrypted index, {index.get('rows', '-')} rows, "
                                 f"{index.get('pending', 0)} pending{not_ready}"))
    ann = index.get("ann") or {}
    if ann.get("indexed") or ann.get("training"):
        calibrated = "" if ann.get("probes_recall") is None else ", calibrated"
        training = ", training" if ann.get("training") else ""
        pairs.append(("ANN index", f"{ann.get('indexed', 0)} rows, {ann.get('unindexed', 0)} "
                                   f"to fold in, {ann.get('probes', '-')} probes{calibrated}"
                                   f"{training}"))
    pairs += [
        ("model", f"{model}, dim {emb.get('dim') or '-'}"),
        ("model state", state),
        ("key", ("passphrase" if key.get("protected") else "key file")
         + (f", fingerprint {key['fingerprint']}" if key.get("fingerprint") else "")),
        ("data", s.get("data_dir", "-")),
    ]
    fields(pairs)


@cli.command()
@json_option
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show the store: lock state, embedding model, index backlog, key.

    \b
    Example:
      memory status
    """
    render(connect(ctx).status(), _show_status)


# -- config --------------------------------------------------------------------------------

@cli.group()
def config() -> None:
    """Inspect memoryd's settings.

    \b
    Example:
      memory config show
    """


@config.command("show")
@json_option
def config_show() -> None:
    """Print the effective settings and every path (no daemon needed).

    Settings come from defaults, then config.toml in the config folder, then
    MEMORYD_<SECTION>_<KEY> environment variables.

    \b
    Examples:
      memory config show
      MEMORYD_HOME=/tmp/m memory config show --json
    """
    paths = resolve_paths()
    settings = load_settings(paths)
    data = {"home": os.environ.get("MEMORYD_HOME") or None, "paths": paths.as_dict(),
            "settings": settings.as_dict(), "config_file_exists": paths.config_file.exists()}

    def human(d: dict[str, Any]) -> None:
        click.echo(click.style("paths", bold=True))
        fields([(f"  {name}", value) for name, value in d["paths"].items()])
        click.echo()
        note = "" if d["config_file_exists"] else " (no config.toml: defaults and environment)"
        click.echo(click.style("settings", bold=True) + note)
        fields([(f"  {section}.{key}", json.dumps(value) if isinstance(value, str) else value)
                for section, items in d["settings"].items() for key, value in items.items()])

    render(data, human)


# -- keys ----------------------------------------------------------------------------------

@cli.group()
def key() -> None:
    """Manage the passphrase that protects the data key.

    \b
    Example:
      memory key passwd
    """


@key.command("passwd")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the new passphrase from this file instead of prompting.")
@click.option("--old-passphrase-file",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the current passphrase from this file instead of prompting.")
@click.option("--remove", is_flag=True, help="Remove the passphrase: back to a plain key file.")
@json_option
@click.pass_context
def key_passwd(ctx: click.Context, passphrase_file: Path | None,
               old_passphrase_file: Path | None, remove: bool) -> None:
    """Set, change or remove the passphrase on the data key.

    The data key is re-wrapped; the data is not re-encrypted. With a passphrase, the
    daemon starts locked and `memory unlock` opens it.

    \b
    Examples:
      memory key passwd
      memory key passwd --passphrase-file ~/.secret
      memory key passwd --remove
    """
    if remove and passphrase_file:
        raise click.UsageError("--remove and --passphrase-file cannot be combined")
    client = connect(ctx)
    protected = bool((client.status().get("key") or {}).get("protected"))
    if remove and not protected:
        render({"protected": False, "changed": False},
               lambda _d: click.echo("the data key has no passphrase; nothing to remove"))
        return
    old = None
    if protected:
        old = (read_secret(old_passphrase_file) if old_passphrase_file else
               click.prompt("Current passphrase", hide_input=True, err=True))
    new = None
    if not remove:
        new = (read_secret(passphrase_file) if passphrase_file else
               click.prompt("New passphrase", hide_input=True, confirmation_prompt=True,
                            err=True))
    result = client.passwd(new, old)

    def human(d: dict[str, Any]) -> None:
        if d.get("protected"):
            click.echo("passphrase set: memoryd will start locked; `memory unlock` opens it")
        else:
            click.echo("passphrase removed: the data key is in a plain key file again")

    render(result, human)


@cli.command()
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the passphrase from this file.")
@json_option
@click.pass_context
def unlock(ctx: click.Context, passphrase_file: Path | None) -> None:
    """Unlock a daemon whose data key has a passphrase.

    The passphrase comes from --passphrase-file, else $MEMORYD_PASSPHRASE, else a prompt.

    \b
    Examples:
      memory unlock
      memory unlock --passphrase-file ~/.secret
    """
    if passphrase_file:
        passphrase = read_secret(passphrase_file)
    elif os.environ.get(PASSPHRASE_ENV):
        passphrase = os.environ[PASSPHRASE_ENV]
    else:
        passphrase = click.prompt("Passphrase", hide_input=True, err=True)
    result = connect(ctx).unlock(passphrase)
    render(result, lambda _d: click.echo("unlocked"))


# -- daemon --------------------------------------------------------------------------------

@cli.group()
def daemon() -> None:
    """Start, stop and inspect the memoryd daemon.

    Other commands start the daemon on demand; these are for when you want control.

    \b
    Examples:
      memory daemon status
      memory daemon logs -f
    """


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still answers kill(0) but is gone for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@daemon.command("start")
@json_option
@click.pass_context
def daemon_start(ctx: click.Context) -> None:
    """Start memoryd in the background, unless it is running; print its pid.

    \b
    Example:
      memory daemon start
    """
    paths = resolve_paths()
    started = False
    if not is_running(paths):
        start_daemon(paths)
        started = True
    info = connect(ctx, autostart=False).daemon_status()
    data = {"started": started, "pid": info.get("pid"), "socket": info.get("socket")}
    render(data, lambda d: click.echo(
        f"{'started memoryd' if d['started'] else 'memoryd is already running'} "
        f"(pid {d['pid']})"))


@daemon.command("stop")
@click.option("--timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds to wait for the daemon to exit.")
@json_option
@click.pass_context
def daemon_stop(ctx: click.Context, timeout: float) -> None:
    """Ask memoryd to finish its work and exit; wait until it has.

    \b
    Example:
      memory daemon stop
    """
    paths = resolve_paths()
    if not is_running(paths):
        render({"stopped": False, "running": False},
               lambda _d: click.echo("memoryd is not running"))
        return
    client = connect(ctx, autostart=False)
    pid = client.daemon_status().get("pid")
    try:
        client.shutdown()
    except MemorydError as exc:
        # Already stopping, or it closed the connection on its way out: both are fine.
        if exc.name not in ("shutting_down", "unavailable"):
            raise
    client.close()
    deadline = time.monotonic() + timeout
    while is_running(paths) or _pid_alive(pid):
        if time.monotonic() > deadline:
            fail("timeout", f"memoryd (pid {pid}) did not stop within {timeout:g}s")
        time.sleep(0.05)
    render({"stopped": True, "pid": pid}, lambda d: click.echo(f"stopped memoryd (pid {d['pid']})"))


def _show_daemon(d: dict[str, Any]) -> None:
    uptime = d.get("uptime_s")
    fields([
        ("pid", d.get("pid")), ("version", d.get("version")),
        ("started", to_local(d.get("started_at"))),
        ("uptime", f"{uptime:.0f}s" if isinstance(uptime, int | float) else "-"),
        ("locked", "yes (run `memory unlock`)" if d.get("locked") else "no"),
        ("connections", d.get("connections")), ("socket", d.get("socket")),
        ("data", d.get("data_dir")),
    ])


@daemon.command("status")
@json_option
@click.pass_context
def daemon_status(ctx: click.Context) -> None:
    """Show whether memoryd runs (exit 1 if not), its pid, uptime and socket.

    \b
    Example:
      memory daemon status || memory daemon start
    """
    render(connect(ctx, autostart=False).daemon_status(), _show_daemon)


@daemon.command("run")
@json_option
def daemon_run() -> None:
    """Run memoryd in the foreground (for systemd, launchd, or debugging).

    \b
    Example:
      MEMORYD_LOG_LEVEL=DEBUG memory daemon run
    """
    # Imported here, not at the top: the server pulls in every engine, and the rest of
    # the CLI must start without them.
    from memoryd.server.daemon import run_foreground

    code = run_foreground()
    if isinstance(code, int) and code:
        raise click.exceptions.Exit(code)


@daemon.command("logs")
@click.option("-n", "--lines", "count", type=click.IntRange(min=0), default=50,
              show_default=True, help="Show the last N lines.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing lines as they are written.")
@json_option
def daemon_logs(count: int, follow: bool) -> None:
    """Print the end of the daemon's log file (ids and events, never memory text).

    \b
    Examples:
      memory daemon logs -n 100
      memory daemon logs -f
    """
    if follow and wants_json():
        raise click.UsageError("--follow cannot be combined with --json")
    log_file = resolve_paths().log_file
    if not log_file.exists():
        fail("not_found", f"no log file yet at {log_file}")
    with log_file.open("r", encoding="utf-8", errors="replace") as fh:
        tail = list(deque(fh, maxlen=count)) if count else []
        position = fh.tell()
    render({"path": str(log_file), "lines": [line.rstrip("\n") for line in tail]},
           lambda d: click.echo("".join(f"{line}\n" for line in d["lines"]), nl=False))
    if follow:
        _follow(log_file, position)


def _follow(path: Path, position: int) -> None:
    try:
        inode = path.stat().st_ino
        while True:
            try:
                st = path.stat()
            except FileNotFoundError:
                time.sleep(0.25)
                continue
            if st.st_ino != inode or st.st_size < position:
                # Rotated or truncated: start over at the top of the new file.
                inode, position = st.st_ino, 0
            if st.st_size > position:
                with path.open("r", encoding="utf-8", errors="replace") as fh:
                    fh.seek(position)
                    chunk = fh.read()
                    position = fh.tell()
                click.echo(chunk, nl=False)
            time.sleep(0.25)
    except KeyboardInterrupt:
        return


def main() -> None:
    # platformdirs warns when XDG_RUNTIME_DIR is unset; memoryd.config already falls back
    # to a private folder then, so the warning would only be noise on every command.
    cli.main(prog_name="memory")


if __name__ == "__main__":
    main()
