"""Image classification over HTTP: ``POST /v1/models/NAME:classify``, and TF Serving's ``{"b64": ...}``.

``:classify`` takes either

* the image itself as the body, ``Content-Type: image/jpeg`` or ``image/png`` (one image), or
* JSON, TF Serving's row format with binary values: ``{"instances": [{"b64": "..."}, ...]}`` (or
  ``[{"INPUT": {"b64": "..."}}]``),

and answers the top ``k`` classes of each image (``?k=N``, default 5), with the manifest's labels:
``{"model": NAME, "predictions": [{"top_k": [{"index": 3, "label": "cat", "score": 0.91}, ...]}]}``.
``score`` is the model's output value (a probability for a softmax classifier); ``label`` is null when the
bundle has no labels (``deploykit convert --labels FILE``).

The image is decoded, resized and scaled by ``edge.images`` (the page does the same in
``web/src/image.js``); decoding runs where predictions run, in the same call (``EdgeApp.predict_inputs``
takes a function that makes the inputs). A server whose default model takes an image has an inference
thread (``Images.offloads``): a lone upload of one small picture is decoded and predicted on the event loop
(no hand-off), one that arrives while others are in flight, a batch of b64 images or a body over
``INLINE_DECODE_BYTES`` on the thread (``edge.server.inference``). Without the thread (the default model is
fast and takes no image), a small body is decoded on the event loop, a bigger one on a thread of its own
first. The body
limit is the server's ``--max-body``; an image over ``edge.images.MAX_PIXELS`` is refused from its header.
``:predict`` accepts ``{"b64": ...}`` for an image input too (``b64_decoder``) and answers as TF Serving.

With ``--log-dir``, each image is a prediction-log row like any prediction's, but its ``inputs`` cell is a
summary of the image (``{"image": "PNG", "width", "height", "bytes", "sha256"}``, worked out from the data)
instead of its pixels, and ``prediction`` is the top k (``:classify``) or the output row (``:predict``).
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import parse_qs

import numpy as np

from edge import images
from edge.inputs import InputError, parse_json, whole_number
from edge.server.messages import JSON_TYPE, Answer, Request, json_bytes, json_float, outcome_headers, read_body

if TYPE_CHECKING:  # pragma: no cover
    from edge.server.app import EdgeApp
    from edge.server.served import ServedModel

MAX_K = 1000
#: a body up to this size may be decoded on the event loop with its prediction: a 96x96 JPEG (4 KB) decodes in
#: ~0.2 ms; a bigger one (a 640x480 JPEG, 109 KB: ~8 ms) never is (the inference thread, or a thread of its own)
INLINE_DECODE_BYTES = 32 * 1024


def _k(request: Request, classes: int) -> int:
    """``?k=N`` (default ``DEFAULT_TOP_K``), at most the number of classes.

    Raises:
        InputError: 422 when k is not a whole number from 1 to ``MAX_K``.
    """
    raw = request.scope.get("query_string", b"")
    if not raw:
        return min(images.DEFAULT_TOP_K, classes)
    query = parse_qs(raw.decode("latin-1"))
    if "k" not in query:
        return min(images.DEFAULT_TOP_K, classes)
    text = query["k"][-1]
    k = whole_number(text, 1, MAX_K)
    if k is None:
        raise InputError(422, f"k={text[:20]!r} is not a whole number from 1 to {MAX_K}")
    return min(k, classes)


Decoded = tuple[dict[str, np.ndarray], list[Optional[dict[str, Any]]]]


def b64_decoder(manifest: dict[str, Any], instances: list, specs: list[dict],
                summarise: bool = False) -> Optional[Callable[[], Decoded]]:
    """For row-format ``instances`` whose image input is ``{"b64": ...}``: a function that decodes them
    (base64, then the image) into the input tensors, with each image's summary for the prediction log
    (``edge.images.load``; None each unless ``summarise``), to be run where predictions run
    (``EdgeApp.predict_inputs``); None when no instance has a ``{"b64": ...}`` value (the caller's ordinary
    parsing goes on). Only the cheap checks run here.

    Raises:
        InputError: 422 when the model does not take one image. The function raises InputError for an
            instance that is not an image or holds bad data, naming the instance (numbered from 1).
    """
    image_specs = {i.name: i for i in images.image_inputs(manifest)}
    names = [s["name"] for s in specs]

    def value_of(inst: Any, name: str) -> Any:
        return inst if len(names) == 1 and images.is_b64(inst) else inst.get(name) if isinstance(inst, dict) else None

    if not image_specs or not any(images.is_b64(value_of(inst, n)) for inst in instances for n in image_specs):
        return None
    if len(names) != 1 or names[0] not in image_specs:
        raise InputError(422, f"b64 images are taken for a model whose one input is an image; this model takes {names}")
    spec = image_specs[names[0]]

    def decode() -> Decoded:
        rows = [images.from_b64(value_of(inst, spec.name), spec, f"instance {i}: ", summarise=summarise)
                for i, inst in enumerate(instances, start=1)]
        return {spec.name: np.concatenate([t for t, _ in rows], axis=0)}, [s for _, s in rows]
    return decode


def log_images(app: "EdgeApp", request: Request, summaries: list[Optional[dict[str, Any]]], answers: list[Any],
               outcome: Any, served: "ServedModel") -> None:
    """The prediction-log rows of image predictions (``--log-dir`` only): each image's summary
    (``edge.images.load``: format, size, bytes, sha256; never the pixels) in the ``inputs`` column and the
    answer (the top k, or the output row for ``:predict``) in ``prediction``, as JSON; the rest as every
    prediction's row (``EdgeApp.log_outcome``). Every cell goes through ``edge.logs.neutralise``."""
    if app.logs is not None:
        app.log_outcome(request.log_rows, [_Summary(s) for s in summaries], answers, outcome, served)


class _Summary(dict):
    """An image's summary as ``EdgeApp.log_outcome`` takes a non-tabular row: ``np.asarray(row).tolist()``
    of a 0-d object array is the dict itself, so the cell is its JSON."""


class _Model:
    """What ``:classify`` reads of one served model's manifest, worked out once per manifest: the image input
    (or the refusal), the first output's key, labels and classes, and the JSON text of the name and of each
    label (``json_bytes`` would write the same)."""

    def __init__(self, served: "ServedModel") -> None:
        self.manifest = served.manifest
        try:
            self.spec: Optional[images.ImageInput] = Images._spec(served)
            self.refusal: Optional[InputError] = None
        except InputError as exc:
            self.spec, self.refusal = None, exc
        output = self.manifest["outputs"][0]
        self.key, self.labels = output["key"], output.get("labels")
        self.classes = int(output["shape"][-1] or 1)
        self.served_name = served.name
        self.name = json_bytes(served.name)
        self.label_json = [json_bytes(label) for label in self.labels] if self.labels else None

    def answer(self, version: int, ids: list[str], predictions: list[list[dict[str, Any]]]) -> bytes:
        """``json_bytes({"model", "model_version", "ids", "predictions": [{"top_k": ...}]})``, written from
        the cached texts (each score as ``json_float``, the text ``json.dumps`` writes); ``json_bytes``
        itself for a score that is not finite (it refuses it)."""
        labels = self.label_json
        rows = []
        for top in predictions:
            items = []
            for item in top:
                score = item["score"]
                if not math.isfinite(score):
                    return json_bytes({"model": self.served_name, "model_version": version, "ids": ids,
                                       "predictions": [{"top_k": t} for t in predictions]})
                items.append(b'{"index":%d,"label":%s,"score":%s}' % (
                    item["index"], labels[item["index"]] if labels else b"null", json_float(score)))
            rows.append(b'{"top_k":[%s]}' % b",".join(items))
        return b'{"model":%s,"model_version":%d,"ids":%s,"predictions":[%s]}' % (
            self.name, version, json_bytes(ids), b",".join(rows))


class Images:
    """The ``:classify`` handler over an ``EdgeApp``."""

    def __init__(self, app: "EdgeApp") -> None:
        self.app = app
        self._models: dict[str, _Model] = {}

    def _model(self, served: "ServedModel") -> _Model:
        """``_Model`` of ``served`` (made again when its manifest is another object: a new default version)."""
        model = self._models.get(served.name)
        if model is None or model.manifest is not served.manifest:
            model = self._models[served.name] = _Model(served)
        return model

    @staticmethod
    def _spec(served: "ServedModel") -> images.ImageInput:
        """Raises: InputError: 422 when the model's one input is not an image with a known pixel range."""
        manifest = served.manifest
        found = images.image_inputs(manifest)
        names = [s["name"] for s in manifest["inputs"]]
        if len(names) != 1 or not found:
            raise InputError(422, f"model {served.name!r} does not take one image (its inputs: {names}); "
                                  f"POST JSON to /v1/models/{served.name}:predict")
        found[0].check_scaled()
        return found[0]

    async def classify(self, request: Request) -> Answer:
        """Raises: Reply, InputError: as the module's docstring says (415, 413, 400, 422)."""
        app = self.app
        ref = request.params["model"]
        served = app.tfs.check_model(ref)
        model = self._model(served)
        if model.spec is None:
            assert model.refusal is not None
            raise InputError(model.refusal.status, str(model.refusal))
        spec, key, labels = model.spec, model.key, model.labels
        k = _k(request, model.classes)
        body = await read_body(request, (*images.IMAGE_TYPES, JSON_TYPE), app.config.max_body)
        summarise = app.logs is not None
        ctype = request.headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        summaries: list[Optional[dict[str, Any]]] = []

        b64: Optional[Callable[[], Decoded]] = None
        count = 1  # images in the request
        if ctype == JSON_TYPE:
            data = parse_json(body)
            instances = data.get("instances") if isinstance(data, dict) else None
            if not isinstance(instances, list) or not instances:
                raise InputError(422, 'the JSON body must be {"instances": [{"b64": "<base64 of a JPEG or PNG>"}, ...]}')
            if len(instances) > app.config.max_batch:
                raise InputError(413, f"batch of {len(instances)} instances is over the limit of {app.config.max_batch}")
            b64 = b64_decoder(served.manifest, instances, served.manifest["inputs"], summarise)
            count = len(instances)
            if b64 is None:
                raise InputError(422, 'instances must be images: {"b64": "<base64 of a JPEG or PNG>"}')

        def decode() -> dict[str, np.ndarray]:
            """Runs where the prediction runs, just before it (``EdgeApp.predict_inputs``: one hop)."""
            if b64 is not None:
                inputs, found = b64()
                summaries.extend(found)
                return inputs
            tensor, summary = images.load(body, spec, summarise)
            summaries.append(summary)
            return {spec.name: tensor}

        feed: Any = decode
        big = len(body) > INLINE_DECODE_BYTES  # a big picture: never decoded on the event loop
        if big and app.inline:
            feed = await asyncio.to_thread(decode)
        heavy = big or count > 1  # more than one prediction's work
        outputs, outcome = await app.predict_inputs(feed, None, served, version=ref.number(),  # logged below
                                                    label=ref.label, key=app.sticky_key(request, served), heavy=heavy)
        scores = np.asarray(outputs[key], dtype=np.float64)
        scores = scores.reshape(scores.shape[0], -1)
        tops = [images.top_k(row, labels, k) for row in scores]
        log_images(app, request, summaries, tops, outcome, served)
        return 200, JSON_TYPE, model.answer(outcome.version, outcome.ids, tops), outcome_headers(outcome)

    def offloads(self) -> bool:
        """Whether the app's default model takes an image: then it has an inference thread whatever one
        prediction costs (``EdgeApp.startup``), so that ``/healthz`` answers while uploads are decoded and
        predicted; a lone small upload still runs on the event loop (``edge.server.inference``). Without
        it, which side of the 2 ms threshold a sub-millisecond image model lands on depends on the load at
        start-up."""
        return bool(images.image_inputs(self.app.default.manifest))

    def describe(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``doc`` (the OpenAPI document) with ``:classify`` added when the model takes one image."""
        try:
            self._spec(self.app.default)
        except InputError:
            return doc
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        statuses = {"400": "not a JPEG or PNG, truncated, or not base64", "404": "no such model or version",
                    "413": f"body over {self.app.config.max_body} bytes or image over {images.MAX_PIXELS} pixels",
                    "415": "not image/jpeg, image/png or application/json", "422": "bad k, or instances that are not images",
                    "503": "busy or not ready"}
        top = {"type": "object", "properties": {"index": {"type": "integer"}, "label": {"type": ["string", "null"]},
                                                "score": {"type": "number"}}}
        ok = {"type": "object", "properties": {"model": {"type": "string"}, "predictions": {"type": "array", "items": {
            "type": "object", "properties": {"top_k": {"type": "array", "items": top}}}}}}
        b64 = {"type": "object", "required": ["instances"], "properties": {"instances": {"type": "array", "minItems": 1, "items": {
            "type": "object", "properties": {"b64": {"type": "string", "contentEncoding": "base64"}}}}}}
        binary = {"type": "string", "format": "binary"}
        doc["paths"][f"/v1/models/{self.app.name}:classify"] = {"post": {
            "summary": "Classify images: the top k classes with their labels (?k=N, default 5).",
            "parameters": [{"name": "k", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_K}}],
            "requestBody": {"required": True, "content": {"image/jpeg": {"schema": binary}, "image/png": {"schema": binary},
                                                          "application/json": {"schema": b64}}},
            "responses": {"200": {"description": "top k per image", "content": {"application/json": {"schema": ok}}},
                          **{code: {"description": text, "content": error} for code, text in statuses.items()}}}}
        return doc
