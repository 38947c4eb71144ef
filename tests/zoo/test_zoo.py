"""The model zoo: each model x artifact x runtime is one case, asserted in its real runtime.

A case passes, or it has a measured, specific outcome in ``zoo_expected.EXPECTED`` (the one table of
non-pass outcomes): the kit's message prefix (convert error, skipped format, runtime that cannot run it) or
a measured number (an artifact rejected by convert, a bound missed). An entry that stops happening fails
its case too ("now passes: drop the entry"), so the table stays true. Nothing is skipped.

The fast set runs in ``make test``; the rest is marked ``zoo_full`` (deselected by default, ``make zoo``).
"""

from __future__ import annotations

import pytest

import zoo_models
from convert.parity.engine import RUNTIMES
from zoo_expected import ARTIFACTS, BROWSER_RT, TFLITE_RT, check

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _cases():
    for model in zoo_models.ALL:
        marks = [] if zoo_models.SET[model] == "fast" else [pytest.mark.zoo_full]
        for short, artifact in ARTIFACTS.items():
            for rt in (TFLITE_RT if artifact.endswith(".tflite") else BROWSER_RT):
                yield pytest.param(model, short, rt, marks=marks, id=f"{model}-{short}-{rt}")


@pytest.mark.parametrize("model,short,runtime", list(_cases()))
def test_zoo_case(zoo, model: str, short: str, runtime: str) -> None:
    check(zoo(model).entry, short, runtime)


def test_all_runtimes_were_asked(zoo) -> None:
    assert zoo("digits_cnn").report.runtimes == list(RUNTIMES)


def test_the_zoo_has_30_models_at_least() -> None:
    assert len(zoo_models.ALL) >= 30
    assert len(set(zoo_models.ALL)) == len(zoo_models.ALL)
    assert 10 <= sum(1 for m in zoo_models.ALL if zoo_models.SET[m] == "fast") <= 12
