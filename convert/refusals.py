"""Signatures the kit cannot serve, refused right after the model is loaded, before anything is exported.

Each refusal is one line naming the input or output and what to do:

* a dtype outside the manifest's (``edge/manifest.schema.json``: float32, float16, int32, int64, int8, uint8,
  bool): complex and string tensors above all, which neither TFLite builtins nor TFJS graph models take or
  give, and which used to fail only when the manifest was written, after every export;
* no batch dimension: a scalar input or output, or a fixed batch (``keras.Input(batch_size=2)``). The
  runners, the page and the parity engine feed any number of rows; a fixed batch is refused rather than
  converted at that batch, because every caller would then have to pad or split its rows to exactly that
  many (re-saving with ``batch None`` is one argument);
* an input name TensorFlow cannot export (a space, a leading ``_`` or ``-``, a ``:``, a non-ASCII letter):
  a SavedModel signature's input is a graph placeholder named as the input, and TensorFlow renames such a
  placeholder and then refuses the signature. The kit does not rename it instead, because the name is the
  manifest's, DATA's column and every runtime's feed key at once (the TFLite signature keeps it as it is).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Sequence

from convert.errors import DeployKitError


def supported_dtypes() -> tuple[str, ...]:
    """The dtypes a manifest may record for an input or output (the schema's enum)."""
    from edge.manifest import schema

    return tuple(schema()["$defs"]["dtype"]["enum"])


def _dtype_advice(kind: str, name: str, dtype: str) -> str:
    where = f"{kind} {name!r} is {dtype}"
    if dtype.startswith("complex"):
        return (f"{where}, which TFLite and TFJS models cannot {'take' if kind == 'input' else 'give'}; "
                f"{'take' if kind == 'input' else 'return'} its real and imaginary parts as two float32 tensors "
                "(keras.ops.real / keras.ops.imag) and re-save")
    if dtype == "string":
        if kind == "input":
            return (f"{where}, and TFLite builtins and TFJS graph models take numbers only; move the text "
                    "preprocessing (TextVectorization, StringLookup) out of the model, feed it the token ids "
                    "(int32) and re-save")
        return f"{where}, and TFLite builtins and TFJS graph models return numbers only; return ids or scores and map them to text outside the model"
    if dtype == "float64":
        return f"{where}; the kit's runtimes compute in float32: build the model with float32 {kind}s and re-save"
    return f"{where}, which the kit does not support ({', '.join(supported_dtypes())}); re-save the model with one of those"


def _batch_advice(kind: str, name: str, shape: Sequence[int | None]) -> str | None:
    if not shape:
        if kind == "input":
            return (f"input {name!r} is a scalar (shape []), with no batch dimension to hold rows; give it one "
                    "(keras.Input(shape=(1,)) takes one value per row) and re-save")
        return (f"output {name!r} is a scalar (shape []), one value for the whole batch; return one value per row "
                "(shape [None, ...]) and re-save")
    if shape[0] is not None:
        inner = ", ".join("None" if d is None else str(d) for d in shape[1:])
        return (f"{kind} {name!r} has a fixed batch of {shape[0]} (shape {list(shape)}); the kit feeds any number "
                f"of rows: re-save the model with the batch left open (keras.Input(shape=({inner}{',' if len(shape) == 2 else ''})), "
                "no batch_size)")
    return None


# TensorFlow's rule for an op (and so a signature placeholder) name: tensorflow/python/framework/ops.py
VALID_INPUT_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$")


def _name_advice(name: str) -> str | None:
    if VALID_INPUT_NAME.match(name):
        return None
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    fixed = re.sub(r"[^A-Za-z0-9_.-]+", "_", ascii_name).strip("_-") or "x"
    fixed = fixed if VALID_INPUT_NAME.match(fixed) else f"x_{fixed}"
    return (f"input {name!r} has a name TensorFlow cannot export as a model input (letters, digits and . _ - > / \\ "
            f"only, starting with a letter, digit or .); rename the input (keras.Input(..., name={fixed!r})) and "
            "re-save, and rename its DATA column or .npz array too if it has the input's name")


def check_signature(source: str, inputs: Sequence[Any], outputs: Sequence[Any]) -> None:
    """Refuse a signature the kit cannot serve; ``inputs``/``outputs`` are ``convert.reference.TensorSpec``.

    Raises:
        DeployKitError: the first input, then output, with an unsupported dtype or without a batch dimension,
        then the first input whose name TensorFlow cannot export (``model NAME: <what and what to do>``).
    """
    allowed = set(supported_dtypes())
    for kind, specs in (("input", inputs), ("output", outputs)):
        for spec in specs:
            if spec.dtype not in allowed:
                raise DeployKitError(f"model {source}: {_dtype_advice(kind, spec.name, spec.dtype)}")
    for kind, specs in (("input", inputs), ("output", outputs)):
        for spec in specs:
            advice = _batch_advice(kind, spec.name, spec.shape)
            if advice:
                raise DeployKitError(f"model {source}: {advice}")
    for spec in inputs:
        advice = _name_advice(spec.name)
        if advice:
            raise DeployKitError(f"model {source}: {advice}")
