"""The OpenAPI 3.1 description of the server's routes for a bundle (``GET /openapi.json``), made from the route
table (``edge.server.app.routes``): each ``Route`` names its summary, its request body and its answers, and
this module's catalog (:func:`catalog`) holds what those names stand for: every status each route can answer,
with its body, the HTTP layer's own refusals (``edge.http_protocol``) included. A route cannot be in the table
without being in the document: the router refuses a route without a summary, and a name the catalog lacks
fails the document. The one exception is in :data:`DOCUMENTED_BY`. schemathesis drives the server from the
document in the tests.

In a path, the served model's name stands for the ``{model}`` / ``{name}`` parameter (the document describes
one model's routes); any other parameter (``{version}``) stays a path parameter.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Sequence

from edge import __version__
from edge.inputs import FLOAT32_MAX
from edge.server.messages import JSON_TYPE, Answer, Request, json_bytes

if TYPE_CHECKING:  # pragma: no cover
    from edge.runner import Predictor
    from edge.server.config import ServeConfig
    from edge.server.routing import Handler, Route

# Answers documented by the route's own module, only where the route applies to the served model.
DOCUMENTED_BY = {"classify": "edge.server.images.Images.describe (a model that takes one image)"}
MODEL_PARAMETERS = ("model", "name")  # the parameters the served model's name stands for
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z_][A-Za-z0-9_]*)?\}")
_PATH_PARAMETER = {"type": "string", "pattern": "^[0-9]{1,9}$"}  # {version}: a version number


def _tensor_schema(spec: dict[str, Any], max_batch: int) -> dict[str, Any]:
    """JSON schema of one input tensor (batch dimension first) as TF Serving's columnar ``inputs`` take it."""
    dtype = spec["dtype"]
    if dtype == "bool":
        leaf: dict[str, Any] = {"type": "boolean"}
    elif dtype in ("int8", "uint8", "int16", "int32", "int64"):
        bits = int(dtype.lstrip("uint"))
        lo, hi = (0, 2**bits - 1) if dtype.startswith("u") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        leaf = {"type": "integer", "minimum": lo, "maximum": hi}
    else:
        leaf = {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}
    schema = leaf
    dims = list(spec["shape"])
    for i, d in enumerate(reversed(dims)):
        batch = i == len(dims) - 1
        schema = {"type": "array", "items": schema, "minItems": 1 if d is None else int(d),
                  **({"maxItems": max_batch} if batch else {} if d is None else {"maxItems": int(d)})}
    return schema


def catalog(predictor: "Predictor", config: "ServeConfig", name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the routes' names stand for: (request bodies by ``Route.request``, answers by ``Route.response``)."""
    features = predictor.manifest.get("features") or []
    specs = predictor.manifest["inputs"]
    number = {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}
    row = {"type": "array", "items": number, "minItems": len(features), "maxItems": len(features),
           "description": "values in this order: " + ", ".join(f["name"] for f in features)}
    obj = {"type": "object", "required": [f["name"] for f in features],
           "properties": {f["name"]: {**number, "description": f.get("label", "")} for f in features}}
    form = {"type": "object", "required": [f["name"] for f in features], "maxProperties": len(features) + 20,
            "properties": {f["name"]: {"type": "string", "pattern": r"^[-+]?(\d{1,30}(\.\d{0,30})?|\.\d{1,30})$"}
                           for f in features}}
    ref = {"$ref": "#/components/schemas/Error"}
    json_error = {"application/json": {"schema": ref}}
    html = {"text/html": {"schema": {"type": "string"}}}

    def errors(statuses: list[tuple[int, str]], content: dict = json_error) -> dict[str, Any]:
        return {str(s): {"description": d, "content": content} for s, d in statuses}

    http_layer = [(400, "malformed HTTP request"), (408, "headers or body not received in time"),
                  (431, "request line and headers too large"), (503, "too many connections, or shutting down")]
    with_body = http_layer + [(413, f"body over {config.max_body} bytes (Content-Length or Expect: 100-continue)"),
                              (417, "an Expect other than 100-continue")]
    predict_errors = with_body + [
        (400, "malformed JSON or body"), (413, f"body over {config.max_body} bytes or batch over {config.max_batch} rows"),
        (415, "wrong content type"), (422, "wrong count, type or non-finite values"), (500, "internal error"),
        (503, "busy: too many requests in flight, too many connections, shutting down, or not ready (the self-test "
              "failed, see /readyz)")]

    def answers(schema: dict | None = None, ctype: str = "application/json",
                more: list[tuple[int, str]] | None = None, more_content: dict | None = None) -> dict:
        return {"200": {"description": "OK", "content": {ctype: {"schema": schema or {}}}},
                **errors(http_layer), **errors(more or [], more_content or json_error)}

    ok = {"type": "object", "required": ["success"], "properties": {"success": {"const": True}}}
    prediction_ok = {"oneOf": [
        {**ok, "required": ["success", "prediction"], "properties": {"success": {"const": True}, "prediction": {}}},
        {**ok, "required": ["success", "predictions"], "properties": {"success": {"const": True},
                                                                      "predictions": {"type": "array"}}}]}
    tensors = {s["name"]: _tensor_schema(s, config.max_batch) for s in specs}
    if features:
        keyed = {"type": "object", "required": [s["name"] for s in specs],
                 "properties": {s["name"]: tensors[s["name"]]["items"] for s in specs}}
        # an object naming an input is taken as keyed by inputs, so the by-feature object names none
        by_feature = {**obj, "not": {"anyOf": [{"required": [s["name"]]} for s in specs]}}
        instance = {"oneOf": [row, by_feature, keyed]} if len(specs) == 1 else {"oneOf": [by_feature, keyed]}
    else:
        keyed = {"type": "object", "required": [s["name"] for s in specs],
                 "properties": {s["name"]: tensors[s["name"]]["items"] for s in specs}}
        instance = tensors[specs[0]["name"]]["items"] if len(specs) == 1 else keyed
    columns = {"type": "object", "required": [s["name"] for s in specs], "properties": tensors}
    if len(specs) == 1:
        columns = {"oneOf": [tensors[specs[0]["name"]], columns]}
    signature = {"type": "string", "const": "serving_default"}
    tfs_body = {"oneOf": [  # exactly one of "instances" and "inputs"; other keys are ignored
        {"type": "object", "required": ["instances"], "not": {"required": ["inputs"]},
         "properties": {"instances": {"type": "array", "items": instance, "minItems": 1, "maxItems": config.max_batch},
                        "signature_name": signature}},
        {"type": "object", "required": ["inputs"], "not": {"required": ["instances"]},
         "properties": {"inputs": columns, "signature_name": signature}}]}
    tfs_ok = {"type": "object", "properties": {"predictions": {"type": "array"}, "outputs": {}}}
    not_found = [(404, "no such model, version or label"),
                 (503, "the version is not AVAILABLE (LOADING, UNLOADING, END), or busy")]
    oip_error = {"application/json": {"schema": {"anyOf": [{"$ref": "#/components/schemas/OipError"}, ref]}}}
    out0 = predictor.manifest["outputs"][0]
    width = int(out0["shape"][-1] or 1) if len(out0["shape"]) > 1 else 1
    if predictor.manifest["task"] == "classification":
        truth: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": (2 if width == 1 else width) - 1}
    else:
        big = {"type": "number", "minimum": -1.7e308, "maximum": 1.7e308}
        truth = {"oneOf": [big, {"type": "array", "items": big, "minItems": width, "maxItems": width}]}
    feedback_item = {"type": "object", "required": ["id", "truth"], "additionalProperties": False, "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 64}, "truth": truth}}
    from edge.oip import datatype_of

    def oip_input(spec: dict[str, Any]) -> dict[str, Any]:
        dims = list(spec["shape"])
        shape_items = [{"type": "integer", "minimum": 1, "maximum": config.max_batch} if i == 0 or d is None
                       else {"const": int(d)} for i, d in enumerate(dims)]
        leaf = _tensor_schema({**spec, "shape": [None]}, 10**9)["items"]
        return {"type": "object", "required": ["name", "shape", "datatype", "data"], "additionalProperties": False,
                "properties": {"name": {"const": spec["name"]}, "datatype": {"const": datatype_of(spec["dtype"])},
                               "shape": {"type": "array", "prefixItems": shape_items, "minItems": len(dims),
                                         "maxItems": len(dims)},
                               "data": {"type": "array", "items": leaf}}}

    keys = [o["key"] for o in predictor.manifest["outputs"]]
    infer_body = {"type": "object", "required": ["inputs"], "additionalProperties": False, "properties": {
        "id": {"type": "string"},
        "inputs": {"type": "array", "minItems": len(specs), "maxItems": len(specs),
                   "items": {"oneOf": [oip_input(s) for s in specs]} if len(specs) > 1 else oip_input(specs[0])},
        "outputs": {"type": "array", "maxItems": len(keys), "uniqueItems": True, "items": {
            "type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {"name": {"enum": keys}}}}}}
    with_oip = [(400, "a request the protocol refuses"), (404, "no such model or version"),
                (413, "body or batch over the limit"), (415, "wrong content type"),
                (422, "non-finite output"), (500, "internal error"), (503, "not ready or not AVAILABLE, or busy")]
    form_errors = errors(predict_errors, {**html, **json_error})  # the app's errors are pages, the HTTP layer's JSON
    requests = {
        "rows": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
            row, obj, {"type": "array", "minItems": 1, "maxItems": config.max_batch, "items": {"oneOf": [row, obj]}}]}}}},
        "form": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": form}}},
        "tfs": {"required": True, "content": {"application/json": {"schema": tfs_body}}},
        # a list's items each answer for themselves (a wrong one is "invalid" in the results)
        "feedback": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
            feedback_item, {"type": "array", "minItems": 1, "maxItems": 1000}]}}}},
        # the data's length must be the shape's product: JSON Schema cannot say it (edge_st_hooks.py)
        "oip_infer": {"required": True, "content": {"application/json": {"schema": infer_body}}},
    }
    responses = {
        "object": answers({"type": "object"}),
        "page": answers({"type": "string"}, "text/html"),
        "text": answers({"type": "string"}, "text/plain"),
        "alive": answers({"type": "object", "properties": {"status": {"const": "ok"}}}),
        "ready": answers({"type": "object"}, more=[(503, "not ready (the self-test failed), or the HTTP layer's 503")]),
        "prediction": {"200": {"description": "prediction", "content": {"application/json": {"schema": prediction_ok}}},
                       **errors(predict_errors)},
        "result_page": {"200": {"description": "result page", "content": html}, **form_errors},
        "tfs_predictions": {"200": {"description": "predictions",
                                    "content": {"application/json": {"schema": tfs_ok}}},
                            **errors(predict_errors + not_found)},
        "tfs_model": answers({"type": "object"}, more=not_found),
        "feedback": {"200": {"description": "joined, or a duplicate (counted once); a list: each item's result",
                             "content": {"application/json": {"schema": ok}}},
                     **errors(with_body + [(400, "malformed JSON"), (404, "unknown or expired id, or no such model"),
                                           (409, "the id was joined with another truth"),
                                           (413, "too many items"), (415, "wrong content type"),
                                           (422, "an item of the wrong shape or type"), (500, "internal error"),
                                           (503, "busy, or the model has no AVAILABLE version")])},
        "oip_ready": answers({"type": "object"}, more=[(503, "not ready")], more_content=oip_error),
        "oip_model": answers({"type": "object"}, more=not_found, more_content=oip_error),
        "oip_outputs": {"200": {"description": "outputs", "content": {"application/json": {"schema": {"type": "object"}}}},
                        **errors(with_body), **errors(with_oip, oip_error)},
    }
    return requests, responses


def _path(pattern: str, name: str) -> tuple[str, list[dict[str, Any]]]:
    """A route's pattern as a document path for model ``name``, and its remaining path parameters."""
    parameters: list[dict[str, Any]] = []

    def fill(m: re.Match[str]) -> str:
        if m.group(1) in MODEL_PARAMETERS:
            return name
        parameters.append({"name": m.group(1), "in": "path", "required": True, "schema": dict(_PATH_PARAMETER)})
        return "{" + m.group(1) + "}"

    return _PARAM.sub(fill, pattern), parameters


def openapi(predictor: "Predictor", config: "ServeConfig", name: str | None, table: Sequence["Route"]) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the routes of ``table`` for this bundle (served as model ``name``, by
    default the bundle's), one operation per route and method (HEAD goes with GET).

    Raises:
        KeyError: a route names a request or an answer the catalog lacks (a route without its documentation).
    """
    name = name or predictor.bundle.name
    requests, responses = catalog(predictor, config, name)
    paths: dict[str, dict[str, Any]] = {}
    for route in table:
        if route.response in DOCUMENTED_BY:
            continue
        path, parameters = _path(route.pattern, name)
        operation: dict[str, Any] = {"summary": route.summary}
        if parameters:
            operation["parameters"] = parameters
        if route.request is not None:
            operation["requestBody"] = requests[route.request]
        operation["responses"] = responses[route.response]
        for method in route.methods:
            if method != "HEAD":
                paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": f"deploykit-edge: {name}", "version": __version__,
                 "description": f"TFLite {predictor.variant} ({predictor.artifact['path']}) on {predictor.runtime.describe()}"},
        "paths": paths,
        "components": {"schemas": {"Error": {"type": "object", "required": ["success", "error"], "properties": {
            "success": {"const": False}, "error": {"type": "string"}}},
            "OipError": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}}},
    }


def handler(app: Any, table: Sequence["Route"]) -> "Handler":
    """``GET /openapi.json`` for ``app`` (an ``EdgeApp``): the document of ``table`` (with the routes whose own
    module documents them, :data:`DOCUMENTED_BY`), made once, on the first request."""
    made: list[bytes] = []

    async def document(request: Request) -> Answer:
        if not made:
            made.append(json_bytes(app.images.describe(openapi(app.p, app.config, app.name, table))))
        return 200, JSON_TYPE, made[0], []

    return document
