"""Stage 8, write the golden file: the golden inputs, the reference's outputs on them and, where the float32
and float16 TFLite artifacts were both written, the float16 precision twin's outputs (``convert.twin``)."""

from __future__ import annotations

import json

from convert.errors import DeployKitError
from convert.golden import golden_json
from convert.reference import Reference
from convert.stages.reference_run import ReferenceRun
from convert.stages.written import Written

GOLDEN = "golden.json"


def write_golden(ref: Reference, run: ReferenceRun, written: Written) -> None:
    """Write ``staging/golden.json`` once. When no twin can be made, the float16 artifact's note and a table
    row say why (that artifact then fails verification, saying why); when one is, the float16 artifact gets
    convert's verdict from it (``convert.twin.precision_check``: rejected when the model itself loses more
    than the float16 range bound). Raises only OSError (a write failure)."""
    twins = None
    by_variant = {a["variant"]: a for a in written.artifacts if a["format"] == "tflite"}
    if "float16" in by_variant and "float32" in by_variant:
        from convert.twin import twin_outputs

        like = {"inputs": [s.to_json() for s in ref.inputs], "outputs": [{"key": s.key} for s in ref.outputs]}
        try:
            twins = {"float16": twin_outputs((written.staging / by_variant["float32"]["path"]).read_bytes(),
                                             (written.staging / by_variant["float16"]["path"]).read_bytes(),
                                             like, run.golden_inputs)}
        except DeployKitError as exc:
            note = f"no float16 precision twin: {exc}"
            by_variant["float16"]["note"] = "; ".join(n for n in (by_variant["float16"]["note"], note) if n)
            written.note_row(GOLDEN, "golden", "float16", note)
        else:
            _judge_float16(by_variant["float16"], by_variant["float32"], ref, run, twins["float16"], written)
    golden = golden_json(run.golden_inputs, run.kinds, run.golden_outputs, twins)
    (written.staging / GOLDEN).write_text(json.dumps(golden), encoding="utf-8")


def _judge_float16(artifact: dict, fp32: dict, ref: Reference, run: ReferenceRun, twin: dict, written: Written) -> None:
    """Record ``precision`` and ``status`` (and ``rejection``) on the float16 artifact, and say a rejection in the table."""
    from convert.twin import precision_check

    like = {"inputs": [s.to_json() for s in ref.inputs], "outputs": run.outputs}
    fields = precision_check((written.staging / artifact["path"]).read_bytes(), run.golden_inputs, twin,
                             run.golden_outputs, like, (written.staging / fp32["path"]).read_bytes())
    artifact.update(fields)
    if fields["status"] == "rejected":
        note = f"rejected: {fields['rejection']}"
        artifact["note"] = "; ".join(n for n in (artifact["note"], note) if n)
        for row in written.rows:
            if row["artifact"] == artifact["path"]:
                row["note"] = "; ".join(n for n in (row["note"], note) if n)
