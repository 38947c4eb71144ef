"""The int8 fix: fold a per-feature input scaling into the model's first layer.

A tabular input holds features whose ranges differ ~100x; full-integer quantization gives that tensor
one scale, so the small-range features are lost. For the quantized variants the kit builds a model that
takes scaled inputs ``z = (x - mean) / std`` and folds the inverse affine into the first layer's
weights, so no quantized tensor ever holds raw, mixed-range features. The runner applies the
scaling (``edge.transform``, kind ``standardize``) before inference.

``mean`` and ``std`` of the transform are the centre and the half-width of each feature's range on
DATA, so every feature spans [-1, 1] and gets all 256 levels of the int8 input (with z-scores the
feature of widest z-range sets the tensor's scale and the others use part of the grid).

Where the input goes through a ``Normalization`` layer into one ``Dense`` layer, the normalisation
is folded into that ``Dense`` too and the layer is dropped from the folded model: its subtract and
divide would otherwise be two more int8 roundings.

This is one stage of convert; the next, ``convert.rounding``, GPTQ-rounds the folded model's kernels
(the dynamic-range variant takes the fold before rounding).

A SavedModel source has no Keras layers: :func:`fold_saved_model` finds the first Dense (MatMul + bias)
in its frozen ``serving_default`` graph, folds into its variables and saves the SavedModel again; where it
cannot, the reason says what reads the input instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert import interrupt
from convert.keras_graph import graph_nodes, sole_reader


@dataclass
class Fold:
    """A folded copy of a Keras model and the input transforms the runner must apply to feed it.

    ``folded`` is False when no input scaling could be folded: ``model`` is then a plain copy (which the
    rounding stage may still round) and ``note`` says why, when there is a rank-2 float input."""

    model: Any
    transforms: list[dict[str, Any]]
    note: str
    folded: bool = True


def range_scaling(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column centre and half-width (float64) of a 2-D array's range; a constant column gets 1."""
    values = np.asarray(values, dtype=np.float64)
    lo, hi = values.min(axis=0), values.max(axis=0)
    centre = (lo + hi) / 2
    half = (hi - lo) / 2
    half = np.where(half > 1e-12 * np.maximum(np.abs(centre), 1.0), half, 1.0)
    return centre, half


def _foldable_dense(layer: Any) -> bool:
    import keras

    return (isinstance(layer, keras.layers.Dense) and layer.use_bias
            and getattr(layer, "quantization_mode", None) is None
            and getattr(layer, "lora_enabled", False) is False)


def _normalization_affine(layer: Any, width: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, divisor) per feature of a feature-wise Normalization of a rank-2 input, else None."""
    import keras

    if not isinstance(layer, keras.layers.Normalization) or layer.invert:
        return None
    if tuple(layer.axis) not in ((-1,), (1,)) or layer.mean is None:
        return None
    mean = np.asarray(layer.mean, dtype=np.float64).reshape(-1)
    variance = np.asarray(layer.variance, dtype=np.float64).reshape(-1)
    if mean.shape != (width,) or variance.shape != (width,):
        return None
    divisor = np.maximum(np.sqrt(np.maximum(variance, 0.0)), float(keras.backend.epsilon()))
    return mean, divisor


def fold_inputs(model: Any, data: dict[str, np.ndarray]) -> Fold | None:
    """The folded copy of ``model`` the quantized variants are converted from, and the input transforms it needs.

    Every rank-2 float input read by one Normalization or Dense layer is scaled and folded. Returns None
    when the model has no graph or Keras cannot copy it (subclassed, custom layers): the quantized
    variants then take the model as it is. Raises only KeyboardInterrupt (a Ctrl+C).
    """
    import keras

    nodes = graph_nodes(model) or []
    if not nodes:
        return None
    plans = []  # (input name, centre, half, dense name or None, normalization name or None, norm affine)
    for tensor in model.inputs:
        name = tensor.name.split(":")[0]
        if len(tensor.shape) != 2 or "float" not in str(tensor.dtype) or name not in data or not tensor.shape[1]:
            continue
        width = int(tensor.shape[1])
        node = sole_reader(nodes, tensor)
        if node is None:
            continue
        layer = node.operation
        centre, half = range_scaling(np.asarray(data[name], dtype=np.float64).reshape(-1, width))
        if _foldable_dense(layer):
            plans.append((name, centre, half, layer.name, None, None))
            continue
        affine = _normalization_affine(layer, width)
        if affine is None:
            continue
        after = sole_reader(nodes, node.output_tensors[0]) if len(node.output_tensors) == 1 else None
        if after is not None and _foldable_dense(after.operation):
            plans.append((name, centre, half, after.operation.name, layer.name, affine))
        else:
            plans.append((name, centre, half, None, layer.name, affine))
    dropped = {p[4] for p in plans if p[3] is not None and p[4] is not None}
    renormalized = {p[4]: p for p in plans if p[3] is None}

    def clone(layer: Any) -> Any:
        if layer.name in dropped:
            return keras.layers.Identity(name=layer.name)
        if layer.name in renormalized:
            # (x - m) / d with x = z*half + centre  ==  (z - (m - centre)/half) / (d/half)
            _, centre, half, _, _, (m, d) = renormalized[layer.name]
            return keras.layers.Normalization(axis=-1, name=layer.name,
                                              mean=((m - centre) / half).tolist(),
                                              variance=((d / half) ** 2).tolist())
        return layer.__class__.from_config(layer.get_config())

    try:
        folded = keras.models.clone_model(model, clone_function=clone)
    except Exception:  # a model Keras cannot clone (subclassed, custom layers): quantize it as it is
        interrupt.check()  # unless that was a Ctrl+C Keras turned into an error
        return None
    for layer in model.layers:
        if layer.name not in dropped and layer.name not in renormalized and layer.weights:
            folded.get_layer(layer.name).set_weights(layer.get_weights())
    transforms = []
    targets = []
    for input_name, centre, half, dense_name, norm_name, affine in plans:
        if dense_name is not None:
            # the Dense reads a*z + c per feature (a = half, c = centre; through the Normalization:
            # a = half/d, c = (centre - m)/d), so W, b  ->  diag(a) W, b + c W
            a, c = (half, centre) if affine is None else (half / affine[1], (centre - affine[0]) / affine[1])
            layer = folded.get_layer(dense_name)
            w = np.asarray(layer.kernel, dtype=np.float64)
            b = np.asarray(layer.bias, dtype=np.float64)
            layer.kernel.assign((w * a[:, None]).astype(np.float32))
            layer.bias.assign((b + c @ w).astype(np.float32))
            targets.append(dense_name if norm_name is None else f"{norm_name} + {dense_name}")
        else:
            targets.append(norm_name)
        transforms.append({
            "kind": "standardize", "input": input_name,
            "mean": [float(v) for v in centre], "std": [float(v) for v in half],
        })
    notes = [f"per-feature input scaling (folded into {', '.join(targets)})"] if targets else []
    if not targets and any(len(t.shape) == 2 and "float" in str(t.dtype) for t in model.inputs):
        notes.append("inputs not standardised (first layer is not Normalization/Dense)")
    return Fold(model=folded, transforms=transforms, note="; ".join(notes), folded=bool(targets))


@dataclass
class FoldedKernel:
    """One Dense of a SavedModel the fold scaled: its input, kernel variable, the scaling, its name."""

    input: str
    kernel: Any
    centre: np.ndarray
    half: np.ndarray
    target: str


@dataclass
class SavedModelFold:
    """The fold of a SavedModel source: the SavedModel saved again and the input transforms it needs.

    ``module`` and ``signature`` are the loaded objects whose variables ``kernels`` are, so that the
    rounding stage can round them and save the SavedModel once more."""

    saved_model: Path
    transforms: list[dict[str, Any]]
    note: str
    kernels: list[FoldedKernel] = field(default_factory=list)
    module: Any = None
    signature: Any = None


_PASS_THROUGH = ("Identity", "IdentityN", "StopGradient", "Snapshot")
_BIAS_ADDS = ("BiasAdd", "AddV2", "Add")


def _data_inputs(node: Any) -> list[str]:
    return [i.split(":")[0] for i in node.input if not i.startswith("^")]


def _dense_after(graph_def: Any, input_name: str) -> tuple[str, str, str] | str:
    """(MatMul node, kernel constant, bias constant) of the Dense that alone reads ``input_name`` in a frozen
    graph, following pass-through ops; else the reason there is none."""
    nodes = {n.name: n for n in graph_def.node}
    readers: dict[str, list[Any]] = {}
    for node in graph_def.node:
        for source in _data_inputs(node):
            readers.setdefault(source, []).append(node)

    def down(name: str) -> list[Any]:
        found = readers.get(name, [])
        while len(found) == 1 and found[0].op in _PASS_THROUGH:
            found = readers.get(found[0].name, [])
        return found

    def const_above(name: str) -> str | None:
        node = nodes.get(name)
        while node is not None and node.op in _PASS_THROUGH and _data_inputs(node):
            node = nodes.get(_data_inputs(node)[0])
        return node.name if node is not None and node.op == "Const" else None

    first = down(input_name)
    if len(first) != 1:
        return f"input {input_name!r} is read by {len(first)} operations, not by one Dense"
    matmul = first[0]
    if matmul.op != "MatMul" or matmul.attr["transpose_a"].b or matmul.attr["transpose_b"].b:
        return f"input {input_name!r} is first read by a {matmul.op} ({matmul.name}), not by a Dense (MatMul + bias)"
    kernel = const_above(_data_inputs(matmul)[1])
    if kernel is None:
        return f"the MatMul reading input {input_name!r} ({matmul.name}) has no constant kernel"
    after = down(matmul.name)
    if len(after) != 1 or after[0].op not in _BIAS_ADDS:
        return f"the MatMul reading input {input_name!r} ({matmul.name}) is not followed by one bias add"
    others = [i for i in _data_inputs(after[0]) if const_above(i) is not None]
    bias = const_above(others[0]) if len(others) == 1 else None
    if bias is None:
        return f"the MatMul reading input {input_name!r} ({matmul.name}) is not followed by a constant bias"
    for constant in (kernel, bias):
        chain = [constant]
        users = 0
        while chain:
            for reader in readers.get(chain.pop(), []):
                if reader.op in _PASS_THROUGH:
                    chain.append(reader.name)
                else:
                    users += 1
        if users != 1:
            return f"the Dense reading input {input_name!r} shares its weights with other operations"
    return matmul.name, kernel, bias


def fold_saved_model(source: Path, data: dict[str, np.ndarray], work: Path) -> tuple[SavedModelFold | None, str]:
    """:func:`_fold_saved_model`, and ``(None, reason)`` when TensorFlow fails on the way (loading, freezing or
    saving the SavedModel again); never raises but for a Ctrl+C."""
    try:
        return _fold_saved_model(source, data, work)
    except Exception as exc:  # TF raises ValueError / TypeError / errors.OpError with long texts
        interrupt.check()
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        return None, f"inputs not standardised (TensorFlow could not fold the SavedModel: {first})"


def _fold_saved_model(source: Path, data: dict[str, np.ndarray], work: Path) -> tuple[SavedModelFold | None, str]:
    """Fold the per-feature input scaling into the first Dense (MatMul + bias) of a SavedModel.

    The ``serving_default`` signature's graph is frozen (variables inlined) to find, for every rank-2 float
    input, the one MatMul reading it (through Identity ops) and its bias add; their variables are found
    through the signature's captures, folded as :func:`fold_inputs` folds a Keras Dense, and the SavedModel
    is saved again under ``work``. Returns ``(fold, "")``, or ``(None, reason)`` with the true reason nothing was folded.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    loaded = tf.saved_model.load(str(source))
    signature = loaded.signatures["serving_default"]
    frozen = convert_variables_to_constants_v2(signature)
    graph_def = frozen.graph.as_graph_def()
    captured = {internal.name.split(":")[0]: external for external, internal in signature.graph.captures}
    variables = {id(v.handle): v for v in loaded.variables}
    _, specs = signature.structured_input_signature
    placeholders = {t.name.split(":")[0] for t in frozen.inputs}
    plans, reasons = [], []
    for name, spec in sorted(specs.items()):
        if len(spec.shape) != 2 or not spec.dtype.is_floating or name not in data or not spec.shape[1]:
            continue
        if name not in placeholders:
            reasons.append(f"input {name!r} has no placeholder in the frozen graph")
            continue
        found = _dense_after(graph_def, name)
        if isinstance(found, str):
            reasons.append(found)
            continue
        matmul, kernel_const, bias_const = found
        kernel, bias = (variables.get(id(captured.get(c))) for c in (kernel_const, bias_const))
        if kernel is None or bias is None:
            reasons.append(f"the Dense reading input {name!r} ({matmul}) has weights that are not variables")
            continue
        width = int(spec.shape[1])
        if tuple(kernel.shape) != (width, kernel.shape[-1]) or tuple(bias.shape) != (kernel.shape[-1],):
            reasons.append(f"the Dense reading input {name!r} ({matmul}) has weights of unexpected shapes")
            continue
        centre, half = range_scaling(np.asarray(data[name], dtype=np.float64).reshape(-1, width))
        plans.append((name, matmul, kernel, bias, centre, half))
    if not plans:
        why = "; ".join(reasons) or "no rank-2 float input"
        return None, f"inputs not standardised ({why})"
    transforms, kernels = [], []
    for name, matmul, kernel, bias, centre, half in plans:
        w = np.asarray(kernel.numpy(), dtype=np.float64)
        b = np.asarray(bias.numpy(), dtype=np.float64)
        kernel.assign((w * half[:, None]).astype(np.float32))
        bias.assign((b + centre @ w).astype(np.float32))
        target = matmul.split("/")[-2] if "/" in matmul else matmul
        kernels.append(FoldedKernel(name, kernel, centre, half, target))
        transforms.append({"kind": "standardize", "input": name,
                           "mean": [float(v) for v in centre], "std": [float(v) for v in half]})
    note = f"per-feature input scaling (folded into the SavedModel's {', '.join(k.target for k in kernels)})"
    folded_dir = Path(work) / "saved_model_folded"
    tf.saved_model.save(loaded, str(folded_dir), signatures={"serving_default": signature})
    return SavedModelFold(folded_dir, transforms, note, kernels, loaded, signature), ""
