"""The TensorFlow Serving REST adapter: ``POST /v1/models/NAME:predict`` (row ``instances`` or columnar
``inputs``), ``GET /v1/models/NAME`` (status) and ``GET /v1/models/NAME/metadata`` (signature).

The model part of the path, ``NAME[/versions/N|/labels/L]``, is parsed by the router with this module's
converters into a ``ModelRef``; the model's ``Dispatcher`` (``edge.dispatch``) answers: a version or label
reaches that version (no canary, no fallback), none takes the default route. ``GET /v1/models/NAME`` is
the repository's status of the model's versions (TF Serving's body); the metadata is the resolved
version's.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from edge.inputs import InputError, check_tensor, parse_json
from edge.repository import NotServed
from edge.server.images import INLINE_DECODE_BYTES, Decoded, b64_decoder, log_images
from edge.server.messages import JSON_TYPE, Answer, Reply, Request, json_bytes, outcome_headers, read_body
from edge.server.routing import Converter

if TYPE_CHECKING:  # pragma: no cover
    from edge.server.app import EdgeApp
    from edge.server.served import ServedModel


PREFIX = "/v1/models/"


@dataclass(frozen=True)
class ModelRef:
    """The model a TF Serving path names: ``version`` or ``label`` when the path gave one."""

    name: str
    version: Optional[str] = None
    label: Optional[str] = None

    def number(self) -> Optional[int]:
        """The version as a number (None when the path named none).

        Raises:
            Reply: 404 for a version that is not a positive integer.
        """
        if self.version is None:
            return None
        if not VERSION.match(self.version):
            raise Reply(404, f"version {self.version[:40]} of model {self.name[:100]!r} not found; versions are "
                             "positive integers")
        return int(self.version)


VERSION = re.compile(r"^[1-9][0-9]{0,15}$")


def model_ref(text: str) -> ModelRef:
    """``NAME``, ``NAME/versions/V`` or ``NAME/labels/L`` (split at the first ``/versions/``, else the first
    ``/labels/``) as a ``ModelRef``."""
    base, sep, version = text.partition("/versions/")
    if sep:
        return ModelRef(base, version=version)
    base, sep, label = text.partition("/labels/")
    return ModelRef(base, label=label) if sep else ModelRef(text)


#: ``{model:tfs_model}``: anything before the route's suffix (``:predict``, ``/metadata``)
#: ``{model:tfs_status}``: one name segment (slashes around it allowed), or a path with a version or label
CONVERTERS = {
    "tfs_model": Converter(".*", model_ref),
    "tfs_status": Converter(r"(?=.)/*[^/]*/*|.*/versions/.*|.*/labels/.*", lambda text: model_ref(text.strip("/"))),
}

_DTYPES = {"float32": "FLOAT", "float16": "HALF", "int32": "INT32", "int64": "INT64", "int8": "INT8",
           "uint8": "UINT8", "bool": "BOOL"}


class TFServing:
    """The three TF Serving handlers over an ``EdgeApp``'s predictor."""

    def __init__(self, app: "EdgeApp") -> None:
        self.app = app

    def check_model(self, ref: ModelRef) -> "ServedModel":
        """The served model a path names.

        Raises:
            NotServed: 404 for an unknown model; Reply: 404 for a version that is not a number.
        """
        served = self.app.served(ref.name)
        ref.number()
        return served

    async def predict(self, request: Request) -> Answer:
        app = self.app
        ref: ModelRef = request.params["model"]
        served = self.check_model(ref)
        body = await read_body(request, (JSON_TYPE,), app.config.max_body)
        data = parse_json(body)
        if not isinstance(data, dict) or ("instances" in data) == ("inputs" in data):
            raise InputError(422, 'the body must be an object with either "instances" (row format) or "inputs" (columnar)')
        signature = data.get("signature_name", "serving_default")
        if signature != "serving_default":
            raise InputError(422, f"unknown signature_name {signature!r}; this model has serving_default")
        specs = served.manifest["inputs"]
        max_batch = app.config.max_batch
        b64: Optional[Callable[[], Decoded]] = None  # b64 images: decoded with the prediction, logged summarised
        summaries: list[Optional[dict]] = []
        if "instances" in data:
            instances = data["instances"]
            if not isinstance(instances, list) or not instances:
                raise InputError(422, '"instances" must be a non-empty list')
            if len(instances) > max_batch:
                raise InputError(413, f"batch of {len(instances)} instances is over the limit of {max_batch}")
            b64 = b64_decoder(served.manifest, instances, specs, app.logs is not None)
            inputs = self._instances_to_inputs(instances, specs, served) if b64 is None else {}
        else:
            columns = data["inputs"]
            if not isinstance(columns, dict):
                if len(specs) != 1:
                    raise InputError(422, f'"inputs" must be an object keyed by {[s["name"] for s in specs]}')
                columns = {specs[0]["name"]: columns}
            inputs = {}
            for spec in specs:
                if spec["name"] not in columns:
                    raise InputError(422, f"input {spec['name']!r} is missing")
                inputs[spec["name"]] = check_tensor(columns[spec["name"]], spec["name"], spec["shape"], "float64",
                                                    spec["dtype"])
            n = {a.shape[0] for a in inputs.values()}
            if max(n) > max_batch:
                raise InputError(413, f"batch of {max(n)} rows is over the limit of {max_batch}")
        n_rows = {a.shape[0] for a in inputs.values()} if b64 is None else {len(data["instances"])}
        if len(n_rows) != 1:
            raise InputError(422, "all inputs must have the same number of rows")

        def decode() -> dict[str, np.ndarray]:  # b64 images: decoded where the prediction runs, in the same call
            made, found = b64()  # type: ignore[misc]
            summaries.extend(found)
            return made

        feed: Any = inputs if b64 is None else decode
        big = b64 is not None and len(body) > INLINE_DECODE_BYTES  # as :classify (edge.server.images)
        if big and app.inline:
            feed = await asyncio.to_thread(decode)
        outputs, outcome = await app.predict_inputs(feed,
                                                    request.log_rows if b64 is None else None, served,
                                                    version=ref.number(), label=ref.label,
                                                    key=app.sticky_key(request, served),
                                                    heavy=big or max(n_rows) > 1)  # a batch: never on the loop
        keys = served.output_keys
        if b64 is not None:  # images are logged summarised, not as pixels
            first = np.asarray(outputs[keys[0]], dtype=np.float64)
            log_images(app, request, summaries, [app.value(r) for r in first], outcome, served)
        extra = outcome_headers(outcome)
        if "instances" in data:
            if len(keys) == 1:
                preds = np.asarray(outputs[keys[0]], dtype=np.float64).tolist()
            else:
                rows = next(iter(n_rows))
                preds = [{k: np.asarray(outputs[k][i], dtype=np.float64).tolist() for k in keys} for i in range(rows)]
            return 200, JSON_TYPE, json_bytes({"predictions": preds}), extra
        if len(keys) == 1:
            return 200, JSON_TYPE, json_bytes({"outputs": np.asarray(outputs[keys[0]], dtype=np.float64).tolist()}), extra
        return 200, JSON_TYPE, json_bytes({"outputs": {k: np.asarray(outputs[k], dtype=np.float64).tolist() for k in keys}}), extra

    def _instances_to_inputs(self, instances: list, specs: list[dict], served: "ServedModel") -> dict[str, np.ndarray]:
        """Row-format instances (a row, an object keyed by features, or one keyed by inputs) as input tensors.

        Raises:
            InputError: 422 naming the instance (numbered from 1) and what is wrong with it.
        """
        rows_parser, features = served.rows, served.features
        names = [s["name"] for s in specs]
        per_input: dict[str, list] = {n: [] for n in names}
        for i, inst in enumerate(instances, start=1):  # messages number instances from 1, as rows
            if isinstance(inst, dict) and rows_parser is not None and not set(names) & set(inst):
                row = rows_parser.row(inst, f"instance {i}: ")  # keyed by feature names
                for f, v in zip(features, row):
                    per_input.setdefault(f["input"], [])
                for spec in specs:
                    vec = [0.0] * int(spec["shape"][-1])
                    for f, v in zip(features, row):
                        if f["input"] == spec["name"]:
                            vec[f["index"]] = v
                    per_input[spec["name"]].append(vec)
            elif isinstance(inst, dict):
                for n in names:
                    if n not in inst:
                        raise InputError(422, f"instance {i}: input {n!r} is missing; the model takes {names}")
                    per_input[n].append(inst[n])
            else:
                if len(names) != 1:
                    raise InputError(422, f"instance {i}: must be an object keyed by {names}")
                if rows_parser is not None and isinstance(inst, list):
                    rows_parser.row(inst, f"instance {i}: ")  # names the features on a bad count or value
                per_input[names[0]].append(inst)
        return {s["name"]: check_tensor(per_input[s["name"]], s["name"], s["shape"], "float64", s["dtype"]) for s in specs}

    async def status(self, request: Request) -> Answer:
        """TF Serving's ``model_version_status`` from the repository (one version when the path names one)."""
        ref: ModelRef = request.params["model"]
        repo = self.app.repo
        body = repo.status(ref.name)  # NotServed 404 for an unknown model
        number = ref.number()
        if ref.label is not None:
            number = repo.resolve(ref.name, label=ref.label).number
        if number is not None:
            entries = [e for e in body["model_version_status"] if e["version"] == str(number)]
            if not entries:
                raise NotServed(404, f"version {number} of model {ref.name!r} not found")
            body = {"model_version_status": entries}
        return 200, JSON_TYPE, json_bytes(body), []

    async def metadata(self, request: Request) -> Answer:
        ref: ModelRef = request.params["model"]
        self.check_model(ref)
        version = self.app.repo.resolve(ref.name, ref.number(), ref.label)
        p = version.predictor

        def spec(t: dict, tensor_name: str) -> dict:
            return {"dtype": "DT_" + _DTYPES[t["dtype"]],
                    "tensor_shape": {"dim": [{"size": str(-1 if d is None else d), "name": ""} for d in t["shape"]],
                                     "unknown_rank": False},
                    "name": tensor_name}

        io = p.artifact.get("io") or {}
        manifest = p.manifest
        signature = {
            "inputs": {t["name"]: spec(t, (io.get("inputs") or {}).get(t["name"], t["name"])) for t in manifest["inputs"]},
            "outputs": {t["key"]: spec(t, (io.get("outputs") or {}).get(t["key"], t["key"])) for t in manifest["outputs"]},
            "method_name": "tensorflow/serving/predict",
        }
        body = {"model_spec": {"name": ref.name, "signature_name": "", "version": str(version.number)},
                "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}}}
        return 200, JSON_TYPE, json_bytes(body), []

    def index_paths(self) -> list[str]:
        """The model's TF Serving paths, as ``GET /`` lists them."""
        name = self.app.name
        return [f"{PREFIX}{name}", f"{PREFIX}{name}:predict", f"{PREFIX}{name}/metadata"]
