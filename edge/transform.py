"""Runner-side input transforms named by an artifact's ``input_transform`` list.

``standardize``: ``z = (x - mean) / std`` per column of a 2-D input, computed in float64 and then cast to
float32. The web page does the same (float64 JS numbers, then ``Float32Array``), so both sides feed the
model bit-identical inputs.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def apply(transforms: Sequence[Mapping[str, Any] | None], inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Apply the transforms to a dict of input arrays; untouched inputs pass through unchanged.

    Raises:
        ValueError: an unknown transform kind, or a width that does not match mean/std.
    """
    out = dict(inputs)
    for transform in transforms or ():
        if transform is None:
            continue
        if transform["kind"] != "standardize":
            raise ValueError(f"unknown input transform {transform['kind']!r}; upgrade deploykit")
        name = transform["input"]
        x = np.asarray(out[name], dtype=np.float64)
        mean = np.asarray(transform["mean"], dtype=np.float64)
        std = np.asarray(transform["std"], dtype=np.float64)
        if x.shape[-1] != mean.shape[0]:
            raise ValueError(f"input {name!r} has {x.shape[-1]} columns, the transform expects {mean.shape[0]}")
        out[name] = ((x - mean) / std).astype(np.float32)
    return out
