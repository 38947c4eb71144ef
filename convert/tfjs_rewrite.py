"""Rewrite the ops tensorflowjs 4.22 cannot convert into ops it has, exactly, before the graph conversion.

Keras's default GELU (``approximate=False``) is ``0.5 * x * erfc(-x / sqrt(2))``, and TFJS 4.22 has no
``Erfc`` (neither its graph converter's op list nor its kernels), while it has ``Erf`` on every backend.
``erfc(x) = 1 - erf(x)`` holds exactly in real arithmetic, so each ``Erfc`` node becomes ``Sub(1, Erf(x))``
in a copy of the SavedModel, and only the TFJS graph model is made from the copy (TFLite keeps ``Erfc``).

Measured in float32 over [-10, 10] (2,000,001 points, against float64 ``math.erfc``; ``tests/
test_tfjs_rewrite.py`` repeats it on 200,001): TF's ``Erfc`` is off by up to 1.0e-7, ``1 - Erf`` by up to 3.7e-7
(TF's float32 ``Erf`` is itself off by 3.4e-7 near |erf| = 1, and the subtraction rounds to half an ulp of
a result up to 2). Through GELU (``0.5 * x * (1 - erf(-x / sqrt(2)))``) that is at most 1.7e-7 of the
output's scale on [-3, 3] (1.1e-7 on [-10, 10]), 60 times under the float32 bound (1e-5 of the scale).
TFJS's own ``Erf`` kernel (Abramowitz-Stegun 7.1.26 on the cpu and webgl backends, 1.4e-7 in exact
arithmetic, 5.3e-7 when evaluated in float32) stays under the bound the same way; the zoo's
``gelu_exact_mlp`` case measures it in Chromium.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

NOTE = ("Erfc written as 1 - Erf for TFJS, which has no Erfc (exact in real arithmetic; float32 GELU moves by "
        "at most 1.7e-7 of its scale)")


def erfc_nodes(saved_model: Any) -> int:
    """How many ``Erfc`` nodes a parsed SavedModel holds (top-level graphs and function libraries)."""
    count = 0
    for meta_graph in saved_model.meta_graphs:
        count += sum(1 for n in meta_graph.graph_def.node if n.op == "Erfc")
        for function in meta_graph.graph_def.library.function:
            count += sum(1 for n in function.node_def if n.op == "Erfc")
    return count


def _one(node: Any, name: str) -> Any:
    """A scalar Const 1 of the Erfc node's dtype (its attr ``T``), on the same device."""
    import numpy as np
    from tensorflow.core.framework import node_def_pb2
    from tensorflow.python.framework import dtypes, tensor_util

    dtype = dtypes.as_dtype(node.attr["T"].type)
    const = node_def_pb2.NodeDef(name=name, op="Const", device=node.device)
    const.attr["dtype"].type = node.attr["T"].type
    const.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(np.array(1, dtype=dtype.as_numpy_dtype)))
    return const


def _rewrite_nodes(nodes: Any, in_function: bool) -> dict[str, str]:
    """Replace each ``Erfc`` node N in a repeated NodeDef field by ``N/erf = Erf(x)``, ``N/one = 1`` and
    ``N = Sub(N/one, N/erf)``; return the output names consumers must now use (``N:y:0`` -> ``N:z:0`` in a
    function, where outputs are named by argument; a top-level graph names them by position, unchanged)."""
    renamed: dict[str, str] = {}
    for index in range(len(nodes)):
        node = nodes[index]
        if node.op != "Erfc":
            continue
        erf = type(node)()
        erf.CopyFrom(node)
        erf.name = f"{node.name}/erf"
        erf.op = "Erf"
        one = _one(node, f"{node.name}/one")
        sub = type(node)(name=node.name, op="Sub", device=node.device)
        sub.attr["T"].CopyFrom(node.attr["T"])
        if in_function:
            sub.input.extend([f"{one.name}:output:0", f"{erf.name}:y:0"])
            renamed[f"{node.name}:y:0"] = f"{node.name}:z:0"
        else:
            sub.input.extend([one.name, erf.name])
        # control inputs of the Erfc stay with the Erf (which the Sub depends on)
        nodes[index].CopyFrom(sub)
        nodes.add().CopyFrom(erf)
        nodes.add().CopyFrom(one)
    return renamed


def rewrite(saved_model: Any) -> int:
    """Rewrite every ``Erfc`` of a parsed SavedModel in place; return how many were rewritten."""
    count = erfc_nodes(saved_model)
    if not count:
        return 0
    for meta_graph in saved_model.meta_graphs:
        _rewrite_nodes(meta_graph.graph_def.node, in_function=False)
        for function in meta_graph.graph_def.library.function:
            renamed = _rewrite_nodes(function.node_def, in_function=True)
            if not renamed:
                continue
            for node in function.node_def:
                for i, name in enumerate(node.input):
                    if name in renamed:
                        node.input[i] = renamed[name]
            for key, value in list(function.ret.items()):
                if value in renamed:
                    function.ret[key] = renamed[value]
    return count


@contextlib.contextmanager
def for_tfjs(saved_model_dir: Path) -> Iterator[tuple[Path, list[str]]]:
    """The SavedModel tensorflowjs should convert and the notes that say what was rewritten.

    Without an ``Erfc`` this is ``saved_model_dir`` itself, untouched. Otherwise it is a rewritten copy in a
    temporary work folder (``deploykit-work-PID-*``, removed on exit, and by the next convert if this one is
    killed); the source folder is never written.

    Raises:
        DeployKitError: ``saved_model.pb`` cannot be read (``convert.model_safety``).
    """
    from convert.model_safety import parse_saved_model
    from convert.pipeline import WORK_PREFIX

    saved_model = parse_saved_model(Path(saved_model_dir))
    count = rewrite(saved_model)
    if not count:
        yield Path(saved_model_dir), []
        return
    with tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{os.getpid()}-") as work:
        copy = Path(work) / "saved_model_tfjs"
        # the fingerprint names the original graph's hash: the copy has another graph, so it has none
        shutil.copytree(saved_model_dir, copy, ignore=shutil.ignore_patterns("saved_model.pb", "saved_model.pbtxt",
                                                                             "fingerprint.pb"))
        (copy / "saved_model.pb").write_bytes(saved_model.SerializeToString())
        yield copy, [NOTE]
