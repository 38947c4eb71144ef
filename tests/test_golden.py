"""convert.golden: feature statistics and the drift reference sample (no TensorFlow)."""

from __future__ import annotations

import json

import numpy as np

from convert.data import Dataset
from convert.golden import (DATA_ROWS, MIN_DATA_ROWS, MIN_REFERENCE_SAMPLE, REFERENCE_SAMPLE, feature_stats,
                            golden_inputs, reference_size)


def test_float32_columns_keep_float32_s_shortest_decimals() -> None:
    values = np.array([6.575, 6.421, 7.185, 3.561], dtype=np.float32).astype(np.float64)
    sample = feature_stats("rm", "features", 0, values)["reference_sample"]
    assert sample == [3.561, 6.421, 6.575, 7.185]
    assert np.array_equal(np.asarray(sample, dtype=np.float32), np.sort(values).astype(np.float32))  # the same float32s
    assert feature_stats("x", "x", 0, np.array([0.1, 0.30000000000000004]))["reference_sample"] == [0.1, 0.30000000000000004]


def test_the_reference_sample_is_bounded_per_feature_and_in_all() -> None:
    assert reference_size(1) == reference_size(20) == REFERENCE_SAMPLE
    assert reference_size(40) == 500 and reference_size(300) == MIN_REFERENCE_SAMPLE
    rng = np.random.default_rng(0)
    stats = feature_stats("f", "x", 0, rng.normal(size=5000).astype(np.float32).astype(np.float64), sample=reference_size(300))
    assert len(stats["reference_sample"]) == MIN_REFERENCE_SAMPLE
    assert stats["reference_sample"] == sorted(stats["reference_sample"])
    assert len(json.dumps(stats)) < 3000  # 300 such features: under 1 MB of manifest (was 1.7 MB at 200 rows)


def test_large_rows_get_fewer_golden_rows() -> None:
    """A 224 x 224 x 3 model's 24 golden rows made golden.json 26 MB (twice in the bundle) and verify 398 s."""
    small = Dataset({"image": np.zeros((100, 32, 32, 3), dtype=np.float32)})
    assert len(golden_inputs(small, None)[1]) == DATA_ROWS
    large = Dataset({"image": np.zeros((100, 224, 224, 3), dtype=np.float32)})
    inputs, kinds = golden_inputs(large, None)
    assert kinds == ["data"] * 6 and inputs["image"].shape == (6, 224, 224, 3)  # 1,000,000 // 150,528
    huge = Dataset({"image": np.zeros((10, 1024, 1024, 3), dtype=np.uint8)})
    assert len(golden_inputs(huge, None)[1]) == MIN_DATA_ROWS
