"""The parity engine's TFLite worker: ``python -m edge.parity_worker BUNDLE --runtime NAME``.

Runs inside a runtime environment that holds no TensorFlow, and loads artifacts exactly as a device
does (``edge.runner.Predictor``: manifest validation, sha256, runtime check, signature check, then the
artifact's ``input_transform``). JSON lines on stdin/stdout:

* on start: ``{"ready": true, "runtime": name, "version": v}`` or ``{"error": "..."}`` (then exit 1);
* ``{"reset": true}`` forgets every loaded bundle (a new verify run) -> ``{"ok": true}``;
* request ``{"artifact": relpath, "inputs": {name: nested lists}, "bundle": path (optional)}`` ->
  ``{"outputs": {key: nested lists}, "runtime": name, "version": v}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

import numpy as np

from edge.errors import EdgeError


def _reply(out: TextIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def serve(bundle_dir: str | None, runtime: str | None, inp: TextIO, out: TextIO) -> int:
    """Answer requests until stdin closes; return the exit status.

    A request may name another bundle (``"bundle"``), so one worker serves a whole parity run.
    """
    from edge.bundle import Bundle
    from edge.interpreter import pick
    from edge.runner import Predictor

    try:
        picked = pick(runtime)
        bundles: dict[str, Bundle] = {}
        if bundle_dir:
            bundles[bundle_dir] = Bundle.open(bundle_dir)
    except EdgeError as exc:
        _reply(out, {"error": str(exc)})
        return 1
    _reply(out, {"ready": True, "runtime": picked.name, "version": picked.version})
    predictors: dict[tuple[str, str], Predictor] = {}
    for line in inp:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if request.get("reset"):
                bundles.clear()
                predictors.clear()
                _reply(out, {"ok": True})
                continue
            relpath = request["artifact"]
            where = request.get("bundle") or bundle_dir
            if not where:
                raise EdgeError("the request names no bundle")
            bundle = bundles.get(where)
            if bundle is None:
                bundle = bundles[where] = Bundle.open(where)
            predictor = predictors.get((where, relpath))
            if predictor is None:
                artifact = next((a for a in bundle.tflite_artifacts() if a["path"] == relpath), None)
                if artifact is None:
                    raise EdgeError(f"the manifest lists no TFLite artifact {relpath!r}")
                predictor = Predictor(bundle, variant=artifact["variant"], runtime=picked.name, allow_rejected=True)
                predictors[(where, relpath)] = predictor
            inputs = {name: np.asarray(value) for name, value in request["inputs"].items()}
            outputs = predictor.predict(inputs)
            _reply(out, {"outputs": {k: np.asarray(v, dtype=np.float64).tolist() for k, v in outputs.items()},
                         "runtime": picked.name, "version": picked.version})
        except EdgeError as exc:
            _reply(out, {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - reported to the engine as one line
            _reply(out, {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.parity_worker")
    parser.add_argument("bundle", nargs="?", default=None)
    parser.add_argument("--runtime", default=None, help="ai_edge_litert or tflite_runtime")
    args = parser.parse_args(argv)
    # Replies go to the original stdout; anything native code prints there is sent to stderr instead.
    sys.stdout.flush()
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return serve(args.bundle, args.runtime, sys.stdin, replies)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
