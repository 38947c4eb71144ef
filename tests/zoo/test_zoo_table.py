"""``tests/zoo/zoo_table.py``: the README table's cells say the number zoo_expected.py records."""

from __future__ import annotations

import zoo_table
from convert.acceptance import Verdict

# The shape of an int16x8 rejection (convert.mixed_precision.settle): the calibration rows' figure comes first,
# and the failures start with the output's name, which holds a digit.
CALIBRATION = {"rows": 431, "range_fraction": 0.22090, "top1": None, "passed": False,
               "failures": ["output_0: max error 22.090% of the output range > 1%"]}
HELD_OUT = {"rows": 101, "range_fraction": 0.18804, "top1": None, "passed": False,
            "failures": ["output_0: max error 18.804% of the output range > 1%"]}
WHY = " (the mixed-precision search covers int8 only: TF's int16x8 quantizer takes no list of operators to keep in float)"
PATH = "edge/model.int16x8.tflite"


def _model(artifact: dict) -> dict:
    return {"convert_error": "", "artifacts": [artifact], "skipped": [], "results": []}


def test_a_rejected_cell_shows_the_held_out_error_not_the_first_number_of_its_text():
    verdict = Verdict(CALIBRATION, HELD_OUT)
    rejection = verdict.rejection() + WHY
    artifact = {"path": PATH, "status": "rejected", "rejection": rejection, "measured": verdict.measured()}
    assert zoo_table.cell(_model(artifact), PATH, []) == "rejected 18.804%"
    artifact.pop("measured")  # a report without the measurement: the text's held-out figure
    assert zoo_table.cell(_model(artifact), PATH, []) == "rejected 18.804%"


def test_a_rejected_cell_with_an_unbounded_error_and_a_float16_rejection():
    unbounded = {**HELD_OUT, "range_fraction": float("inf")}
    verdict = Verdict(CALIBRATION, unbounded)
    artifact = {"path": PATH, "status": "rejected", "rejection": verdict.rejection(), "measured": verdict.measured()}
    assert zoo_table.cell(_model(artifact), PATH, []) == "rejected inf"
    fp16 = {"path": "edge/model.fp16.tflite", "status": "rejected",
            "rejection": "precision loss: the model itself loses 2.725% of the output range in float16 (its precision "
                         "twin, the float32 graph with the stored constants rounded to float16, against the reference on "
                         "24 golden rows) > 0.1%; converter error (artifact vs twin) 0 of the scale, within 1e-05: the "
                         "converter is faithful"}
    assert zoo_table.cell(_model(fp16), "edge/model.fp16.tflite", []) == "rejected 2.725%"
