"""lancedb embeds a Lance of its own; the index is compacted through pylance
(``VectorIndex.compact``). Both write the same table, so pylance must be the Lance that
lancedb embeds: a pair that drifted apart could write files the other cannot read."""

import lance
import lancedb
import pyarrow as pa


def test_pylance_is_the_lance_that_lancedb_writes_with(tmp_path):
    table = lancedb.connect(str(tmp_path)).create_table("t", pa.table({"n": [1, 2, 3]}))
    table.add(pa.table({"n": [4]}))
    manifests = sorted((tmp_path / "t.lance" / "_versions").glob("*.manifest"))
    assert manifests
    # Each manifest records the library and version that wrote it (Lance's
    # ``WriterVersion``): lancedb's embedded Lance wrote these.
    for manifest in manifests:
        assert b"lance" in manifest.read_bytes()
        assert lance.__version__.encode() in manifest.read_bytes(), (
            f"lancedb {lancedb.__version__} does not write with Lance {lance.__version__}: "
            "pin the pylance that matches it in pyproject.toml"
        )
