"""The float16 variant's search: keep the fewest constants in float32 until the precision loss holds its bound.

The float16 artifact's precision loss is its precision twin's error (``convert.twin``: the float32 graph with
exactly the constants the artifact stores in half precision rounded) against the reference, as a share of the
output range; the bound is the float16 tolerance's ``max_range_fraction`` (``edge.tolerance.FLOAT16``, never
changed here). When the converter's artifact loses more than that on the calibration rows or on the held-out
rows (``convert.acceptance``'s split), the model cannot be held in half precision as a whole; some of its
constants can. The twin of "these constants in float32, the rest in half" is the float32 flatbuffer with the
rest rounded, made by writing the rounded values over the float32 bytes in place (:class:`Twins`, no
conversion), so a trial costs one ``tf.lite`` load and a batched run.

1. Rank: each float16 constant alone rounded (every other one exact), the twin's loss on ``RANK_ROWS``
   calibration rows; the worst first (the constants whose rounding the rest of the network amplifies most).
2. Search (``convert.mixed_precision.search``, the int8 search's own prefix search): keep the 1, 2, 4, ... worst
   in float32 until the loss holds on both row sets, halve to the shortest passing prefix, then give the
   constants of that prefix back to half precision in groups while it still holds.

The artifact is then the converter's with those constants restored to float32 as biases are
(``convert.tflite_fp16.float32_constants``); the twin of that artifact rounds exactly what stays half, so the
converter error (artifact vs twin) keeps its meaning. With every constant in float32 the twin is the float32
model; if even that misses the bound, nothing is restored and the artifact is rejected as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from convert import interrupt
from convert.acceptance import Rows, Verdict, run_tflite

RANK_ROWS = 64  # calibration rows each ranking probe runs on
MAX_TRIALS = 40  # twin runs on both row sets, after the ranking
MAX_SECONDS = 300.0  # wall time of the whole search, ranking included


class Twins:
    """Precision twins of one float16 artifact for any set of its float16 constants kept exact.

    Raises (constructor):
        ValueError: the two models' graphs do not line up (``convert.tflite_fp16.half_constants``), or a
        constant's float32 buffer cannot be found in the float32 flatbuffer.
    """

    def __init__(self, fp16: bytes, fp32: bytes) -> None:
        from tensorflow.lite.python import schema_py_generated as schema
        from tensorflow.lite.tools import flatbuffer_utils

        from convert.tflite_fp16 import as_float16, half_constants

        m16 = flatbuffer_utils.convert_bytearray_to_object(bytearray(fp16))
        m32 = flatbuffer_utils.convert_bytearray_to_object(bytearray(fp32))
        pairs = half_constants(m16, m32)
        if pairs is None:
            raise ValueError("the float16 model's graph does not match the float32 model's operator by operator")
        self.fp32 = bytes(fp32)
        reader = schema.Model.GetRootAs(self.fp32, 0)
        codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        consumers = {}  # (graph, tensor) -> "OPERATOR output-name" of the first operator reading it
        for index, graph in enumerate(m32.subgraphs):
            for op in graph.operators:
                code = m32.operatorCodes[op.opcodeIndex]
                label = codes.get(max(int(code.builtinCode), int(code.deprecatedBuiltinCode)), "OPERATOR")
                out = graph.tensors[op.outputs[0]].name if len(op.outputs) else b""
                for t in op.inputs:
                    consumers.setdefault((index, int(t)), f"{label} {_text(out)}")
        self.names: list[str] = []  # each constant as the operator that reads it: "CONV_2D <its output>"
        self.patches: list[tuple[int, bytes]] = []  # (offset in fp32, the rounded float32 bytes)
        self.bytes: list[int] = []  # float32 bytes of each constant
        for pair in pairs:
            tensor = m32.subgraphs[pair.graph].tensors[pair.tensor32]
            buffer = reader.Buffers(int(tensor.buffer))
            start = _data_offset(buffer)
            rounded = as_float16(pair.value).astype("<f4").tobytes()
            if start is None or self.fp32[start:start + len(rounded)] != pair.value.astype("<f4").tobytes():
                raise ValueError(f"the float32 data of constant {tensor.name!r} is not where the flatbuffer says")
            self.patches.append((start, rounded))
            self.names.append(consumers.get((pair.graph, pair.tensor32), _text(tensor.name)))
            self.bytes.append(4 * int(pair.value.size))

    def __len__(self) -> int:
        return len(self.patches)

    def twin(self, exact: Sequence[int] = (), rounded: Sequence[int] | None = None) -> bytes:
        """The float32 flatbuffer with the constants ``rounded`` (default: all but ``exact``) rounded to float16."""
        keep = set(int(i) for i in exact)
        picks = range(len(self.patches)) if rounded is None else rounded
        data = bytearray(self.fp32)
        for i in picks:
            if i in keep:
                continue
            start, values = self.patches[i]
            data[start:start + len(values)] = values
        return bytes(data)


def _text(name: Any) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def _data_offset(buffer: Any) -> int | None:
    """Where a schema ``Buffer``'s data vector starts in the flatbuffer (None when it has none)."""
    if buffer is None:
        return None
    offset = buffer._tab.Offset(4)  # noqa: SLF001 - the generated reader's field table (Buffer.data is field 0)
    if offset == 0:
        return None
    return int(buffer._tab.Vector(offset))  # noqa: SLF001


def loss(flatbuffer: bytes, rows: Rows, manifest_like: Mapping[str, Any], dtypes: Mapping[str, str]) -> dict[str, Any]:
    """A twin's precision loss on ``rows``: ``{"rows", "range_fraction", "top1": None, "passed", "failures"}``, the
    shape ``convert.acceptance.measure`` gives; ``range_fraction`` is max|twin - ref| / range, the largest over the
    outputs (inf when tf.lite cannot run it), ``passed`` whether it is within the float16 range bound."""
    from edge.tolerance import compare_output

    bound = _bound()
    if rows.count == 0:
        return {"rows": 0, "range_fraction": 0.0, "top1": None, "passed": True, "failures": []}
    try:
        outputs = run_tflite(flatbuffer, rows.inputs, dtypes)
    except (RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return {"rows": rows.count, "range_fraction": float("inf"), "top1": None, "passed": False,
                "failures": [f"tf.lite cannot run the twin ({first})"]}
    worst, failures = 0.0, []
    for out in manifest_like["outputs"]:
        ref = np.asarray(rows.reference[out["key"]], dtype=np.float64)
        value = float(compare_output(ref, outputs[out["key"]], tuple(out["range"]), False)["range_fraction"])
        worst = max(worst, value)
        if not value <= bound:
            failures.append(f"{out['name']}: precision loss {value:.3%} of the output range > {bound * 100:g}%")
    return {"rows": rows.count, "range_fraction": worst, "top1": None, "passed": not failures, "failures": failures}


@dataclass
class Fp16Outcome:
    """What the float16 search did: the artifact to write (None: keep the converter's), and the manifest's fields."""

    flatbuffer: bytes | None
    fields: dict[str, Any]
    note: str
    kept: list[str] = field(default_factory=list)


def settle_fp16(fp16: bytes, fp32: bytes, calibration: Rows, held_out: Rows, manifest_like: Mapping[str, Any],
                dtypes: Mapping[str, str], max_seconds: float = MAX_SECONDS, max_trials: int = MAX_TRIALS,
                progress: Callable[[str], None] | None = None) -> Fp16Outcome:
    """Measure the float16 artifact's precision loss on both row sets; when it misses the bound, search the fewest
    float16 constants to keep in float32 (the module's docstring) and restore them.

    ``manifest_like`` needs ``outputs`` (``key``, ``name``, ``range``); ``progress`` hears one line when the search
    starts. The outcome's ``flatbuffer`` is None and its ``fields`` empty when the artifact already holds the bound
    (nothing changes, not even the manifest), when no twin can be made or run (the golden stage says why), and when
    no set of constants holds the bound or the search itself fails (the note says which). Never raises
    (KeyboardInterrupt aside): the converter's artifact then stays, and the golden stage judges it as before.
    """
    try:
        twins = Twins(fp16, fp32)
    except Exception:  # noqa: BLE001 - no twin: the golden stage says so
        interrupt.check()
        return Fp16Outcome(None, {}, "")
    if not len(twins):
        return Fp16Outcome(None, {}, "")
    calibration, held_out = calibration.spread(), held_out.spread()

    def judge(twin: bytes) -> Verdict:
        return Verdict(loss(twin, calibration, manifest_like, dtypes), loss(twin, held_out, manifest_like, dtypes))

    try:
        plain = judge(twins.twin())
    except Exception:  # noqa: BLE001 - a twin that cannot be judged here: the golden stage says why
        interrupt.check()
        return Fp16Outcome(None, {}, "")
    if plain.passed:
        return Fp16Outcome(None, {}, "")
    if progress is not None:
        progress("Searching the float16 constants to keep in float32")
    try:
        return _search(twins, fp16, fp32, calibration, held_out, manifest_like, dtypes, plain, judge, max_seconds,
                       max_trials)
    except Exception as exc:  # noqa: BLE001 - the converter's artifact stays, and the golden stage judges it
        interrupt.check()
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return Fp16Outcome(None, {}, f"the float16 search failed ({type(exc).__name__}: {first})")


def _search(twins: Twins, fp16: bytes, fp32: bytes, calibration: Rows, held_out: Rows, manifest_like: Mapping[str, Any],
            dtypes: Mapping[str, str], plain: Verdict, judge: Callable[[bytes], Verdict], max_seconds: float,
            max_trials: int) -> Fp16Outcome:
    """:func:`settle_fp16`'s search, once the plain artifact missed the bound (``plain``, its verdict)."""
    from convert.mixed_precision import search
    from convert.tflite_fp16 import float32_constants

    started = time.monotonic()
    every = judge(twins.twin(exact=range(len(twins))))
    if not every.passed:
        if not np.isfinite(every.error):
            failure = next(iter(every.calibration["failures"] + every.held_out["failures"]), "")
            return Fp16Outcome(None, {}, f"no float16 search: {failure}")
        note = (f"even with all {len(twins)} float16 constants in float32 (the float32 model) the loss is "
                f"{every.error:.3%} of the range, so no constant kept in float32 can hold the float16 bound")
        return Fp16Outcome(None, {}, note)
    ranked = rank(twins, calibration.spread(RANK_ROWS), manifest_like, dtypes, max_seconds / 2)
    names = [str(i) for i in ranked]

    def make(nodes: list[str]) -> bytes:  # the search keeps what this returns per trial: the set, not the twin
        return ",".join(nodes).encode()

    def accept(kept: bytes) -> Verdict:
        return judge(twins.twin(exact=[int(n) for n in kept.decode().split(",") if n]))

    left = max(0.0, max_seconds - (time.monotonic() - started))
    result = search(names, make, accept, b"", plain, max_trials, left, groups=True)
    if not result.passed:  # the budget ran out before a prefix passed: every constant in float32 does
        result.float_ops, result.verdict = names, every
    kept = sorted(int(n) for n in result.float_ops)
    artifact = float32_constants(fp16, fp32, kept)
    seconds = time.monotonic() - started
    extra = len(artifact) - len(fp16)
    kept_names = [twins.names[i] for i in kept]
    fields = {"measured": result.verdict.measured(), "float_ops": kept_names, "float_ops_bytes": extra,
              "float16_search": {"constants": len(twins), "kept_float32": len(kept),
                                 "before": plain.measured(), "float16_bytes": len(fp16), "float32_bytes": len(fp32),
                                 "bytes": len(artifact), "trials": result.trials + 2, "seconds": round(seconds, 1)}}
    note = (f"{len(kept)} of {len(twins)} float16 constants kept in float32 by the float16 search "
            f"({len(artifact):,} bytes: {extra:+,} vs plain float16, {len(artifact) - len(fp32):+,} vs float32); "
            f"precision loss {_losses(result.verdict)} (plain float16: {_losses(plain)}), within "
            f"{_bound() * 100:g}% of the range")
    return Fp16Outcome(artifact, fields, note, kept_names)


def rank(twins: Twins, rows: Rows, manifest_like: Mapping[str, Any], dtypes: Mapping[str, str],
         max_seconds: float = MAX_SECONDS / 2) -> list[int]:
    """The float16 constants ordered by the twin's loss on ``rows`` with each one alone rounded, the worst first;
    the constants the time did not reach keep their graph order after the probed ones."""
    start = time.monotonic()
    scores: dict[int, float] = {}
    for i in range(len(twins)):
        if time.monotonic() - start > max_seconds:
            break
        interrupt.check()
        scores[i] = float(loss(twins.twin(rounded=[i]), rows, manifest_like, dtypes)["range_fraction"])
    probed = sorted(scores, key=lambda i: -scores[i])
    return probed + [i for i in range(len(twins)) if i not in scores]


def _bound() -> float:
    from edge.tolerance import FLOAT16

    return float(FLOAT16["max_range_fraction"])


def _losses(verdict: Verdict) -> str:
    return (f"{verdict.calibration['range_fraction']:.3%} on {verdict.calibration['rows']} calibration rows, "
            f"{verdict.held_out['range_fraction']:.3%} on {verdict.held_out['rows']} held-out rows")
