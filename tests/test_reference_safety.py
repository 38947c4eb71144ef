"""A SavedModel runs only if its graph holds allowed ops; a .keras archive is size-checked before inflating.

Issue 13, item 4 and the archive half of item 6: a SavedModel whose serving function holds ``WriteFile``
is refused before ``tf.saved_model.load`` (the file is never written), the checkpoint ops are allowed in
the saver graph only, and a decompression bomb is refused from the zip directory alone.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from convert.errors import DeployKitError
from convert.model_safety import MAX_JSON_BYTES, MAX_RATIO, check_keras_archive, check_saved_model_ops
from tests.helpers import BOSTON_CSV, run_cli

REFUSAL = ("SavedModel {folder!r} holds the op {op} ({where}), which deploykit will not run: loading a SavedModel "
           "runs its graph, and only numeric, array, variable and control-flow ops may run (file, network, process "
           "and Python-callback ops are refused); export the model again from a trusted source with model.export(), "
           "or pass its .keras file")


def _refusal(folder: Path, op: str, where: str) -> str:
    return REFUSAL.format(folder=str(folder), op=op, where=where)


def _read(folder: Path):
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((folder / "saved_model.pb").read_bytes())
    return saved


def _function_holding(folder: Path, op: str) -> str:
    (name,) = {f.signature.name for f in _read(folder).meta_graphs[0].graph_def.library.function
               if any(n.op == op for n in f.node_def)}
    return name


def _hostile(tmp_path: Path, body, name: str) -> Path:
    """A SavedModel whose serving signature runs ``body(x)`` (saving only traces it: nothing runs)."""
    import tensorflow as tf

    class Hostile(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable([[2.0], [1.0], [0.5]])

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="features")])
        def serve(self, x):
            return {"output_0": body(x, self.w)}

    module = Hostile()
    folder = tmp_path / name
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


@pytest.fixture(scope="module")
def dense_export(tmp_path_factory) -> Path:
    """A Keras 3 ``model.export`` of a tiny Dense model (its saver graph holds SaveV2 and RestoreV2)."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,), name="features"), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(1)])
    folder = tmp_path_factory.mktemp("sm") / "dense"
    model.export(str(folder), format="tf_saved_model", verbose=False)
    return folder


def test_a_saved_model_that_writes_a_file_is_refused_before_it_runs(tmp_path):
    import tensorflow as tf

    target = tmp_path / "pwned.txt"

    def body(x, w):
        with tf.control_dependencies([tf.io.write_file(str(target), "written by the model")]):
            return tf.matmul(x, w)

    folder = _hostile(tmp_path, body, "writes")
    assert not target.exists()
    expected = _refusal(folder, "WriteFile", f"in function {_function_holding(folder, 'WriteFile')}")
    from convert import reference

    with pytest.raises(DeployKitError) as error:
        reference.load(folder)
    assert str(error.value) == expected
    result = run_cli("convert", folder, "--data", BOSTON_CSV, "--target", "medv", "--features", "rm,tax,age",
                     "--out", tmp_path / "b")
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [f"Error: {expected}"]
    assert not target.exists(), "the SavedModel ran"
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("op", ["ReadFile", "EagerPyFunc", "PrintV2"])
def test_file_and_python_callback_ops_are_refused(tmp_path, op):
    import tensorflow as tf

    def body(x, w):
        if op == "ReadFile":
            extra = tf.strings.length(tf.io.read_file("/etc/hostname"))
            return tf.matmul(x, w) + tf.cast(extra, tf.float32)
        if op == "EagerPyFunc":
            return tf.py_function(lambda t: t * 2.0, [tf.matmul(x, w)], tf.float32)
        with tf.control_dependencies([tf.print(x, output_stream=f"file://{tmp_path / 'log.txt'}")]):
            return tf.matmul(x, w)

    folder = _hostile(tmp_path, body, op.lower())
    with pytest.raises(DeployKitError) as error:
        check_saved_model_ops(folder)
    assert str(error.value) == _refusal(folder, op, f"in function {_function_holding(folder, op)}")


def test_a_keras_export_passes_and_predicts(dense_export):
    from convert import reference

    check_saved_model_ops(dense_export)
    ref = reference.load(dense_export)
    rows = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    (key,) = ref.predict({ref.inputs[0].name: rows})
    assert ref.predict({ref.inputs[0].name: rows})[key].shape == (1, 1)


def _tampered(source: Path, folder: Path, edit) -> Path:
    """A copy of a SavedModel whose saved_model.pb ``edit`` changed (the check reads nothing else)."""
    saved = _read(source)
    edit(saved.meta_graphs[0])
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(saved.SerializeToString())
    return folder


def _functions(meta_graph) -> dict:
    return {f.signature.name: f for f in meta_graph.graph_def.library.function}


def test_checkpoint_ops_are_allowed_in_the_saver_graph_only(dense_export, tmp_path):
    """RestoreV2/SaveV2 pass in ``__inference__traced_restore``/``_save`` (what saver_def names), nowhere else:
    not in the serving function, not a write op in the restore function, not the saver's function called
    from the serving function."""
    meta = _read(dense_export).meta_graphs[0]
    names = _functions(meta)
    restore = next(n for n in names if "traced_restore" in n)
    save = next(n for n in names if "traced_save" in n)
    serve = next(n for n in meta.object_graph_def.concrete_functions if "signature_wrapper" not in n and n in names)

    def add_node(function: str, op: str, **func_attr: str):
        def edit(meta_graph):
            node = _functions(meta_graph)[function].node_def.add(name="planted", op=op)
            for key, value in func_attr.items():
                node.attr[key].func.name = value
        return edit

    folder = _tampered(dense_export, tmp_path / "restore_in_serve", add_node(serve, "RestoreV2"))
    with pytest.raises(DeployKitError) as error:
        check_saved_model_ops(folder)
    assert str(error.value) == _refusal(folder, "RestoreV2", f"in function {serve}")

    folder = _tampered(dense_export, tmp_path / "write_in_restore", add_node(restore, "WriteFile"))
    with pytest.raises(DeployKitError) as error:
        check_saved_model_ops(folder)
    assert str(error.value) == _refusal(folder, "WriteFile", f"in function {restore}")

    folder = _tampered(dense_export, tmp_path / "save_in_restore", add_node(restore, "SaveV2"))
    with pytest.raises(DeployKitError) as error:
        check_saved_model_ops(folder)
    assert str(error.value) == _refusal(folder, "SaveV2", f"in function {restore}")

    folder = _tampered(dense_export, tmp_path / "serve_calls_save", add_node(serve, "StatefulPartitionedCall", f=save))
    with pytest.raises(DeployKitError) as error:
        check_saved_model_ops(folder)
    assert str(error.value).startswith(f"SavedModel {str(folder)!r} holds the op ")
    assert f"in function {save}" in str(error.value)


def test_a_tf1_saved_model_with_its_saver_passes(tmp_path):
    """A TF1 SavedModel (SavedModelBuilder): the save/ scope's RestoreV2 is the saver's, so it passes."""
    import tensorflow as tf

    folder = tmp_path / "tf1"
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="features")
        w = tf.compat.v1.get_variable("w", initializer=tf.constant([[2.0], [1.0], [0.5]]), use_resource=False)
        y = tf.identity(tf.matmul(x, w), name="output_0")
        session.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(str(folder))
        signature = tf.compat.v1.saved_model.predict_signature_def({"features": x}, {"output_0": y})
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
        builder.save()
    ops = {n.op for n in _read(folder).meta_graphs[0].graph_def.node}
    assert {"RestoreV2", "SaveV2", "VariableV2"} <= ops
    check_saved_model_ops(folder)


# ------------------------------------------------------------------------------------------ .keras archives


def _zip_of_repeats(path: Path, member: str, chunk: int, count: int) -> int:
    """A zip holding ``member`` = ``count`` * ``chunk`` zero bytes, deflated without deflating them all: after
    a full flush deflate starts afresh, so every chunk compresses to the same bytes. Returns the size."""
    zeros = bytes(chunk)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = squeeze.compress(zeros) + squeeze.flush(zlib.Z_FULL_FLUSH)
    again = squeeze.compress(zeros) + squeeze.flush(zlib.Z_FULL_FLUSH)
    assert again == first or len(again) <= len(first)
    body = first + again * (count - 1) + squeeze.flush()
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    size = chunk * count
    assert size < 2**32, "keep the bomb within a plain (not zip64) header"
    name = member.encode()
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(body), size, len(name), 0) + name
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(body), size,
                          len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(body), 0)
    path.write_bytes(local + body + central + end)
    return path.stat().st_size


def _no_inflating(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a member was opened")

    monkeypatch.setattr(zipfile.ZipFile, "open", refuse)


def test_a_decompression_bomb_is_refused_from_the_zip_directory(tmp_path, monkeypatch):
    """1 GiB of zeros as config.json in ~1 MB: refused by its declared size, nothing inflated."""
    bomb = tmp_path / "bomb.keras"
    on_disk = _zip_of_repeats(bomb, "config.json", 1 << 24, 64)
    assert on_disk < 2 * 1024 * 1024
    with zipfile.ZipFile(bomb) as archive:  # a real archive: zipfile inflates it to exactly 1 GiB of zeros
        assert archive.getinfo("config.json").file_size == 1 << 30
    expected = ("model bomb.keras: archive member 'config.json' inflates to 1,024 MiB, over the limit of 64 MiB "
                "(a decompression bomb or not a Keras model); re-save it")
    _no_inflating(monkeypatch)
    from convert import reference

    with pytest.raises(DeployKitError) as error:
        reference.load(bomb)
    assert str(error.value) == expected


def test_the_bomb_costs_no_memory_through_the_cli(tmp_path):
    """The issue measured a peak of 2.9 GB; the check needs no more than the interpreter's start."""
    bomb = tmp_path / "bomb.keras"
    _zip_of_repeats(bomb, "config.json", 1 << 24, 64)
    # VmHWM: this process's peak resident memory (ru_maxrss would include the parent's, kept across exec)
    probe = ("import sys\nfrom convert import reference\nfrom convert.errors import DeployKitError\n"
             "try:\n    reference.load(sys.argv[1])\nexcept DeployKitError as e:\n    print(e)\n"
             "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
             "print(int(hwm.split()[1]) // 1024)\n")
    result = subprocess.run([sys.executable, "-c", probe, str(bomb)], capture_output=True, text=True, timeout=120)
    message, peak_mib = result.stdout.strip().splitlines()
    assert "archive member 'config.json' inflates to 1,024 MiB, over the limit of 64 MiB" in message
    assert int(peak_mib) < 200, f"peak {peak_mib} MiB"


def test_a_highly_compressed_weights_member_is_refused(tmp_path, monkeypatch):
    bomb = tmp_path / "zeros.keras"
    _zip_of_repeats(bomb, "model.weights.h5", 1 << 20, 8)
    ratio = 8 * (1 << 20) / zipfile.ZipFile(bomb).getinfo("model.weights.h5").compress_size
    _no_inflating(monkeypatch)
    with pytest.raises(DeployKitError) as error:
        check_keras_archive(bomb)
    assert str(error.value) == (f"model zeros.keras: archive member 'model.weights.h5' inflates {ratio:,.0f} times "
                                f"(8 MiB), over the limit of {MAX_RATIO} times (a decompression bomb); re-save it")


def test_real_models_pass_the_archive_check(boston_mlp, monkeypatch):
    assert MAX_JSON_BYTES == 64 * 1024 * 1024
    _no_inflating(monkeypatch)
    check_keras_archive(boston_mlp)


def test_taking_from_an_iterator_is_allowed_making_one_from_files_is_not():
    """A Keras 2 Normalization's adapt_step (in a tf_keras model.save SavedModel) takes from an iterator it is given;
    datasets that read files stay refused."""
    from convert.model_safety import ALLOWED_OPS

    assert {"IteratorGetNext", "OptionalGetValue"} <= ALLOWED_OPS
    assert not {"TFRecordDatasetV2", "FixedLengthRecordDatasetV2", "TextLineDatasetV2", "MakeIterator"} & ALLOWED_OPS
