"""The similar-shape table workers read: float16, memory-mapped, ranked as the float32 index would rank."""

from __future__ import annotations

import numpy as np
import pytest

from generation.shape_index import INDEX_FILE, TABLE_FILE, SimilarShapes, _export_table, _save


def write_index(root, descriptors: np.ndarray):
    path = root / INDEX_FILE
    _save(path, {f"shape_{i:03d}": d for i, d in enumerate(descriptors)}, {"request": {}})
    _export_table(path)
    return path


def unit_rows(rng, n: int, dims: int = 96) -> np.ndarray:
    rows = rng.normal(size=(n, dims)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_workers_share_a_float16_memory_map_and_rank_as_float32(tmp_path):
    rng = np.random.default_rng(0)
    descriptors = unit_rows(rng, 300)
    descriptors[7] = descriptors[3] + 0.05 * unit_rows(rng, 1)[0]  # a planted look-alike of shape 3
    ids = [f"shape_{i:03d}" for i in range(300)]
    similar = SimilarShapes(write_index(tmp_path, descriptors), None, {"train": ids})
    assert isinstance(similar.table, np.memmap) and similar.table.dtype == np.float16
    assert (tmp_path / TABLE_FILE).stat().st_size < 300 * 96 * 2 + 256

    ranked = similar.ranked("shape_003", 20)
    exact = descriptors @ descriptors[3] / np.linalg.norm(descriptors, axis=1) / np.linalg.norm(descriptors[3])
    assert ranked[0][0] == "shape_007"
    for shape_id, score in ranked:
        assert score == pytest.approx(exact[ids.index(shape_id)], abs=2e-3)
    assert [s for s, _ in ranked[:5]] == [ids[i] for i in np.argsort(-exact)[1:6]]


def test_a_rebuilt_index_replaces_the_stale_table(tmp_path):
    rng = np.random.default_rng(1)
    first = unit_rows(rng, 10)
    path = write_index(tmp_path, first)
    second = unit_rows(rng, 10)
    write_index(tmp_path, second)
    table = np.load(tmp_path / TABLE_FILE)
    np.testing.assert_array_equal(table, second.astype(np.float16))
    assert SimilarShapes(path, None, {}).table.shape == (10, 96)
