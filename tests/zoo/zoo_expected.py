"""The one table of the zoo's expected non-pass outcomes, each with the kit's message prefix or a measured number.

Keys are ``(model, artifact, runtime)``; ``"*"`` matches any artifact or runtime (the most specific key
wins). Artifacts: fp32, fp16, dynamic, int8, int16x8 (``edge/model.<v>.tflite``), graph, layers (TFJS).
Kinds:

* ``convert-error``: ``deploykit convert`` failed for the whole model; ``text`` is its message prefix.
* ``skipped``: the artifact was not written; ``text`` is the manifest's reason prefix (naming the layer/op).
* ``rejected``: convert wrote it marked ``"status": "rejected"``; ``number`` is its measured error.
* ``cannot-run``: the runtime declares it cannot run the artifact; ``text`` is the message prefix.
* ``error``: the runtime failed to run it; ``text`` is the error prefix.
* ``miss``: accepted, ran, and missed its bound; ``number`` is the measured error (first number of the
  failure) - a kit defect recorded until it is fixed.

Any case not in the table must pass. Numbers are measured on this machine (2-core x86_64, TF 2.19, TFJS 4.22,
LiteRT and tflite-runtime 2.14) with ``make zoo``; a case asserts its number within a factor of 2.
"""

from __future__ import annotations

from typing import NamedTuple

VARIANTS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
ARTIFACTS = {**{v: f"edge/model.{v}.tflite" for v in VARIANTS},
             "graph": "web/model/graph/model.json", "layers": "web/model/layers/model.json"}
TFLITE_RT = ("litert", "tflite-runtime")
BROWSER_RT = ("chromium-cpu", "chromium-wasm", "chromium-webgl")


class Expect(NamedTuple):
    kind: str
    text: str = ""
    number: float | None = None


def miss(number: float) -> Expect:
    return Expect("miss", "", number)


def skipped(text: str) -> Expect:
    return Expect("skipped", text)


LAYERS_NOT_WRITTEN = "TFJS layers model not written: TFJS 4.22 cannot load "
INT16X8 = "the TFLite converter cannot make int16x8: "
WASM_GRAPH = "TFJS wasm cannot run web/model/graph/model.json: "

EXPECTED: dict[tuple[str, str, str], Expect] = {
    ("bn_dropout", "fp16", "*"): miss(1.12e-3),
    ("bn_dropout", "int8", "*"): miss(0.012),
    ("sequence_lstm", "int8", "*"): miss(0.032),
    ("sequence_lstm", "int16x8", "*"): skipped(INT16X8),
    ("sequence_lstm", "graph", "chromium-wasm"): Expect("error", WASM_GRAPH),
}


def expected_for(model: str, artifact: str, runtime: str) -> Expect | None:
    """The table's entry for a case (most specific key first), or None: the case must pass."""
    for key in ((model, artifact, runtime), (model, artifact, "*"), (model, "*", runtime), (model, "*", "*")):
        if key in EXPECTED:
            return EXPECTED[key]
    return None
