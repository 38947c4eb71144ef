"""The HTML pages: ``GET /form`` (one number field per feature) and ``POST /predict_form`` (the result
page; its errors are pages too, see ``Route.error_page``)."""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import numpy as np

from edge.inputs import InputError
from edge.server.messages import HTML_TYPE, Answer, Request, outcome_headers, read_body

if TYPE_CHECKING:  # pragma: no cover
    from edge.server.app import EdgeApp

FORM_TYPE = b"application/x-www-form-urlencoded"


def page(title: str, inner: str) -> str:
    """A whole HTML page (``title`` and ``inner`` already escaped)."""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
            f"<body><h1>{title}</h1>{inner}</body></html>")


class Forms:
    """The form and result pages of an ``EdgeApp``'s model."""

    def __init__(self, app: "EdgeApp") -> None:
        self.app = app

    async def form(self, request: Request) -> Answer:
        fields = []
        for f in self.app.features:
            label = html.escape(f.get("label") or f["name"]) + (f" ({html.escape(f['unit'])})" if f.get("unit") else "")
            fields.append(
                f'<p><label>{label}<br><input name="{html.escape(f["name"])}" type="number" step="any" required '
                f'value="{f["median"]:g}"></label> <small>training range {f["min"]:g} to {f["max"]:g}</small></p>'
            )
        body = page(f"{html.escape(self.app.name)}: predict",
                    f'<form method="post" action="/predict_form">{"".join(fields)}<p><button type="submit">Predict</button></p></form>')
        return 200, HTML_TYPE, body.encode(), []

    async def predict_form(self, request: Request) -> Answer:
        """Raises: InputError: 400 for a malformed form body, 422 for a value that is not a number (or the
        row checks' message); Reply: as ``read_body``."""
        app = self.app
        body = await read_body(request, (FORM_TYPE,), app.config.max_body)
        if app.rows is None:
            raise InputError(422, "this model has no tabular features")
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=len(app.features) + 20)
        except (UnicodeDecodeError, ValueError):
            raise InputError(400, "malformed form body") from None
        values: dict[str, Any] = {}
        for name in app.feature_names:
            if name not in form:
                continue
            text = form[name][0].strip()
            try:
                values[name] = float(text)
            except ValueError:
                raise InputError(422, f"{name} must be a number, got {text[:40]!r}; {app.rows.expected}") from None
        x = np.asarray([app.rows.row(values)], dtype=np.float64)
        y, outcome = await app.predict_rows(x, request.log_rows, app.sticky_key(request, app.default))
        return 200, HTML_TYPE, self.result_page(app.value(y[0]), ""), outcome_headers(outcome)

    def result_page(self, prediction: Any, error: str) -> bytes:
        if error:
            inner = f'<p class="error">Error: {html.escape(error)}</p>'
        else:
            out = self.app.p.manifest["outputs"][0]
            inner = f"<p>Predicted {html.escape(out['name'])}: <strong>{html.escape(json.dumps(prediction))}</strong></p>"
        return page(f"{html.escape(self.app.name)}: result", inner + '<p><a href="/form">Back to the form</a></p>').encode()

    def error_page(self, error: str) -> bytes:
        """The result page for an error (``Route.error_page`` of ``/predict_form``)."""
        return self.result_page(None, error)
