"""int8 codes of float rows, each row scaled so that its largest component is ±127: the
RAM vectors (``memoryd.search.quantized``) and their first pass's reduced codes
(``memoryd.search.first_pass``) are both coded so."""

from __future__ import annotations

import numpy as np


def quantize_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows' int8 codes and each row's scale (float32): a code times its scale is
    the row, within half a scale a component."""
    rows = np.asarray(rows, dtype=np.float32)
    peak = np.maximum(np.abs(rows).max(axis=1, keepdims=True), 1e-12)
    scaled = rows * (127.0 / peak)
    np.rint(scaled, out=scaled)
    return scaled.astype(np.int8), (peak[:, 0] / 127.0).astype(np.float32)
