"""DuckDB spills into a directory of the connection's own, and what a dead process left
in the temp directory (older versions spilled into it directly) is removed once the
store is opened, and so locked, by this one."""

from __future__ import annotations

import os

from memoryd.store.database import Database


def test_stale_spill_files_are_removed_and_a_close_leaves_nothing(tmp_path):
    temp = tmp_path / "tmp"
    (temp / "spill-deadbeef").mkdir(parents=True)
    (temp / "spill-deadbeef" / "duckdb_temp_storage_DEFAULT-0.tmp").write_bytes(b"\0" * 64)
    (temp / "duckdb_temp_storage_S32K-0.tmp").write_bytes(b"\0" * 64)

    db = Database(tmp_path / "s.duckdb", os.urandom(32).hex(), temp)
    [own] = list(temp.iterdir())
    assert own.name.startswith("spill-") and own.name != "spill-deadbeef"
    assert db.con.execute("SELECT current_setting('temp_directory')").fetchone() == (str(own),)
    db.close()
    assert list(temp.iterdir()) == []
