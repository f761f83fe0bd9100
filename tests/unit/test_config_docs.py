"""Every setting is documented in docs/config.md, and nothing undocumented is read."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from memoryd.config import Settings, load_settings, resolve_paths

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_every_setting_is_documented_with_its_default():
    text = DOC.read_text()
    sections = dict(re.findall(r"## `\[(\w+)\]`\n(.*?)(?=\n## |\Z)", text, re.S))
    defaults = Settings()
    for section in dataclasses.fields(Settings):
        assert section.name in sections, section.name
        table = sections[section.name]
        for field in dataclasses.fields(getattr(defaults, section.name)):
            row = re.search(rf"^\| `{field.name}` \| ([^|]+) \|", table, re.M)
            assert row, f"{section.name}.{field.name} is not documented"
            value = getattr(getattr(defaults, section.name), field.name)
            shown = row.group(1).strip().strip("`")
            if isinstance(value, bool):
                assert shown == str(value).lower(), (field.name, shown)
            elif isinstance(value, int | float):
                assert float(shown) == float(value), (field.name, shown)
            elif value:
                assert shown == value, (field.name, shown)


def test_environment_overrides_every_key(tmp_path):
    env = {"MEMORYD_HOME": str(tmp_path)}
    for section in dataclasses.fields(Settings):
        for field in dataclasses.fields(getattr(Settings(), section.name)):
            default = getattr(getattr(Settings(), section.name), field.name)
            value = {bool: "true" if not default else "false", int: "7", float: "0.25",
                     str: "x"}[type(default)]
            env[f"MEMORYD_{section.name.upper()}_{field.name.upper()}"] = value
    loaded = load_settings(resolve_paths(env), env)
    assert loaded.store.memory_limit_mb == 7 and loaded.search.vector_weight == 0.25
    assert loaded.embedding.provider == "x" and loaded.search.thread_context is False
