"""``convert.parity.runners``: the runtime names a parity run accepts (TF-free; no runtime is started)."""

from __future__ import annotations

import pytest

from convert.errors import DeployKitError
from convert.parity.runners import RUNTIMES, TFLITE_RUNTIMES, Runners, parse_runtimes


def test_default_is_every_runtime_in_a_fixed_order() -> None:
    assert parse_runtimes(None) == ["litert", "tflite-runtime", "chromium-cpu", "chromium-wasm", "chromium-webgl"]
    assert list(RUNTIMES) == parse_runtimes(None)
    assert TFLITE_RUNTIMES == {"litert", "tflite-runtime"}


def test_a_list_is_trimmed_and_put_in_the_canonical_order() -> None:
    assert parse_runtimes(" chromium-cpu, litert ,") == ["litert", "chromium-cpu"]
    assert parse_runtimes(["chromium-webgl", "tflite-runtime"]) == ["tflite-runtime", "chromium-webgl"]


def test_unknown_and_empty_lists_are_refused() -> None:
    with pytest.raises(DeployKitError) as unknown:
        parse_runtimes("litert,chromium-gpu")
    assert str(unknown.value) == ("unknown runtime 'chromium-gpu' in --runtimes; choose from litert, tflite-runtime, "
                                  "chromium-cpu, chromium-wasm, chromium-webgl")
    with pytest.raises(DeployKitError) as empty:
        parse_runtimes(" , ")
    assert str(empty.value) == ("--runtimes is empty; choose from litert, tflite-runtime, chromium-cpu, "
                                "chromium-wasm, chromium-webgl")


def test_runners_start_nothing_until_asked() -> None:
    with Runners() as runners:
        assert runners.workers == {} and runners.browser is None
    assert runners.workers == {} and runners.browser is None
