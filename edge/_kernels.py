"""Kernels that a converted model can need and some runtimes lack, although the op version allows them.

The TFLite converter (TensorFlow 2.19) writes op versions and a ``min_runtime_version`` that do not
always say which tensor types a kernel must handle: an int16x8 GELU is written as GELU version 2, which
tflite-runtime 2.14 registers, and fails at its first invoke ("Only float32, int8 and uint8 supported
currently, got INT16"). This table lists what was found by converting single-op Keras models to int8,
int16x8, float16 and dynamic range with TensorFlow 2.19 and running each in tflite-runtime 2.14.0,
TensorFlow 2.19's ``tf.lite`` and ai-edge-litert 2.3.0 (tests/edge/test_edge_kernels.py rebuilds one
model per entry). Every other op x type those 86 models produced (FULLY_CONNECTED, CONV_2D,
DEPTHWISE_CONV_2D, TRANSPOSE_CONV, BATCH_MATMUL, SOFTMAX, LOGISTIC, TANH, MEAN, SUM, CONCATENATION,
TRANSPOSE, PAD, MIRROR_PAD, RESIZE_BILINEAR, HARD_SWISH int8, LEAKY_RELU, PRELU, EXP, MUL, ADD, SUB, PACK,
UNPACK, GATHER, the unrolled GRU and LSTM, MultiHeadAttention, ...) ran in tflite-runtime 2.14.0 and
ai-edge-litert 2.3.0.

Each entry: the op, the type of its first input (or an op version), the first release of each runtime
line that has the kernel (``None``: none so far), and where the sources show it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KernelNeed:
    """A kernel some runtimes lack: ``op`` on ``input_type`` tensors, or ``op`` at ``version`` or above."""

    op: str
    input_type: str | None  # the type of the op's first input; None: any (a version entry)
    version: int | None  # an op version the converter's metadata under-reports; None: any
    tflite: str | None  # first TensorFlow Lite / tflite-runtime release with the kernel; None: none through 2.19
    ai_edge_litert: str | None  # first ai-edge-litert release with it; None: none through 2.3.0
    source: str


LAST_CHECKED = "tflite-runtime 2.14, TensorFlow 2.19, ai-edge-litert 2.3.0"  # the runtimes the table was measured in

KERNEL_NEEDS: tuple[KernelNeed, ...] = (
    KernelNeed(
        "GELU", "int16", None, None, "1.3.0",
        "tensorflow/lite/kernels/activations.cc GeluEval switches over float32, int8 and uint8 only "
        "(v2.14.0 and TF 2.19, measured); LiteRT tflite/kernels/activations.cc gains kTfLiteInt16 in commit "
        "b93c41f76 'Implement GELU reference kernel for INT16 activation' (2025-05-14), first tagged v1.3.0; "
        "op_version.cc gives int16 no new version",
    ),
    KernelNeed(
        "TILE", "int16", None, None, "2.1.3",
        "tensorflow/lite/kernels/tile.cc Eval switches over int8, uint8, float32, int32, int64, string, bool "
        "('Type 'INT16' is not supported by tile', 2.14 and TF 2.19 measured; LiteRT v2.1.0 the same); LiteRT "
        "commit 7162aeca4 (2026-03-09) tiles any 1/2/4/8-byte type, first tagged v2.1.3. UpSampling2D "
        "(nearest) converts to TILE",
    ),
    KernelNeed(
        "RSQRT", "int16", None, "2.15.0", "1.0.0",
        "tensorflow/lite/kernels/elementwise.cc:105 at v2.14.0: 'Type INT16 is unsupported by op Rsqrt' "
        "(measured); tools/versioning/op_version.cc: int16 input is RSQRT version 3 and runtime_version.cc "
        "maps {RSQRT, 3} to 2.15.0, but TF 2.19's converter writes version 2 (measured)",
    ),
    KernelNeed(
        "SQUARED_DIFFERENCE", "int16", None, None, None,
        "tensorflow/lite/kernels/squared_difference.cc: 'SquaredDifference only supports FLOAT32 and INT32 "
        "now' in 2.14, TF 2.19 and ai-edge-litert 2.3.0 (measured; LiteRT HEAD the same), yet TF 2.19 "
        "converts (a - b)**2 to an int16 SQUARED_DIFFERENCE in int16x8",
    ),
    KernelNeed(
        "LOG", None, 2, "2.15.0", "1.0.0",
        "tools/versioning/runtime_version.cc maps {LOG, 2} (int8/int16 input) to 2.15.0; TF 2.19 writes "
        "min_runtime_version 1.14.0 or none for such a model and 2.14 refuses 'LOG version 2' (measured)",
    ),
)
