"""The ground truth's routes: ``POST /v1/models/NAME/feedback`` (joined to earlier predictions by id, the
model's ``edge.feedback.FeedbackStore``), ``GET /feedback`` (the online metrics per model, version and
window), and ``GET /v1/repository`` (the repository as the server sees it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.inputs import parse_json
from edge.server.messages import JSON_TYPE, Answer, Reply, Request, json_bytes, read_body

if TYPE_CHECKING:  # pragma: no cover
    from edge.server.app import EdgeApp


class Feedback:
    """The feedback and repository handlers over an ``EdgeApp``."""

    def __init__(self, app: "EdgeApp") -> None:
        self.app = app

    async def feedback(self, request: Request) -> Answer:
        """``POST /v1/models/NAME/feedback``: ``{"id", "truth"}`` or a list of them, joined to the predictions.
        One item answers its own status (200 joined or duplicate, 404 unknown or expired, 409 another truth,
        422 invalid); a list answers 200 with each item's result.

        Raises:
            InputError: a body of another shape; NotServed: an unknown model; Reply: as ``read_body``.
        """
        app = self.app
        ref = request.params["model"]
        if ref.version is not None or ref.label is not None:
            raise Reply(404, f"feedback is per model, not per version or label: POST to /v1/models/{ref.name[:100]}/feedback")
        served = app.served(ref.name)
        data = parse_json(await read_body(request, (JSON_TYPE,), app.config.max_body))
        results = served.dispatcher.store().join_body(data)
        if isinstance(data, list):
            return 200, JSON_TYPE, json_bytes({"success": True, "results": [r.as_dict() for r in results]}), []
        r = results[0]
        if r.status != 200:
            return r.status, JSON_TYPE, json_bytes({"success": False, "error": r.message, "id": r.id,
                                                    "outcome": r.outcome}), []
        return 200, JSON_TYPE, json_bytes({"success": True, "id": r.id, "outcome": r.outcome,
                                           **({"message": r.message} if r.message else {})}), []

    async def metrics(self, request: Request) -> Answer:
        """``GET /feedback``: per model and version, the online metrics over each window and since the start."""
        body = {name: {str(v): per for v, per in m.dispatcher.feedback.metrics().items()}
                for name, m in sorted(self.app._served.items()) if m.dispatcher.feedback is not None}
        return 200, JSON_TYPE, json_bytes({"models": body}), []

    async def repository(self, request: Request) -> Answer:
        """``GET /v1/repository``: the repository as the server sees it (``deploykit-edge status``)."""
        return 200, JSON_TYPE, json_bytes(self.app.repo.describe()), []
