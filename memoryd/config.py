"""Where memoryd keeps things, and the settings it runs with.

Light on purpose: the CLI imports this module, so it must not pull in any engine.
Settings come from defaults, then ``config.toml`` in the config directory, then
``MEMORYD_<SECTION>_<KEY>`` environment variables (the last word wins).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memoryd.errors import ConfigError

APP_NAME = "memoryd"
ENV_PREFIX = "MEMORYD_"
# Short aliases users reach for first; each maps onto a dotted settings key.
ENV_ALIASES = {"MEMORYD_MODEL_DIR": "embedding.model_dir"}


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    runtime_dir: Path
    log_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def key_file(self) -> Path:
        return self.config_dir / "key.json"

    @property
    def database(self) -> Path:
        return self.data_dir / "memory.duckdb"

    @property
    def vector_dir(self) -> Path:
        return self.data_dir / "vectors"

    @property
    def index_on_disk(self) -> bool:
        """Whether the encrypted vector index exists: the store was above the RAM tier
        when last opened, and most likely still is (the daemon's malloc arenas and its
        early import of lancedb are decided by it, before the store is read)."""
        return self.vector_dir.exists()

    @property
    def temp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "memoryd.lock"

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "memoryd.sock"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "memoryd.log"

    def as_dict(self) -> dict[str, str]:
        names = [
            "config_dir",
            "data_dir",
            "runtime_dir",
            "log_dir",
            "config_file",
            "key_file",
            "database",
            "vector_dir",
            "socket",
            "log_file",
        ]
        return {name: str(getattr(self, name)) for name in names}


def resolve_paths(env: dict[str, str] | None = None) -> Paths:
    env = dict(os.environ) if env is None else env
    home = env.get("MEMORYD_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        return Paths(root / "config", root / "data", root / "run", root / "log")
    import platformdirs

    return Paths(
        config_dir=Path(platformdirs.user_config_dir(APP_NAME)),
        data_dir=Path(platformdirs.user_data_dir(APP_NAME)),
        runtime_dir=_runtime_dir(),
        log_dir=Path(platformdirs.user_log_dir(APP_NAME)),
    )


def _runtime_dir() -> Path:
    import warnings

    import platformdirs

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback below handles it.
        warnings.simplefilter("ignore")
        candidate = Path(platformdirs.user_runtime_dir(APP_NAME))
    # /run/user/<uid> only exists inside a logind session; root shells, containers and
    # cron jobs often lack it. A per-uid folder in the temp dir is the usual fallback.
    if candidate.parent.is_dir() and os.access(candidate.parent, os.W_OK):
        return candidate
    import tempfile  # here, not above: with shutil it is ~10% of the CLI's start

    return Path(tempfile.gettempdir()) / f"{APP_NAME}-{os.getuid()}"


@dataclass(frozen=True)
class EmbeddingSettings:
    provider: str = "fastembed"  # fastembed | hash | none
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    model_dir: str = ""
    batch_size: int = 64
    threads: int = 0  # lanes that embed a batch side by side, one thread each; 0: one a core


@dataclass(frozen=True)
class ServerSettings:
    max_request_bytes: int = 4 * 1024 * 1024
    max_json_depth: int = 32
    request_timeout: float = 60.0
    max_connections: int = 64
    # The daemon's event loop: "uvloop" (the standard loop when uvloop is not installed)
    # or "asyncio", the standard library's (memoryd/server/daemon.py).
    event_loop: str = "uvloop"


@dataclass(frozen=True)
class SearchSettings:
    default_limit: int = 10
    max_limit: int = 1000
    # Metadata whose values are indexed with the content (words and embedding).
    index_metadata_keys: str = "speaker,author,title"
    # Index each memory with the one before it in its thread.
    thread_context: bool = True
    # Hybrid fusion: weight of the vector signal against the lexical one (0..1).
    vector_weight: float = 0.5
    # Hybrid: share of the best neighbour's score a memory receives (0 turns it off).
    neighbour_weight: float = 0.2
    # Optional signals, off unless set here or per query: weight of recency (half-life
    # decay on created_at) and of importance, added to the fused score.
    recency_weight: float = 0.0
    recency_half_life_days: float = 30.0
    importance_weight: float = 0.0
    # Hybrid: boost for memories inside a time the query names ("last week", "in May
    # 2023"), added to the fused score. 0 turns it off.
    time_weight: float = 0.3
    # Up to this many embedded memories, vector search scans int8 copies in RAM (0.4 KB
    # a memory at 384 dimensions), loaded at start; above it, the encrypted vector index.
    # 0 keeps vectors out of RAM. A million, as for the lexical copy below: on the
    # bench's 1M store (docs/performance-log.md, 2026-11-24) the RAM tier imported at
    # 15,400-18,200/s against 9,800-10,900 for the index tier (whose encryption, ANN
    # trainings and compactions take the second core during an import), idled at 949-987
    # MB of RSS against 1,051-1,258, searched by vector as fast (16.0 against 16.3 ms),
    # hybrid a little slower (21.0 against 18.1), and answered its first search 1.5 s
    # after a start (the load: 1.1-1.5 s) against 0.9.
    ram_max: int = 1_000_000
    # From this many RAM vectors, a search first scans 64-dimension codes of them along
    # the store's principal axes, and scores in full only the rows whose bounds say they
    # can be among the nearest (memoryd/search/first_pass.py): the same results, from a
    # sixth of the bytes. ~76 bytes a memory (7.6 MB at 100k); a restarted daemon at
    # 100k bench memories held 11-14 MB more with it. 0 turns it off.
    first_pass_min_rows: int = 32_768
    # From this many RAM vectors (and once the first pass is built), a neighbour graph
    # (HNSW) over the first pass's codes is built in the background, and searches of
    # every row walk it instead of scanning (memoryd/search/graph.py): a few thousand
    # rows visited instead of all. Kept only if it finds at least 0.97 of the scan's
    # nearest for the store's last 64 queries: a model's vectors pass, the `hash`
    # embedder's do not (a daemon on it builds none). ~50 MB more idle RSS at 110k
    # real-model memories. 0 turns it off.
    graph_min_rows: int = 50_000
    # Up to this many memories, lexical search (BM25) and ranking run from a RAM copy of
    # the postings and rank facts, built in the background once vector search is ready
    # and searches pause; above it, and meanwhile, from SQL.
    # ~0.5 KB a memory of the daemon's RSS (490 MB at 1M); at 1M memories a lexical
    # search takes ~7 ms instead of ~67. 0 keeps them out of RAM.
    lexical_ram_max: int = 1_000_000
    # With them, up to this many MB, the fields a search hit returns (content, metadata,
    # times): a search then reads no row from DuckDB (10 hits: ~0.3 ms against 1.1-3.6 ms
    # at 100k memories). ~110 bytes a short memory (10.8 MB at 100k); a store whose copy
    # would be larger reads its hits from DuckDB. 0 keeps them out of RAM.
    rows_ram_max_mb: int = 64
    # Above ram_max, the encrypted index gets an ANN index (IVF_SQ over the ciphertexts)
    # once it holds this many vectors, built in the background; below it, and until the
    # build commits, the index is searched exhaustively.
    ann_min_rows: int = 100_000
    # Rows per partition the ANN index aims at (~980 partitions at 1M rows). Searches
    # probe a number of partitions calibrated on a sample of their queries
    # (memoryd/search/probes.py). Finer than Lance's default (8,192) because each probe
    # then looks at fewer rows that are far from the query: on the 1M bench store, 40 probes
    # of 8,192 rows found 0.988 of the exact top 10 in 15.1 ms, 80 of 2,048 rows 0.9845 in
    # 10.6 ms, and 120 of 1,024 rows 0.990 in 8.7 ms where 80 of 2,048 took 11.8-12.3 ms
    # in the same run (docs/performance-log.md). Training took 28 s at 1M (2,048: ~20 s).
    ann_partition_rows: int = 1_024
    # Each fold of new rows into the ANN index adds a segment that every search probes
    # too (~0.3 ms each at 200k rows, ~0.8 ms at 1M); a fold that would leave more than
    # this many merges them all (1.4-1.8 s at 1M rows), as does any compaction once
    # writes have paused.
    ann_max_segments: int = 8
    # Above ram_max, acknowledged vectors wait this long to be written to the encrypted
    # index together (fewer, bigger fragments); searches read them exactly meanwhile.
    index_flush_delay_ms: int = 200

    @property
    def index_keys(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in self.index_metadata_keys.split(",") if k.strip())


@dataclass(frozen=True)
class StoreSettings:
    # DuckDB's memory limit (its buffer pool and query memory), in MB; 0: DuckDB's
    # default, 80% of RAM. Data beyond it is re-read from the (encrypted) file.
    memory_limit_mb: int = 0
    # DuckDB folds its write-ahead log into the database file (a checkpoint) once the log
    # reaches this size. Each checkpoint rewrites the whole id index (DuckDB issue 24848),
    # ~1 s at 100k memories, so DuckDB's 16 MB made imports slow down as the store grew.
    # A crash replays up to this much log at the next start; the daemon checkpoints by
    # itself when writes pause (see Database.checkpoint_if_logged).
    checkpoint_mb: int = 128  # 0: DuckDB's default (16)
    # Seconds without searches (or writes) after which DuckDB's cache of what searches
    # read is emptied; 0: never. Above the RAM tier searches read rows and vectors spread
    # over the whole table, so a 1M-memory daemon kept ~1.5 GB more after a few filtered
    # searches. The first search after it reads from the file again.
    cache_idle_s: float = 300.0


@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"


@dataclass(frozen=True)
class Settings:
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    log: LogSettings = field(default_factory=LogSettings)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


def load_settings(paths: Paths, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    values: dict[str, dict[str, Any]] = {}
    if paths.config_file.exists():
        import tomllib  # only with a config file: most CLI calls have none to read

        try:
            with paths.config_file.open("rb") as fh:
                raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{paths.config_file}: not valid TOML ({exc})") from None
        for section, items in raw.items():
            if not isinstance(items, dict):
                raise ConfigError(f"{paths.config_file}: [{section}] must be a table")
            for key, value in items.items():
                _check_key(section, key, str(paths.config_file))
                values.setdefault(section, {})[key] = value
    for name, value in env.items():
        dotted = ENV_ALIASES.get(name) or _env_key(name)
        if dotted is None:
            continue
        section, key = dotted.split(".", 1)
        values.setdefault(section, {})[key] = value
    return _build(values)


def _env_key(name: str) -> str | None:
    if not name.startswith(ENV_PREFIX):
        return None
    rest = name[len(ENV_PREFIX) :].lower()
    for section in _section_classes():
        if rest.startswith(section + "_"):
            key = rest[len(section) + 1 :]
            if key in {f.name for f in dataclasses.fields(_section_classes()[section])}:
                return f"{section}.{key}"
    return None


def _section_classes() -> dict[str, type]:
    return {
        "embedding": EmbeddingSettings,
        "server": ServerSettings,
        "search": SearchSettings,
        "store": StoreSettings,
        "log": LogSettings,
    }


def _check_key(section: str, key: str, where: str) -> None:
    classes = _section_classes()
    if section not in classes:
        raise ConfigError(f"{where}: unknown section [{section}]")
    if key not in {f.name for f in dataclasses.fields(classes[section])}:
        raise ConfigError(f"{where}: unknown key {section}.{key}")


def _build(values: dict[str, dict[str, Any]]) -> Settings:
    built = {}
    for section, cls in _section_classes().items():
        defaults = cls()
        kwargs = {}
        for key, value in values.get(section, {}).items():
            kwargs[key] = _coerce(f"{section}.{key}", getattr(defaults, key), value)
        built[section] = cls(**kwargs)
    return Settings(**built)


def _coerce(name: str, default: Any, value: Any) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in {"1", "true", "yes", "on"}:
                    return True
                if value.lower() in {"0", "false", "no", "off"}:
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        kind = type(default).__name__
        raise ConfigError(f"{name} must be {kind}, got {value!r}") from None
