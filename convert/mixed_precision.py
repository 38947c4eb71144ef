"""Mixed precision for the calibrated variants: keep the fewest operators in float until the bound holds.

When a full-integer variant misses its bound (``convert.acceptance``), the operators that cause the error
are found with TF's own per-layer check: the model quantized with NumericVerify operators
(``mlir_quantize(enable_numeric_verify=True)``), run by ``tf.lite.experimental.QuantizationDebugger`` on
calibration rows, gives each quantized operator's error against the same operator in float on the same
(dequantized) inputs, in units of its own quantization step (``rmse / scale``; 0.29 is rounding alone).
That error orders the candidates; :func:`rank` then orders them by the model's output error with each one
alone in float. Then (:func:`search`):

1. keep the 1, 2, 4, ... worst-ranked operators in float (``mlir_quantize(denylisted_nodes=...)``) until the
   variant passes on the calibration rows and on the held-out rows; when the time left would not let doubling
   reach the end of the ranking (a deep model whose error is spread over hundreds of operators, each trial
   tens of seconds), the prefix grows faster, so the budget ends on a passing set rather than short of one;
2. binary-search the shortest passing prefix of the ranking;
3. try dropping each operator of that prefix, the least suspect first, keeping a drop when it still passes.

When nothing passes, :func:`_exact_search` searches again (its own budget) on the fold calibrated before GPTQ
rounding, whose grid the first search's float operators still carry, from every operator in float down.

The ranking probes the ``MAX_PROBES`` most suspect operators (one quantization and a run on ``RANK_ROWS``
calibration rows each, within half of ``MAX_SECONDS``). The search is bounded: at most ``MAX_TRIALS`` quantizations
(each measured on both row sets) and ``MAX_SECONDS`` of wall time for the whole variant, ranking included;
when the budget runs out the best passing set found so far is kept, and when none passed the variant stays
as the converter made it and is rejected with its numbers. Only int8 is searched: TF's int16x8 quantizer
takes no list of operators to keep in float (and its MLIR int16 path writes models the kernels refuse);
dynamic range has no calibrated model, the converter makes it in one step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from convert import interrupt
from convert.acceptance import Verdict
from convert.layer_errors import layer_errors, operator_outputs

if TYPE_CHECKING:
    from convert.acceptance import Rows
    from convert.tflite import Variant

MAX_TRIALS = 32  # quantize + measure rounds per variant, after the ranking
MAX_PROBES = 64  # operators probed one at a time for the ranking
MAX_SECONDS = 300.0  # wall time per variant
RANK_ROWS = 300  # calibration rows each ranking probe is measured on


@dataclass
class SearchResult:
    """What the search kept: the flatbuffer, the operators in float, its verdict, and what it cost."""

    flatbuffer: bytes
    float_ops: list[str]
    verdict: Verdict
    trials: int
    seconds: float
    ranked: list[str] = field(default_factory=list)
    # the best verdict seen when nothing passed (the all-float end of the ranking, usually)
    best_failure: Verdict | None = None

    @property
    def passed(self) -> bool:
        return self.verdict.passed


def rank(candidates: Sequence[str], quantize: Callable[[list[str]], bytes], error: Callable[[bytes], float],
         max_probes: int = MAX_PROBES, max_seconds: float = MAX_SECONDS / 2) -> list[str]:
    """``candidates`` (most suspect first) ordered by the model's error with each one alone in float.

    The first ``max_probes`` candidates (within ``max_seconds``) are probed, one quantization each; the
    rest keep their order after them. A candidate the quantizer refuses to keep in float is dropped.
    """
    start = time.monotonic()
    scores: dict[str, float] = {}
    for node in candidates[:max_probes]:
        if time.monotonic() - start > max_seconds:
            break
        try:
            scores[node] = error(quantize([node]))
        except Exception:  # mlir_quantize raises RuntimeError with no text for a node it cannot split off
            interrupt.check()
            scores[node] = float("inf")
    probed = sorted((n for n in scores if np.isfinite(scores[n])), key=lambda n: scores[n])
    return probed + [n for n in candidates if n not in scores]


def search(ranked: Sequence[str], quantize: Callable[[list[str]], bytes], accept: Callable[[bytes], Verdict],
           plain: bytes, plain_verdict: Verdict, max_trials: int = MAX_TRIALS,
           max_seconds: float = MAX_SECONDS, first: int = 1, groups: bool = False) -> SearchResult:
    """The fewest operators of ``ranked`` (worst first) to keep in float so that ``accept`` passes.

    ``quantize(nodes)`` makes the variant with ``nodes`` in float; ``plain`` is the all-integer variant and
    ``plain_verdict`` its (failing) verdict. The prefixes tried grow from ``first`` operators (``len(ranked)``:
    every operator in float first, then the shortest passing prefix by halving). ``groups``: the operators of
    that prefix are given back to int8 in groups, least suspect first (:func:`_drop_groups`), instead of one at
    a time. Bounded by ``max_trials`` calls of ``quantize`` + ``accept`` and ``max_seconds``; returns the plain
    variant (with the best failing verdict seen) when nothing passed. Never raises but what the callables raise.
    """
    start = time.monotonic()
    trials = 0
    tried: dict[tuple[str, ...], tuple[bytes, Verdict]] = {}
    best_failure = plain_verdict
    slowest = 0.0  # seconds of the slowest trial so far

    def budget() -> bool:
        return trials < max_trials and time.monotonic() - start < max_seconds

    def trial(nodes: list[str]) -> Verdict:
        nonlocal trials, best_failure, slowest
        key = tuple(nodes)
        if key not in tried:
            trials += 1
            began = time.monotonic()
            flatbuffer = quantize(list(nodes))
            tried[key] = (flatbuffer, accept(flatbuffer))
            slowest = max(slowest, time.monotonic() - began)
        verdict = tried[key][1]
        if not verdict.passed and verdict.error < best_failure.error:
            best_failure = verdict
        return verdict

    ranked = list(ranked)
    lo, hi, k = 0, None, max(1, first)
    while ranked and budget():  # 1, 2, 4, ... worst operators in float
        k = min(k, len(ranked))
        if trial(ranked[:k]).passed:
            hi = k
            break
        lo = k
        if k == len(ranked):
            break
        k = _grow(k, len(ranked), slowest, max_seconds - (time.monotonic() - start))
    if hi is None:
        return SearchResult(plain, [], plain_verdict, trials, time.monotonic() - start, ranked, best_failure)
    while hi - lo > 1 and budget():  # the shortest passing prefix
        mid = (lo + hi) // 2
        if trial(ranked[:mid]).passed:
            hi = mid
        else:
            lo = mid
    chosen = ranked[:hi]
    if groups:
        chosen = _drop_groups(chosen, lambda nodes: trial(nodes).passed, budget)
    for node in [] if groups else list(reversed(chosen)):  # drop what is not needed, the least suspect first
        if len(chosen) == 1 or not budget():
            break
        fewer = [n for n in chosen if n != node]
        if trial(fewer).passed:
            chosen = fewer
    flatbuffer, verdict = tried[tuple(chosen)]
    return SearchResult(flatbuffer, chosen, verdict, trials, time.monotonic() - start, ranked, None)


def _drop_groups(chosen: list[str], passes: Callable[[list[str]], bool], budget: Callable[[], bool]) -> list[str]:
    """``chosen`` (a passing set, most suspect first) with groups of its operators given back to int8 while it
    still passes: the least suspect half first, then each failing group split in two (so a set of hundreds of
    operators shrinks in tens of trials, not one trial per operator), while ``budget()`` holds."""
    kept = list(chosen)
    pending = [list(reversed(kept))[: max(1, len(kept) // 2)]] if len(kept) > 1 else []
    pending += [list(reversed(kept))[max(1, len(kept) // 2):]] if len(kept) > 2 else []
    while pending and budget() and len(kept) > 1:
        group = [n for n in pending.pop(0) if n in kept]
        if len(group) == len(kept) and len(group) > 1:  # never all of them: split instead
            pending[:0] = [group[: len(group) // 2], group[len(group) // 2:]]
            continue
        if not group or len(group) == len(kept):
            continue
        fewer = [n for n in kept if n not in group]
        if passes(fewer):
            kept = fewer
        elif len(group) > 1:
            pending[:0] = [group[: len(group) // 2], group[len(group) // 2:]]
    return kept


def _grow(k: int, n: int, slowest: float, seconds_left: float) -> int:
    """The next prefix length after ``k`` of ``n``: twice ``k``, or more when the trials that ``seconds_left``
    affords at ``slowest`` seconds each (half of them, the rest left for the shortest prefix) could not reach
    ``n`` by doubling."""
    affordable = int(seconds_left / slowest) if slowest > 0 else n
    steps = max(1, affordable // 2)
    if k * 2 ** steps >= n:
        return 2 * k
    return min(n, max(2 * k, math.ceil(k * (n / k) ** (1 / steps))))


def integer_only(flatbuffer: bytes) -> bool:
    """True when every operator but the QUANTIZE / DEQUANTIZE at the float edges computes on integers."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    edges = {schema.BuiltinOperator.QUANTIZE, schema.BuiltinOperator.DEQUANTIZE}
    floats = {schema.TensorType.FLOAT32, schema.TensorType.FLOAT16}
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(int(code.builtinCode), int(code.deprecatedBuiltinCode)) in edges:
                continue
            tensors = [int(i) for i in list(op.inputs) + list(op.outputs) if int(i) >= 0]
            if any(graph.tensors[i].type in floats for i in tensors):
                return False
    return True


def describe(result: SearchResult, plain_bytes: int) -> str:
    """The note's clause for a search that passed, e.g. ``2 of 21 operators kept in float (+1,204 bytes)``."""
    extra = len(result.flatbuffer) - plain_bytes
    return (f"{len(result.float_ops)} of {len(result.ranked)} operators kept in float by the mixed-precision search "
            f"({extra:+,} bytes vs all-integer; {result.verdict.summary()})")


@dataclass
class Outcome:
    """The convert-time verdict of one quantized artifact, as the manifest records it."""

    status: str  # "accepted" | "rejected"
    verdict: Verdict
    note: str  # the clause for the artifact's note (numbers included)
    flatbuffer: bytes | None = None  # the mixed-precision artifact that replaces the converter's, if any
    float_ops: list[str] | None = None  # calibrated variants only
    integer_only: bool | None = None
    float_ops_bytes: int | None = None
    rejection: str | None = None

    def fields(self) -> dict[str, object]:
        """The artifact's optional manifest properties."""
        out: dict[str, object] = {"status": self.status, "measured": self.verdict.measured()}
        if self.float_ops is not None:
            out.update(float_ops=list(self.float_ops), float_ops_bytes=int(self.float_ops_bytes or 0))
        if self.integer_only is not None:
            out["integer_only"] = bool(self.integer_only)
        if self.rejection:
            out["rejection"] = self.rejection
        return out


def settle(variant: "Variant", flatbuffer: bytes, calibrated: bytes | None, transforms: Sequence[Mapping[str, object]],
           calibration: "Rows", held_out: "Rows", manifest_like: Mapping[str, object],
           dtypes: Mapping[str, str], exact_weights: Callable[[], bytes] | None = None) -> Outcome:
    """Judge a converted quantized variant; for int8 that misses its bound, run the mixed-precision search.

    ``exact_weights`` gives the calibrated model of the fold before GPTQ rounding (None when nothing was
    rounded); it is called only when the first search fails (:func:`_exact_search`). Never raises for a model
    the search cannot help (KeyboardInterrupt aside): the outcome is then ``rejected`` with its numbers.
    """
    from convert.acceptance import judge, measure
    from convert.tflite import Variant
    from convert.tflite_int8 import quantize_calibrated
    from edge.tolerance import for_variant
    from edge.transform import apply

    def accept(candidate: bytes) -> Verdict:
        return judge(candidate, transforms, calibration, held_out, manifest_like, variant.value, dtypes)

    verdict = accept(flatbuffer)
    calibrated_variant = variant.calibrated
    integer = integer_only(flatbuffer)
    if verdict.passed:
        return Outcome("accepted", verdict, f"accepted: {verdict.summary()}", None,
                       [] if calibrated_variant else None, integer, 0 if calibrated_variant else None)
    reason = verdict.rejection()
    if variant is not Variant.INT8 or calibrated is None:
        why = ("the mixed-precision search covers int8 only: TF's int16x8 quantizer takes no list of operators to "
               "keep in float" if variant is Variant.INT16X8 else
               "the mixed-precision search covers int8 only" if variant is Variant.DYNAMIC else
               "no calibrated model to search")
        return Outcome("rejected", verdict, f"rejected: {reason} ({why})", None,
                       [] if calibrated_variant else None, integer, 0 if calibrated_variant else None, f"{reason} ({why})")

    started = time.monotonic()

    def quantize(nodes: list[str]) -> bytes:
        return quantize_calibrated(calibrated, nodes)

    fed = apply(list(transforms), calibration.inputs)
    try:
        scores = layer_errors(quantize_calibrated(calibrated, numeric_verify=True), fed, dtypes)
    except Exception:  # the debugger or the verify quantization fails on this model: probe in graph order
        interrupt.check()
        scores = {}
    candidates = sorted(scores, key=lambda n: -scores[n]) or operator_outputs(calibrated)
    probe_rows = calibration.spread(RANK_ROWS)
    tolerance = for_variant(variant.value)

    def error(candidate: bytes) -> float:
        return float(measure(candidate, transforms, probe_rows, manifest_like, tolerance, dtypes)["range_fraction"])

    def safe_quantize(nodes: list[str]) -> bytes:
        try:
            return quantize(nodes)
        except Exception:
            interrupt.check()
            return flatbuffer  # a node the quantizer cannot keep in float: this trial is the plain model

    ranked = rank(candidates, quantize, error, MAX_PROBES, MAX_SECONDS / 2)
    left = max(0.0, MAX_SECONDS - (time.monotonic() - started))
    result = search(ranked, safe_quantize, accept, flatbuffer, verdict, MAX_TRIALS, left)
    if result.passed:
        extra = len(result.flatbuffer) - len(flatbuffer)
        return Outcome("accepted", result.verdict, f"accepted after {describe(result, len(flatbuffer))}",
                       result.flatbuffer, result.float_ops, integer_only(result.flatbuffer), extra)
    best = result.best_failure or verdict
    tail = (f"with up to {len(ranked)} operators in float the mixed-precision search measured at best "
            f"{best.error:.3%} ({result.trials} trials, {result.seconds:.0f} s)")
    base = _exact(exact_weights) or calibrated
    second = _exact_search(base, ranked, flatbuffer, verdict, accept)
    if second.passed:
        extra = len(second.flatbuffer) - len(flatbuffer)
        weights = " with the weights before GPTQ rounding" if base is not calibrated else ""
        return Outcome("accepted", second.verdict,
                       f"accepted after {describe(second, len(flatbuffer))}, searched from every operator in float"
                       f"{weights} ({second.trials} trials, {second.seconds:.0f} s) when the first search measured at "
                       f"best {best.error:.3%}", second.flatbuffer, second.float_ops, integer_only(second.flatbuffer), extra)
    floor = second.best_failure or verdict
    weights = " with the weights before GPTQ rounding" if base is not calibrated else ""
    tail += (f"; searched from all {len(second.ranked)} operators in float{weights}: at best {floor.error:.3%} "
             f"({second.trials} trials, {second.seconds:.0f} s)")
    return Outcome("rejected", verdict, f"rejected: {reason}; {tail}", None, [], integer, 0, f"{reason}; {tail}")


def _exact(exact_weights: Callable[[], bytes] | None) -> bytes | None:
    """``exact_weights()``, or None when there is none or it fails (its export or calibration)."""
    try:
        return exact_weights() if exact_weights is not None else None
    except Exception:
        interrupt.check()
        return None


def _exact_search(base: bytes, ranked: Sequence[str], plain: bytes, plain_verdict: Verdict,
                  accept: Callable[[bytes], Verdict]) -> SearchResult:
    """The second search, when the first found no passing set: on ``base`` (the calibrated model whose float
    operators keep their exact weights, when GPTQ rounding had put the int8 grid into the first search's), from
    every operator in float (``ranked``, then any operator of ``base`` it lacks) down: the shortest passing prefix
    of the ranking, then groups of it given back to int8. Its own budget, scaled by the model: ``MAX_TRIALS``
    for every ``MAX_PROBES`` operators (at least ``MAX_TRIALS``), and ``MAX_SECONDS``.

    A model whose error is spread over most of its operators then passes with many of them in float, recorded.
    Never raises (KeyboardInterrupt aside): a quantization that fails counts as the plain model.
    """
    from convert.tflite_int8 import quantize_calibrated

    every = list(dict.fromkeys(list(ranked) + operator_outputs(base)))

    def quantize(nodes: list[str]) -> bytes:
        try:
            return quantize_calibrated(base, nodes)
        except Exception:
            interrupt.check()
            return plain

    trials = MAX_TRIALS * max(1, math.ceil(len(every) / MAX_PROBES))  # a budget that grows with the model
    return search(every, quantize, accept, plain, plain_verdict, trials, MAX_SECONDS, first=len(every), groups=True)
