"""Checks made on an untrusted model before anything in it is run or inflated.

A SavedModel is a program: ``tf.saved_model.load`` runs its initialisers and restore functions, and a
prediction runs its signature. ``check_saved_model_ops`` reads ``saved_model.pb`` as data (protobuf
parsing only) and refuses every op outside an allowlist of numeric, array, variable and control-flow ops,
in the top-level graph and in every function of its library, so file, network, process and
Python-callback ops (``WriteFile``, ``ReadFile``, ``PyFunc``, ``PrintV2``, dataset readers, ...) never run.
The checkpoint ops a SavedModel legitimately holds (``SaveV2``/``RestoreV2`` and their helpers) are
allowed only in the saver graph that its ``saver_def`` names, and only there: save ops under the save
tensor, restore ops under the restore op, never in a function anything else calls.

A ``.keras`` file is a zip archive. ``check_keras_archive`` bounds every member's size, the total and the
compression ratio from the archive's central directory before a byte is inflated (Python's zipfile then
never inflates more than a member's declared size).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Iterable

from convert.errors import DeployKitError

# ------------------------------------------------------------------------------------------ SavedModel ops

# Every op that Keras 3 ``model.export``, ``tf.saved_model.save`` and tf_keras ``model.export`` write for
# Dense, Conv1D/2D, (transposed/depthwise/separable) convolutions, pooling, Embedding, LSTM/GRU/SimpleRNN
# (also cuDNN and bidirectional), attention, normalisation, dropout and the usual activations (measured
# on TF 2.19), plus the pure math and array ops that are their close relatives.
_NUMERIC = """
Abs Acos Acosh Add AddN AddV2 All Any ApproximateEqual ArgMax ArgMin Asin Asinh Atan Atan2 Atanh
AvgPool AvgPool3D BatchMatMul BatchMatMulV2 BatchMatMulV3 BatchToSpaceND BiasAdd BroadcastArgs BroadcastTo
Cast Ceil ClipByValue Complex ComplexAbs Concat ConcatOffset ConcatV2 Conj Conv Conv2D Conv2DBackpropInput
Conv3D Conv3DBackpropInputV2 Cos Cosh Cumprod Cumsum CudnnRNN CudnnRNNBackprop CudnnRNNBackpropV2
CudnnRNNBackpropV3 CudnnRNNV2 CudnnRNNV3 DepthToSpace DepthwiseConv2dNative Diag DiagPart Div DivNoNan
Einsum Elu Equal Erf Erfc Exp ExpandDims Expm1 Fill Floor FloorDiv FloorMod FusedBatchNorm FusedBatchNormV2
FusedBatchNormV3 Gather GatherNd GatherV2 Gelu Greater GreaterEqual HardSigmoid Imag InvertPermutation
IsFinite IsInf IsNan L2Loss LeakyRelu Less LessEqual Lgamma LinSpace Log Log1p LogSoftmax LogicalAnd
LogicalNot LogicalOr MatMul MatrixBandPart MatrixDiag MatrixDiagPart MatrixDiagPartV3 MatrixDiagV3
MatrixSetDiag MatrixSetDiagV3 Max MaxPool MaxPool3D MaxPoolV2 Maximum Mean Min Minimum MirrorPad Mod Mul
MulNoNan Neg NotEqual OneHot OnesLike Pack Pad PadV2 Pow Prod Range Rank Real RealDiv Reciprocal Relu Relu6
Reshape ResizeBilinear ResizeNearestNeighbor Reverse ReverseSequence ReverseV2 Rint Round Rsqrt
ScatterNd Select SelectV2 Selu Shape ShapeN Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign
SpaceToBatchND SpaceToDepth Split SplitV Sqrt Square SquaredDifference Squeeze StopGradient StridedSlice
Sub Sum Tan Tanh TensorScatterAdd TensorScatterUpdate Tile TopKV2 Transpose TruncateDiv TruncateMod Unique
Unpack Where Xdivy Xlogy ZerosLike
"""
_ARRAY_AND_CONTROL = """
Const Identity IdentityN NoOp Placeholder PlaceholderWithDefault EnsureShape CheckNumerics CheckNumericsV2
Assert PreventGradient Snapshot
If StatelessIf While StatelessWhile Case StatelessCase PartitionedCall StatefulPartitionedCall
Enter Exit Merge Switch NextIteration LoopCond ControlTrigger
TensorListFromTensor TensorListGetItem TensorListSetItem TensorListReserve TensorListStack TensorListLength
TensorListElementShape TensorListPushBack TensorListPopBack TensorListConcatV2 TensorListSplit
TensorListGather TensorListScatterIntoExistingList TensorListResize EmptyTensorList
TensorArrayV3 TensorArrayReadV3 TensorArrayWriteV3 TensorArrayGatherV3 TensorArrayScatterV3
TensorArraySizeV3 TensorArrayConcatV3 TensorArraySplitV3
VarHandleOp ReadVariableOp AssignVariableOp AssignAddVariableOp AssignSubVariableOp VarIsInitializedOp
ResourceGather DestroyResourceOp VariableV2 Variable Assign IsVariableInitialized
IteratorGetNext IteratorGetNextSync IteratorGetNextAsOptional OptionalGetValue OptionalHasValue OptionalNone
"""
# The iterator ops above only take the next element of an iterator handed to the function (a Keras 2
# Normalization's adapt_step holds one); every op that makes a dataset from files (TFRecordDataset, ...) stays
# refused.
ALLOWED_OPS = frozenset((_NUMERIC + _ARRAY_AND_CONTROL).split())
# The saver graph named by MetaGraphDef.saver_def (``__inference__traced_save_N`` /
# ``__inference__traced_restore_N`` in TF2, the ``save/`` scope in TF1): its own ops, there only.
SAVE_OPS = frozenset("SaveV2 SaveSlices Save MergeV2Checkpoints ShardedFilename ShardedFilespec StringJoin "
                     "StaticRegexFullMatch DisableCopyOnRead".split())
RESTORE_OPS = frozenset("RestoreV2 RestoreSlice Restore".split())
_KNOWN_HARMFUL = frozenset(
    "WriteFile ReadFile MatchingFiles DeleteFile PyFunc PyFuncStateless EagerPyFunc PrintV2 Print SaveV2 Save "
    "SaveSlices RestoreV2 Restore RestoreSlice MergeV2Checkpoints ImmutableConst InitializeTableFromTextFileV2 "
    "WholeFileReaderV2 TFRecordReaderV2 TFRecordDataset FixedLengthRecordDatasetV2 TextLineDataset "
    "SummaryWriter CreateSummaryFileWriter WriteSummary DebugIdentityV2 DebugIdentityV3".split())
_REFUSED_KINDS = "only numeric, array, variable and control-flow ops may run (file, network, process and Python-callback ops are refused)"


def check_saved_model_ops(folder: Path) -> None:
    """Refuse a SavedModel whose graph holds an op outside the allowlist, before anything in it runs.

    Raises:
        DeployKitError: ``saved_model.pb`` cannot be parsed, or an op is not allowed (the message names the
        op and the function or node that holds it).
    """
    saved_model = parse_saved_model(folder)
    for meta_graph in saved_model.meta_graphs:
        refused = _first_refused(meta_graph)
        if refused is not None:
            op, where = refused
            raise DeployKitError(
                f"SavedModel {str(folder)!r} holds the op {op} ({where}), which deploykit will not run: loading a "
                f"SavedModel runs its graph, and {_REFUSED_KINDS}; export the model again from a trusted source "
                "with model.export(), or pass its .keras file"
            )


def parse_saved_model(folder: Path) -> Any:
    """``saved_model.pb`` (or ``.pbtxt``) of ``folder`` as a ``SavedModel`` proto, read as data only.

    Raises:
        DeployKitError: the file cannot be read or parsed.
    """
    from google.protobuf import message, text_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    binary, text = folder / "saved_model.pb", folder / "saved_model.pbtxt"
    try:
        if binary.is_file():
            saved_model.ParseFromString(binary.read_bytes())
        else:
            text_format.Parse(text.read_text(encoding="utf-8"), saved_model)
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DeployKitError(f"SavedModel {str(folder)!r} could not be read ({first}); re-export it") from None
    return saved_model


def _called(nodes: Iterable[Any], library: dict[str, Any]) -> set[str]:
    """Names of the library functions these NodeDefs call (by op name or through a function attribute)."""
    names: set[str] = set()
    for node in nodes:
        if node.op in library:
            names.add(node.op)
        for attr in node.attr.values():
            if attr.HasField("func"):
                names.add(attr.func.name)
            if attr.HasField("list"):
                names.update(f.name for f in attr.list.func)
    return names


def _reach(roots: set[str], library: dict[str, Any]) -> set[str]:
    """Every library function reachable from ``roots`` (the roots included, unknown names skipped)."""
    seen: set[str] = set()
    todo = [name for name in roots if name in library]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(n for n in _called(library[name].node_def, library) if n in library and n not in seen)
    return seen


def _closure(graph: dict[str, Any], tensor: str) -> set[str]:
    """The top-level nodes a tensor or op name depends on (data and control inputs)."""
    start = tensor.split(":")[0].lstrip("^")
    seen: set[str] = set()
    todo = [start] if start in graph else []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for inp in graph[name].input:
            dep = inp.lstrip("^").split(":")[0]
            if dep in graph and dep not in seen:
                todo.append(dep)
    return seen


def _first_refused(meta_graph: Any) -> tuple[str, str] | None:
    """The first op (sorted by place) that is not allowed where it is, with where it is; None when all are."""
    graph_def = meta_graph.graph_def
    library = {f.signature.name: f for f in graph_def.library.function}
    graph = {n.name: n for n in graph_def.node}
    saver = meta_graph.saver_def
    save_nodes = _closure(graph, saver.save_tensor_name) if saver.save_tensor_name else set()
    restore_nodes = _closure(graph, saver.restore_op_name) if saver.restore_op_name else set()
    other_nodes = set(graph) - save_nodes - restore_nodes
    saver_reached = _reach(_called((graph[n] for n in save_nodes | restore_nodes), library), library)
    # Every function but the saver's own may be called by the loader or a signature: the strict rule.
    general_roots = _called((graph[n] for n in other_nodes), library) | (set(library) - saver_reached)
    general_roots |= set(meta_graph.object_graph_def.concrete_functions)
    general = _reach(general_roots, library)
    save_fns = _reach(_called((graph[n] for n in save_nodes), library), library) - general
    restore_fns = _reach(_called((graph[n] for n in restore_nodes), library), library) - general

    def allowed_in(is_save: bool, is_restore: bool) -> frozenset[str]:
        if is_save and not is_restore:
            return ALLOWED_OPS | SAVE_OPS
        if is_restore and not is_save:
            return ALLOWED_OPS | RESTORE_OPS
        return ALLOWED_OPS

    refused: list[tuple[str, str]] = []
    for name in sorted(graph):
        node = graph[name]
        if node.op not in allowed_in(name in save_nodes, name in restore_nodes) and node.op not in library:
            refused.append((node.op, f"top-level graph node {name!r}"))
    for name in sorted(library):
        allowed = allowed_in(name in save_fns, name in restore_fns)
        refused.extend((node.op, f"in function {name}") for node in library[name].node_def
                       if node.op not in allowed and node.op not in library)
    # name the op that does the harm (PrintV2, not the StringFormat that feeds it) when there is one
    return next((r for r in refused if r[0] in _KNOWN_HARMFUL), refused[0] if refused else None)


# ------------------------------------------------------------------------------------------ .keras archives

MAX_MEMBERS = 10_000
MAX_JSON_BYTES = 64 * 1024 * 1024          # config.json, metadata.json: a config is text, not data
MAX_MEMBER_BYTES = 4 * 1024 * 1024 * 1024  # model.weights.h5 and anything else
MAX_TOTAL_BYTES = 4 * 1024 * 1024 * 1024
MAX_RATIO = 200                             # inflated/compressed, checked for members over RATIO_FROM bytes
RATIO_FROM = 1024 * 1024


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):,.0f} MiB"


def check_keras_archive(path: Path) -> None:
    """Bound the members of a ``.keras`` zip from its central directory, before anything is inflated.

    Raises:
        DeployKitError: not a zip, a corrupt directory, no ``config.json``, too many members, a member or the
        total larger than its limit, or a member compressed beyond ``MAX_RATIO`` (a decompression bomb).
    """
    if not zipfile.is_zipfile(path):
        raise DeployKitError(f"model {path.name} is not a valid .keras file (not a zip archive: corrupt or truncated); re-save it")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DeployKitError(f"model {path.name} is a corrupt .keras file ({exc}); re-save it") from None
    if len(members) > MAX_MEMBERS:
        raise DeployKitError(f"model {path.name} holds {len(members):,} archive members, over the limit of {MAX_MEMBERS:,}; "
                             "a .keras file holds a few: re-save it")
    total = 0
    for info in members:
        limit = MAX_JSON_BYTES if info.filename.endswith(".json") else MAX_MEMBER_BYTES
        if info.file_size > limit:
            raise DeployKitError(f"model {path.name}: archive member {info.filename!r} inflates to {_mib(info.file_size)}, "
                                 f"over the limit of {_mib(limit)} (a decompression bomb or not a Keras model); re-save it")
        if info.file_size > RATIO_FROM and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise DeployKitError(f"model {path.name}: archive member {info.filename!r} inflates {ratio:,.0f} times "
                                 f"({_mib(info.file_size)}), over the limit of {MAX_RATIO} times (a decompression bomb); re-save it")
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise DeployKitError(f"model {path.name}: its archive members inflate to more than {_mib(MAX_TOTAL_BYTES)} "
                                 f"in total (at {info.filename!r}), over the limit; re-save it")
    if "config.json" not in {info.filename for info in members}:
        raise DeployKitError(f"model {path.name} is a corrupt .keras file (damaged member or no config.json); re-save it")
