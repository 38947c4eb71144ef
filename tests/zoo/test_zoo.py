"""The model zoo: each model x artifact x runtime is one case, asserted in its real runtime.

A case passes, or it has a measured, specific outcome in ``zoo_expected.EXPECTED`` (the one table of
non-pass outcomes): the kit's message prefix (convert error, skipped format, runtime that cannot run it) or
a measured number (an artifact rejected by convert, a bound missed). An entry that stops happening fails
its case too ("now passes: drop the entry"), so the table stays true. Nothing is skipped.

The fast set runs in ``make test``; the rest is marked ``zoo_full`` (deselected by default, ``make zoo``).
"""

from __future__ import annotations

import re
import pytest

import zoo_models
from convert.parity.engine import RUNTIMES
from zoo_expected import ARTIFACTS, BROWSER_RT, TFLITE_RT, Expect, expected_for

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# A skip reason names what is missing: a layer class or an op, CamelCase or UPPER_CASE.
NAMES_A_LAYER_OR_OP = re.compile(r"[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*|[A-Z][A-Z0-9_]{2,}")


def _cases():
    for model in zoo_models.ALL:
        marks = [] if zoo_models.SET[model] == "fast" else [pytest.mark.zoo_full]
        for short, artifact in ARTIFACTS.items():
            for rt in (TFLITE_RT if artifact.endswith(".tflite") else BROWSER_RT):
                yield pytest.param(model, short, rt, marks=marks, id=f"{model}-{short}-{rt}")


def first_number(text: str) -> float:
    """The first number in a message after its output name ("y: max error 3.2% ..." -> 0.032)."""
    match = re.search(r"(\d+(?:\.\d+)?(?:e[-+]?\d+)?)(%?)", text.split(": ", 1)[-1])
    assert match, f"no number in {text!r}"
    return float(match.group(1)) / (100 if match.group(2) else 1)


def observe(entry, short: str, runtime: str) -> tuple[str, str, float | None]:
    """What happened to one case: (kind, message, number). Kinds: pass, convert-error, skipped, rejected,
    cannot-run, error, miss."""
    if entry.convert_error:
        return "convert-error", entry.convert_error, None
    path = ARTIFACTS[short]
    artifact = entry.artifact(path)
    if artifact is None:
        fmt = "tflite" if path.endswith(".tflite") else f"tfjs_{path.split('/')[2]}"
        variant = artifact_variant(short)
        skips = [s for s in entry.manifest.get("skipped", []) if s["format"] == fmt
                 and (fmt != "tflite" or s.get("variant") == variant)]
        assert len(skips) == 1, f"{path} is neither written nor skipped once: {entry.manifest.get('skipped')}"
        return "skipped", skips[0]["reason"], None
    if artifact.get("status") == "rejected":
        why = str(artifact.get("rejection", ""))
        return "rejected", why, first_number(why)
    results = [r for r in entry.report.results if r.artifact == path and r.runtime == runtime]
    assert len(results) == 1, f"{path} on {runtime}: {len(results)} results"
    [result] = results
    if result.passed:
        return "pass", "", None
    if getattr(result, "status", "") == "unsupported":
        return "cannot-run", result.error or getattr(result, "note", ""), None
    if result.error:
        return "error", result.error, None
    return "miss", "; ".join(result.failures), first_number(result.failures[0])


def artifact_variant(short: str) -> str:
    return {"fp32": "float32", "fp16": "float16"}.get(short, short)


def close(measured: float, recorded: float) -> bool:
    """Same measurement within a factor of 2 (seeded training on another CPU moves it a little)."""
    return recorded / 2 <= measured <= recorded * 2


@pytest.mark.parametrize("model,short,runtime", list(_cases()))
def test_zoo_case(zoo, model: str, short: str, runtime: str) -> None:
    entry = zoo(model)
    kind, message, number = observe(entry, short, runtime)
    want: Expect | None = expected_for(model, short, runtime)
    if want is None:
        assert kind == "pass", f"{kind}: {message}"
        return
    assert kind == want.kind, f"expected {want.kind} ({want.text or want.number}), got {kind}: {message or 'now passes: drop the entry'}"
    if want.text:
        assert message.startswith(want.text), message
    if kind == "skipped":
        assert NAMES_A_LAYER_OR_OP.search(message), f"the skip reason names no layer or op: {message}"
    if want.number is not None:
        assert number is not None and close(number, want.number), f"measured {number:.3g}, recorded {want.number:.3g}: {message}"


def test_all_runtimes_were_asked(zoo) -> None:
    entry = zoo("digits_cnn")
    assert entry.report.runtimes == list(RUNTIMES)


def test_the_zoo_has_30_models_at_least() -> None:
    assert len(zoo_models.ALL) >= 30
    assert len(set(zoo_models.ALL)) == len(zoo_models.ALL)
    assert 10 <= sum(1 for m in zoo_models.ALL if zoo_models.SET[m] == "fast") <= 12
