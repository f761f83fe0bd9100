"""A deferred package's submodules import without its ``__init__``, which runs once, when
the package is first asked for a name of its own; lancedb imports that way without its
REST client and still works."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryd.store.deferred import defer_package

PACKAGE = "memoryd_deferred_probe"


@pytest.fixture
def probe_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package whose ``__init__`` counts its runs in a file, with one submodule."""
    root = tmp_path / PACKAGE
    root.mkdir()
    runs = tmp_path / "init-runs"
    (root / "__init__.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        _runs = Path({str(runs)!r})
        _runs.write_text(str(int(_runs.read_text()) + 1) if _runs.exists() else "1")
        FROM_INIT = "init ran"
        from {PACKAGE}.sub import VALUE as SUB_VALUE
    """))
    (root / "sub.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield runs
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def test_submodules_import_without_the_init_which_runs_once_on_first_use(
    probe_package: Path,
) -> None:
    assert defer_package(PACKAGE)
    from memoryd_deferred_probe.sub import VALUE  # type: ignore[import-not-found]

    assert VALUE == 42
    assert not probe_package.exists()  # the package's __init__ has not run

    import memoryd_deferred_probe as package  # type: ignore[import-not-found]

    assert package.FROM_INIT == "init ran"
    assert package.SUB_VALUE == 42
    assert probe_package.read_text() == "1"
    with pytest.raises(AttributeError):
        package.not_there  # noqa: B018 - a missing name stays missing
    assert probe_package.read_text() == "1"  # and does not run the __init__ again


def test_imported_or_missing_packages_are_left_alone(probe_package: Path) -> None:
    import memoryd_deferred_probe  # noqa: F401  # type: ignore[import-not-found]

    assert probe_package.read_text() == "1"
    assert not defer_package(PACKAGE)
    assert not defer_package("memoryd_no_such_package")
    assert "memoryd_no_such_package" not in sys.modules


def test_lancedb_imports_without_its_rest_client_which_still_loads_on_use() -> None:
    # In a child: this process may have imported lancedb already.
    script = textwrap.dedent("""
        import sys
        import memoryd.store.vectors
        print("api" if "lance_namespace_urllib3_client.api" in sys.modules else "no api")
        import lance_namespace_urllib3_client as client
        print(client.ApiClient.__name__)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["no api", "ApiClient"]
