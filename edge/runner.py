"""``Predictor``: one TFLite artifact of a bundle, checked before it runs, safe to call from many threads.

Order of the checks when a Predictor is built (any failure raises before a single prediction):

1. the manifest is valid (``edge.manifest.load``);
2. the artifact's sha256 and size match the manifest (tampered or truncated files are named);
3. the artifact's runtime needs are met by the picked interpreter (``edge.interpreter``);
4. the model's signature (``serving_default``) has the manifest's inputs and outputs, dtypes and shapes.

Each thread gets its own interpreter (the TFLite interpreter is not thread-safe).

Interpreter threads: ``num_threads``; ``None`` is "auto" (what ``serve`` does without ``--threads``), the
rule of ``edge.threads``; ``threads_reason`` says what was measured.
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edge import manifest as mf
from edge import threads, transform
from edge.bundle import Bundle
from edge.errors import BundleError, EdgeError
from edge.inputs import check_vocabulary
from edge.interpreter import Runtime, check_runtime, make_interpreter, pick
from edge.tflite_file import tflite_ops

SIGNATURE = "serving_default"


# Operators whose output shapes are fixed once the input shapes are: a graph made only of these never
# reallocates a tensor while it runs, so views of its input and output buffers stay valid across invokes.
STATIC_SHAPE_OPS = frozenset({
    "FULLY_CONNECTED", "ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "RELU", "RELU6", "RELU_N1_TO_1",
    "LEAKY_RELU", "PRELU", "LOGISTIC", "TANH", "ELU", "HARD_SWISH", "GELU", "SOFTMAX", "LOG_SOFTMAX", "QUANTIZE",
    "DEQUANTIZE", "CONCATENATION", "EXP", "LOG", "SQUARE", "SQRT", "RSQRT", "ABS", "NEG", "SQUARED_DIFFERENCE",
})


class _RowView:
    """Float32 views of a (1, k) input and a one-value output, held across invokes: the one-row hot path.

    The public ``invoke()`` refuses to run while numpy views of the interpreter's tensors exist, because
    it cannot know whether a tensor will move. Here it is known: the graph has only ``STATIC_SHAPE_OPS``
    (nothing is reallocated during an invoke) and ``_Session`` drops the view before anything that can
    reallocate (a resize, ``allocate_tensors``, a batch through the public API). So this calls the
    wrapper's own ``Invoke``, and writes and reads the tensors in place instead of copying them.
    """

    def __init__(self, interpreter: Any, in_index: int, out_index: int, k: int) -> None:
        self.k = k
        self.input = memoryview(interpreter.tensor(in_index)()).cast("B").cast("f")
        self.output = memoryview(interpreter.tensor(out_index)()).cast("B").cast("f")
        self.pack = struct.Struct(f"={k}f").pack_into  # the C float cast: astype(float32)'s rounding
        self.invoke = interpreter._interpreter.Invoke
        self.fits = len(self.input) == k and len(self.output) == 1

    @staticmethod
    def possible(interpreter: Any, in_index: int, out_index: int, ops: frozenset[str]) -> bool:
        """Whether the wrapper has the parts a view relies on, the graph is static and both tensors are
        float32 (asked once per interpreter: the answer does not change)."""
        raw = getattr(interpreter, "_interpreter", None)
        if raw is None or not callable(getattr(raw, "Invoke", None)) or not ops <= STATIC_SHAPE_OPS:
            return False
        details = {d["index"]: d for d in interpreter.get_tensor_details()}
        return all(np.dtype(details[i]["dtype"]) == np.float32 for i in (in_index, out_index))


def _dims(shape: Sequence[Any]) -> list[int | None]:
    return [None if (d is None or int(d) < 0) else int(d) for d in shape]


class _Session:
    """One interpreter with its signature's tensor indices; used by one thread at a time."""

    def __init__(self, interpreter: Any, signature: str) -> None:
        self.interpreter = interpreter
        runner = interpreter.get_signature_runner(signature)
        self.inputs = runner.get_input_details()
        self.outputs = runner.get_output_details()
        # Fast path for signatures on the main subgraph: set_tensor/invoke/get_tensor by the signature's
        # tensor indices. A live SignatureRunner holds a reference that blocks resize_tensor_input, so it
        # is only kept for the other case.
        self.fast = getattr(runner, "_subgraph_index", 0) == 0
        self.runner = None if self.fast else runner
        del runner
        self.in_index = {name: int(d["index"]) for name, d in self.inputs.items()}
        self.out_index = {name: int(d["index"]) for name, d in self.outputs.items()}
        self.shapes = {name: tuple(int(v) for v in d["shape"]) for name, d in self.inputs.items()}
        self.row_buffers: dict[str, np.ndarray] = {}
        self.view: _RowView | None = None  # built by row_view, dropped before anything that may reallocate
        self.view_possible: bool | None = None  # asked once: the wrapper, the operators and dtypes do not change

    def row_view(self, name: str, k: int, out_index: int, ops: frozenset[str]) -> _RowView | None:
        """The ``_RowView`` of a (1, k) float32 input and a one-value output (resizing the input to (1, k)
        first); None when this model or wrapper cannot have one (use ``run_row``)."""
        if self.view is None and self.fast and self.view_possible is not False:
            shape = (1, k)
            if self.shapes[name] != shape:
                self.interpreter.resize_tensor_input(self.in_index[name], shape, strict=False)
                self.interpreter.allocate_tensors()
                self.shapes[name] = shape
            if self.view_possible is None:
                self.view_possible = _RowView.possible(self.interpreter, self.in_index[name], out_index, ops)
            view = _RowView(self.interpreter, self.in_index[name], out_index, k) if self.view_possible else None
            if view is not None and view.fits:
                self.view = view
            else:  # the output is not one value
                self.view_possible = False
        return self.view

    def run_row(self, name: str, row: Sequence[float], dtype: np.dtype, out_index: int) -> np.ndarray:
        """One row into a single (1, k) input; the first row of one output. The tabular hot path."""
        self.view = None
        interp = self.interpreter
        buf = self.row_buffers.get(name)
        if buf is None or self.shapes[name] != buf.shape:
            shape = (1, len(row))
            if self.shapes[name] != shape:
                interp.resize_tensor_input(self.in_index[name], shape, strict=False)
                interp.allocate_tensors()
                self.shapes[name] = shape
            buf = self.row_buffers[name] = np.zeros(shape, dtype=dtype)
        buf[0] = row  # float64 -> the model dtype, the same rounding as astype
        interp.set_tensor(self.in_index[name], buf)
        interp.invoke()
        return interp.get_tensor(out_index)[0]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.fast:
            return {k: np.array(v) for k, v in self.runner(**feeds).items()}
        self.view = None
        interp = self.interpreter
        resized = False
        for name, arr in feeds.items():
            if arr.shape != self.shapes[name]:
                interp.resize_tensor_input(self.in_index[name], arr.shape, strict=False)
                self.shapes[name] = arr.shape
                resized = True
        if resized:
            interp.allocate_tensors()
        for name, arr in feeds.items():
            interp.set_tensor(self.in_index[name], arr)
        interp.invoke()
        return {name: interp.get_tensor(index) for name, index in self.out_index.items()}


class Predictor:
    """Predictions from one TFLite artifact of a bundle.

    Args:
        bundle_dir: the bundle folder, or a folder holding ``edge/`` + ``manifest.json`` + ``golden.json``.
        variant: ``float32``, ``float16``, ``dynamic``, ``int8``, ``int16x8`` (``fp32``/``fp16`` accepted);
            default: the most precise variant that passed parity, else float32.
        runtime: force an interpreter (``ai_edge_litert``, ``tflite_runtime``, ``tensorflow``).
        allow_rejected: load an artifact that convert rejected (it missed its tolerance); refused otherwise.

    Raises:
        BundleError: bad manifest, missing/tampered/rejected artifact, or a manifest that does not match the model.
        RuntimeTooOld: the interpreter cannot run the artifact.
        EdgeError: no interpreter installed, or it cannot load the file.
    """

    def __init__(self, bundle_dir: str | Path | Bundle, variant: str | None = None, runtime: str | None = None,
                 num_threads: int | None = 1, allow_rejected: bool = False) -> None:
        self.bundle = bundle_dir if isinstance(bundle_dir, Bundle) else Bundle.open(bundle_dir)
        self.manifest = self.bundle.manifest
        self.runtime: Runtime = pick(runtime)
        self.artifact = self.bundle.artifact(variant, self.runtime.name, allow_rejected)
        self.variant: str = self.artifact["variant"]
        self.path = mf.check_file(self.bundle.root, self.artifact["path"], self.artifact["sha256"], self.artifact["bytes"])
        self.sha256: str = self.artifact["sha256"]
        check_runtime(self.artifact, self.runtime)
        self.num_threads: int = 1 if num_threads is None else num_threads
        self.threads_reason = "--threads" if num_threads is not None else ""
        # Same arithmetic as edge.transform.apply; mean/std are turned into arrays once, not per call.
        self.transforms = [
            None if t is None else {**t, "mean": np.asarray(t["mean"], dtype=np.float64), "std": np.asarray(t["std"], dtype=np.float64)}
            for t in self.artifact.get("input_transform") or []
        ]
        self.input_specs = {i["name"]: i for i in self.manifest["inputs"]}
        self.input_dtypes = {i["name"]: np.dtype(i["dtype"]) for i in self.manifest["inputs"]}
        self._want_dims = {i["name"]: _dims(i["shape"]) for i in self.manifest["inputs"]}
        self.output_keys = [o["key"] for o in self.manifest["outputs"]]
        self.features = list(self.manifest.get("features") or [])
        self._local = threading.local()
        # Tabular fast path: one input whose columns are the features in manifest order.
        only = self.manifest["inputs"][0]
        self._direct_input = (
            only["name"]
            if len(self.manifest["inputs"]) == 1 and self.features and only["shape"][-1] == len(self.features)
            and all(f["input"] == only["name"] and f["index"] == i for i, f in enumerate(self.features))
            else None
        )
        # The same standardize transform as plain floats, for predict_row (Python float arithmetic is the
        # IEEE double arithmetic numpy uses, so both paths feed identical inputs).
        self._row_transform: tuple[list[float], list[float]] | None = None
        active = [t for t in self.transforms if t is not None]
        self._row_ok = self._direct_input is not None and not active
        if self._direct_input is not None and len(active) == 1:
            t = active[0]
            if t["kind"] == "standardize" and t["input"] == self._direct_input and t["mean"].shape == (len(self.features),):
                self._row_transform = (t["mean"].tolist(), t["std"].tolist())
                self._row_ok = True
        # inputs that index an Embedding (manifest "vocabulary"): checked before every prediction
        self._vocabulary_specs = [i for i in self.manifest["inputs"] if i.get("vocabulary")]
        self._row_ok = self._row_ok and not self._vocabulary_specs
        self._check_io(self._session())
        # One value per row (one output of shape (n,) or (n, 1)): predict_value answers with a float.
        out_shape = _dims(self.manifest["outputs"][0]["shape"])
        self.one_value = len(self.output_keys) == 1 and len(out_shape) in (1, 2) and out_shape[1:] in ([], [1])
        self._ops = frozenset(op["name"] for op in tflite_ops(self.path))
        if num_threads is None:
            threads.pick(self)

    # ------------------------------------------------------------------ loading

    def _session(self) -> _Session:
        session = getattr(self._local, "session", None)
        if session is None:
            interpreter = make_interpreter(self.runtime, self.path, self.artifact["path"], self.num_threads)
            signatures = interpreter.get_signature_list()
            if SIGNATURE in signatures:
                name = SIGNATURE
            elif len(signatures) == 1:
                name = next(iter(signatures))
            else:
                raise BundleError(
                    f"{self.artifact['path']} has no {SIGNATURE!r} signature (it has {sorted(signatures)}); re-create the bundle"
                )
            session = _Session(interpreter, name)
            self._local.session = session
        return session

    def _check_io(self, session: _Session) -> None:
        """Compare the model's signature with the manifest.

        Raises:
            BundleError: names, dtypes, ranks, fixed dimensions or tensor names differ.
        """
        where = f"manifest.json does not match {self.artifact['path']}"
        model_in, want_in = sorted(session.inputs), sorted(self.input_specs)
        if model_in != want_in:
            raise BundleError(f"{where}: the model's inputs are {model_in}, the manifest's {want_in}; re-create the bundle")
        model_out, want_out = sorted(session.outputs), sorted(self.output_keys)
        if model_out != want_out:
            raise BundleError(f"{where}: the model's outputs are {model_out}, the manifest's {want_out}; re-create the bundle")
        specs = [(n, session.inputs[n], self.input_specs[n], "input") for n in model_in]
        specs += [(o["key"], session.outputs[o["key"]], o, "output") for o in self.manifest["outputs"]]
        io = self.artifact.get("io") or {}
        for name, detail, spec, kind in specs:
            dtype = np.dtype(detail["dtype"]).name
            if dtype != spec["dtype"]:
                raise BundleError(f"{where}: {kind} {name!r} is {dtype} in the model, {spec['dtype']} in the manifest; re-create the bundle")
            have = _dims(detail.get("shape_signature", detail["shape"]))
            want = _dims(spec["shape"])
            if len(have) != len(want) or any(h is not None and w is not None and h != w for h, w in zip(have, want)):
                raise BundleError(f"{where}: {kind} {name!r} has shape {have} in the model, {want} in the manifest; re-create the bundle")
            recorded = (io.get(kind + "s") or {}).get(name)
            # The converter may record the signature key or the tensor name; either must match the model.
            if recorded and recorded != name and recorded != detail.get("name"):
                raise BundleError(
                    f"{where}: {kind} {name!r} is tensor {detail['name']!r} in the model, {recorded!r} in the manifest; re-create the bundle"
                )

    # ------------------------------------------------------------------ predicting

    def predict(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run the model on a batch: ``{input name: array}`` -> ``{output key: array}``.

        The artifact's ``input_transform`` is applied first, exactly as the parity engine does.

        Raises:
            EdgeError: an input is missing or has the wrong number of dimensions or columns.
            InputError: (an EdgeError, status 422) a value outside an input's vocabulary
                (``edge.inputs.check_vocabulary``).
        """
        if self._vocabulary_specs:
            check_vocabulary(inputs, self._vocabulary_specs)
        feeds: dict[str, np.ndarray] = {}
        for name, want in self._want_dims.items():
            if name not in inputs:
                raise EdgeError(f"input {name!r} is missing; the model takes {sorted(self.input_specs)}")
            arr = np.asarray(inputs[name])
            if arr.ndim != len(want) or any(w is not None and a != w for a, w in zip(arr.shape[1:], want[1:])):
                raise EdgeError(f"input {name!r} has shape {list(arr.shape)}, the model takes {want}")
            feeds[name] = arr
        if self.transforms:
            feeds = transform.apply(self.transforms, feeds)
        feeds = {n: np.ascontiguousarray(a, dtype=self.input_dtypes[n]) for n, a in feeds.items()}
        out = self._session().run(feeds)  # get_tensor returns copies
        return {key: out[key] for key in self.output_keys}

    def predict_row(self, row: Sequence[float]) -> np.ndarray:
        """One tabular row (values in manifest feature order) -> the first output's row.

        Same arithmetic as ``predict_rows([row])[0]`` (the standardize transform in float64, then the
        model dtype), without the batch machinery: the server's per-request path.

        Raises:
            EdgeError: see ``rows_to_inputs``.
        """
        name = self._direct_input
        session = self._session()
        if not self._row_ok or not session.fast or len(row) != len(self.features):
            return self.predict_rows([row])[0]
        return session.run_row(name, self._transformed(row), self.input_dtypes[name], session.out_index[self.output_keys[0]])

    def _transformed(self, row: Sequence[float]) -> Sequence[float]:
        """The standardize transform of a direct-input row in plain floats (IEEE double, as numpy's)."""
        if self._row_transform is None:
            return row
        mean, std = self._row_transform
        return [(v - m) / s for v, m, s in zip(row, mean, std)]

    def predict_value(self, row: Sequence[float]) -> float:
        """One tabular row -> the model's one output value, as a Python float (for ``one_value`` models).

        The same number as ``float(predict_rows([row])[0, 0])``; written into and read from the
        interpreter's tensors in place when the graph allows it (``_RowView``), else through ``predict_row``.

        Raises:
            EdgeError: the model does not give one value per row; see ``rows_to_inputs``.
        """
        session = getattr(self._local, "session", None) or self._session()
        view = session.view  # only ever built for this Predictor's one-value tabular path
        if view is None or len(row) != view.k:
            if not self.one_value:
                raise EdgeError(f"this model's output {self.output_keys[0]!r} is not one value per row; use predict_row()")
            view = None
            if self._row_ok and len(row) == len(self.features):
                view = session.row_view(self._direct_input, len(row), session.out_index[self.output_keys[0]], self._ops)
        if view is not None:
            try:
                view.pack(view.input, 0, *self._transformed(row))
            except (OverflowError, struct.error):  # beyond float32 (numpy's cast makes it inf) or not numbers
                view = None  # let go of it: the public invoke() refuses while views of the tensors exist
            else:
                view.invoke()
                return view.output[0]
        return float(self.predict_row(row).reshape(-1)[0])

    def rows_to_inputs(self, rows: Any) -> dict[str, np.ndarray]:
        """Tabular rows (n, n_features) in manifest feature order -> the model's input arrays.

        Raises:
            EdgeError: the model is not tabular or the rows have the wrong width.
        """
        if not self.features:
            raise EdgeError("this model has no tabular features (manifest 'features' is null); use predict()")
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            names = ", ".join(f["name"] for f in self.features)
            raise EdgeError(f"rows must have {len(self.features)} values ({names}), got shape {list(x.shape)}")
        if self._direct_input is not None:
            return {self._direct_input: x}
        inputs: dict[str, np.ndarray] = {}
        for name, spec in self.input_specs.items():
            cols = [f for f in self.features if f["input"] == name]
            width = spec["shape"][-1] if spec["shape"] and spec["shape"][-1] else (max(f["index"] for f in cols) + 1)
            arr = np.zeros((x.shape[0], int(width)), dtype=np.float64)
            for pos, feature in enumerate(self.features):
                if feature["input"] == name:
                    arr[:, feature["index"]] = x[:, pos]
            inputs[name] = arr
        return inputs

    def predict_rows(self, rows: Any) -> np.ndarray:
        """Tabular convenience: rows in manifest feature order -> the first output, shape (n, ...).

        Raises:
            EdgeError: see ``rows_to_inputs``.
        """
        return self.predict(self.rows_to_inputs(rows))[self.output_keys[0]]

    def describe(self) -> dict[str, Any]:
        """What is loaded: variant, file, sha256, runtime."""
        return {"variant": self.variant, "artifact": self.artifact["path"], "sha256": self.sha256,
                "runtime": self.runtime.name, "runtime_version": self.runtime.version, "threads": self.num_threads}
