"""The page over the zoo (issue 11, items 3 and 4): every zoo model's bundle opened in headless Chromium as a
user opens it, on the backend the page chooses itself (no ``?backend=``).

Per model, one browser context: the page reaches "ready" with no page error, on the first of wasm, webgl,
cpu that passed ``deploykit verify`` (the manifest's parity record, read here independently of
web/src/backends.js); the form matches the manifest (one field per tabular feature, labelled; else the JSON
box; the picture panel for an image input); one prediction through the page's own controls (the fields
filled with golden row 0, the golden row pasted into the JSON box, or a PNG of that row given to the file
picker) answers what the reference says for it within the page artifact's tolerance (edge.tolerance, with
the output's scale over all golden rows, as ``verify`` measures it; for a picture, the reference is Keras
on the tensor the PNG makes, edge.images); a classifier shows the class the answer ranks first (and the
top-k for a picture). The numbers are read from ``window.deploykit.last()`` (the answer the page showed, in
full) and checked against the text shown.

Each case passes or has a measured outcome in PAGE_EXPECTED (as zoo_expected.EXPECTED); an entry that stops
happening fails ("now passes: drop the entry"). The bundles are the ones test_zoo.py made in the same session
(the session-wide ``zoo_built`` cache, tests/zoo/conftest.py); run alone, this module makes them. The page
in a bundle is the web/dist convert copied: `npm --prefix web run build` first.

Run: .venv/bin/python -m pytest tests/zoo/test_zoo_page.py            (the fast set)
     .venv/bin/python -m pytest tests/zoo/test_zoo_page.py -m zoo_full (the rest)
"""

from __future__ import annotations

import io
import json
import os
import queue
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

import zoo_models
from edge import images
from edge.tolerance import FLOAT32, judge_outputs
from tests.helpers import locked
from zoo_expected import Expect, assert_outcome

pytestmark = [pytest.mark.slow, pytest.mark.browser]

GRAPH = "web/model/graph/model.json"
BACKENDS = ("wasm", "webgl", "cpu")  # the page's order of preference (web/src/backends.js)
ROW = 0  # the golden row each page predicts
TOP_K = 5  # what the picture panel lists (web/src/image-ui.js)
TIMEOUT_MS = 180_000
# What each page did (how the row was given, the backend, the worst error, the outcome), rewritten after each case.
RECORD = Path(os.environ.get("ZOO_PAGE_REPORT") or Path(__file__).resolve().parents[2] / "test-artifacts" / "zoo_page.json")

# Measured non-pass outcomes of the page, by model. Kinds: ``miss`` (the page's answer for the golden row is
# outside the artifact's tolerance; number: its max error over the output's scale), ``error`` (the page did
# not reach ready, or refused the prediction; text: the message prefix it showed), ``convert-error`` (no bundle;
# text: convert's message prefix).
PAGE_EXPECTED: dict[str, Expect] = {}


def _cases() -> Iterator[Any]:
    for model in zoo_models.ALL:
        marks = [] if zoo_models.SET[model] == "fast" else [pytest.mark.zoo_full]
        yield pytest.param(model, marks=marks, id=model)


class PageThread:
    """One headless Chromium for the module, driven from its own thread: Playwright's sync API allows one
    instance per thread, and the zoo's parity runners (``verify``, when this module builds a model) hold the
    main thread's."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="zoo-page-chromium")
        self._thread.start()
        self.browser = self.call(self._launch)

    def _launch(self) -> Any:
        from playwright.sync_api import sync_playwright

        from convert.parity.browser import CHROMIUM_ARGS, find_chromium

        self._pw = sync_playwright().start()
        exe = find_chromium()
        return self._pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS) if exe else self._pw.chromium.launch(args=CHROMIUM_ARGS)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, done = job
            try:
                done.put((True, fn()))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                done.put((False, exc))

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the browser's thread; return its value or raise its exception here."""
        done: queue.Queue[Any] = queue.Queue()
        self._jobs.put((fn, done))
        ok, value = done.get()
        if not ok:
            raise value
        return value

    def close(self) -> None:
        def stop() -> None:
            self.browser.close()
            self._pw.stop()

        self.call(stop)
        self._jobs.put(None)
        self._thread.join(30)


@pytest.fixture(scope="module")
def chromium() -> Iterator[PageThread]:
    runner = PageThread()
    yield runner
    runner.close()


# --------------------------------------------------------------------------- what the page should do


def graph_artifact(manifest: dict[str, Any]) -> dict[str, Any] | None:
    return next((a for a in manifest.get("artifacts", []) if a.get("format") == "tfjs_graph" and a.get("status") != "rejected"), None)


def default_backend(manifest: dict[str, Any]) -> str | None:
    """The first of wasm, webgl, cpu on which verify passed the page's graph model; None when none did."""
    artifact = graph_artifact(manifest)
    results = (manifest.get("parity") or {}).get("results") or []
    passed = {r["runtime"].removeprefix("chromium-") for r in results
              if artifact and r.get("artifact") == artifact["path"] and str(r.get("runtime", "")).startswith("chromium-")
              and r.get("passed") is True and r.get("status", "passed") == "passed"}
    return next((b for b in BACKENDS if b in passed), None)


def usable_image(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The one image input a picture can fill (pixel scaling known), or None."""
    specs = images.image_inputs(manifest)
    if len(specs) == 1 and len(manifest["inputs"]) == 1 and specs[0].pixels is not None:
        return manifest["inputs"][0]
    return None


def png_of(row: np.ndarray, spec: Any) -> bytes:
    """A PNG at the model's size whose pixels map (edge.images's scaling) closest to ``row`` [h, w, c]."""
    from PIL import Image

    low, high = spec.pixels
    pixels = np.clip(np.rint((np.asarray(row, np.float64) - low) / (high - low) * 255), 0, 255).astype(np.uint8)
    if pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- the visit (browser thread)

OBSERVE_FORM = """() => {
  const shown = (id) => { const e = document.getElementById(id); return Boolean(e) && !e.hidden && e.offsetParent !== null; };
  const fields = [...document.querySelectorAll('#fields input')].map((i) => ({
    id: i.id, label: document.querySelector(`label[for="${i.id}"]`)?.textContent ?? null, visible: i.offsetParent !== null }));
  return { fields, json: shown('json-field'), predict: shown('predict-button'), imagePanel: Boolean(document.getElementById('image-panel')),
           picker: shown('image-file'), status: document.getElementById('load-status').textContent,
           fallback: document.getElementById('load-status').dataset.fallback ?? null, backend: window.deploykit.backend() };
}"""


def visit(browser: Any, url: str, action: dict[str, Any]) -> dict[str, Any]:
    """Open the page in a fresh context, note what it shows, make one prediction through its controls."""
    context = browser.new_context()
    errors: list[str] = []
    try:
        pg = context.new_page()
        pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
        pg.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(url)
        pg.wait_for_selector("body[data-state=ready], body[data-state=error]")
        seen: dict[str, Any] = {"errors": errors}
        if pg.get_attribute("body", "data-state") == "error":
            seen["load_error"] = pg.inner_text("#load-status")
            return seen
        seen["form"] = pg.evaluate(OBSERVE_FORM)
        if action["via"] == "fields":
            for field_id, text in action["values"]:
                pg.fill(f"#{field_id}", text)
            pg.click("#predict-button")
        elif action["via"] == "json":
            pg.fill("#json-input", action["text"])
            pg.click("#predict-button")
        else:
            pg.set_input_files("#image-file", action["file"])
        if action["via"] == "image":
            pg.wait_for_selector("body[data-images='1'], #image-msg.error")
            if pg.get_attribute("body", "data-images") != "1":
                seen["predict_error"] = pg.inner_text("#image-msg")
                return seen
            seen["top_k"] = pg.eval_on_selector_all(
                "#image-topk li", "lis => lis.map(li => ({index: Number(li.dataset.index), label: li.querySelector('.label').textContent}))")
            seen["preview"] = pg.get_attribute("#image-preview", "src") or ""
            seen["text"] = pg.inner_text("#image-answer") if pg.is_visible("#image-answer") else ""
        else:
            pg.wait_for_selector("#prediction[data-value], .msg.error:not(:empty), #load-status.alert")
            if not pg.get_attribute("#prediction", "data-value"):
                seen["predict_error"] = " | ".join(t for t in pg.eval_on_selector_all(
                    ".msg.error, #load-status.alert", "es => es.map(e => e.textContent)") if t)
                return seen
        if action["via"] != "image":
            seen["text"] = pg.inner_text("#prediction")
        seen["last"] = pg.evaluate("deploykit.last()")
        return seen
    finally:
        context.close()


# --------------------------------------------------------------------------- the case


def plan_action(zm: Any, golden: dict[str, Any], tmp: Path) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    """How a user gives golden row ROW to this page, and the reference for what they gave (None: golden's)."""
    manifest = zm.manifest
    features = manifest.get("features") or []
    if features:
        values = [(f"feature-{i}", repr(float(golden["inputs"][f["input"]][ROW][f["index"]]))) for i, f in enumerate(features)]
        return {"via": "fields", "values": values}, None
    image = usable_image(manifest)
    if image is None:
        text = json.dumps({inp["name"]: [golden["inputs"][inp["name"]][ROW]] for inp in manifest["inputs"]})
        return {"via": "json", "text": text}, None
    from convert.reference import load

    spec = images.image_inputs(manifest)[0]
    data = png_of(np.asarray(golden["inputs"][image["name"]][ROW]), spec)
    path = tmp / f"{zm.name}.png"
    path.write_bytes(data)
    reference = load(zm.model).predict({image["name"]: images.to_tensor(data, spec)})
    return {"via": "image", "file": str(path)}, {k: np.asarray(v)[0] for k, v in reference.items()}


def judge_row(manifest: dict[str, Any], golden: dict[str, Any], page: dict[str, Any],
              reference_row: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """edge.tolerance's verdict on row ROW, every other row the reference's own (so each output's scale is
    the one verify uses: max|ref| over all golden rows)."""
    artifact = graph_artifact(manifest)
    tolerance = artifact.get("tolerance") or FLOAT32
    reference, actual, twin = {}, {}, None
    twins = (golden.get("twins") or {}).get(artifact.get("variant", ""))
    for out in page["outputs"]:
        ref = np.asarray(golden["outputs"][out["key"]], dtype=np.float64)
        if reference_row is not None:
            ref[ROW] = np.asarray(reference_row[out["key"]], dtype=np.float64).reshape(ref[ROW].shape)
        got = ref.copy()
        assert list(out["shape"]) == [1, *ref.shape[1:]], f"{out['key']}: page shape {out['shape']}, reference {list(ref.shape)}"
        got[ROW] = np.asarray(out["data"], dtype=np.float64).reshape(ref[ROW].shape)
        reference[out["key"]], actual[out["key"]] = ref, got
    if twins is not None and tolerance["kind"] == "float16":
        twin = {k: np.asarray(v, dtype=np.float64) for k, v in twins.items()}
    return judge_outputs(manifest, tolerance, reference, actual, twin)


def record(model: str, **facts: Any) -> None:
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    with locked(RECORD.with_name(RECORD.name + ".lock")):  # the workers of `pytest -n` take turns
        data = json.loads(RECORD.read_text()) if RECORD.is_file() else {}
        data[model] = {**data.get(model, {}), **facts}
        tmp = RECORD.with_name(f"{RECORD.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, allow_nan=True))
        tmp.replace(RECORD)


def observe(zm: Any, chromium: PageThread, tmp: Path) -> tuple[str, str, float | None]:
    """What the page did for this model: ("pass", "", None), or (kind, message, number) as PAGE_EXPECTED."""
    if zm.bundle is None:  # no bundle, so no page (test_zoo.py asserts convert's message)
        return "convert-error", zm.convert_error, None
    from convert.serve_web import serve_in_thread

    manifest = json.loads((zm.bundle / "web" / "manifest.json").read_text())
    golden = json.loads((zm.bundle / "web" / "golden.json").read_text())
    action, reference_row = plan_action(zm, golden, tmp)
    server, url = serve_in_thread(zm.bundle / "web")
    try:
        seen = chromium.call(lambda: visit(chromium.browser, url, action))
    finally:
        server.shutdown()
        server.server_close()
    assert not seen["errors"], seen["errors"]
    if "load_error" in seen:
        return "error", seen["load_error"], None
    form = seen["form"]
    want = default_backend(manifest)
    record(zm.name, via=action["via"], backend=form["backend"], verify_default=want, status=form["status"])
    if want is not None:
        assert form["backend"] == want, f"the page runs on {form['backend']}, verify passed {want} first ({form['status']})"
        assert form["fallback"] == "false", form["status"]
    features = manifest.get("features") or []
    assert [(f["id"], f["label"], f["visible"]) for f in form["fields"]] == \
        [(f"feature-{i}", f.get("label") or f["name"], True) for i, f in enumerate(features)]
    image = images.image_inputs(manifest) if len(manifest["inputs"]) == 1 else []
    assert form["imagePanel"] == bool(image)
    assert form["picker"] == (action["via"] == "image")
    assert form["json"] == (action["via"] == "json")
    assert form["predict"] == (action["via"] != "image")
    if "predict_error" in seen:
        return "error", seen["predict_error"], None
    last = seen["last"]
    assert last and last["via"] == ("image" if action["via"] == "image" else "form"), last
    assert last["backend"] == form["backend"]
    check_shown(manifest, seen, last)
    verdict = judge_row(manifest, golden, last, reference_row)
    worst = max(m["max_scaled"] for m in verdict["outputs"].values())
    record(zm.name, max_scaled=worst, tolerance=graph_artifact(manifest).get("tolerance"), failures=verdict["failures"])
    if verdict["passed"]:
        return "pass", "", None
    return "miss", "; ".join(verdict["failures"]), worst


def check_shown(manifest: dict[str, Any], seen: dict[str, Any], last: dict[str, Any]) -> None:
    """The text (or top-k) the page shows says what deploykit.last() holds; a classifier names its top class."""
    classifier = manifest["task"] == "classification"
    outputs = {o["key"]: o for o in manifest["outputs"]}
    if seen.get("top_k"):
        scores = np.asarray(last["outputs"][0]["data"])
        order = [int(i) for i in np.argsort(-scores, kind="stable")[:TOP_K]]
        labels = outputs[last["outputs"][0]["key"]].get("labels")
        assert [t["index"] for t in seen["top_k"]] == order, (seen["top_k"], order)
        assert [t["label"] for t in seen["top_k"]] == [labels[i] if labels else f"class {i}" for i in order]
        assert seen["preview"].startswith("blob:") and not seen["text"]
        return
    if "preview" in seen:  # a picture whose answer is not class scores: the prediction line, beside it
        assert seen["preview"].startswith("blob:")
    for out in last["outputs"]:
        meta = outputs[out["key"]]
        data = out["data"]
        if classifier and len(out["shape"]) == 2 and out["shape"][1] > 1:  # class scores of one row
            k = int(np.argmax(data))
            label = meta["labels"][k] if meta.get("labels") else f"class {k}"
            assert f"{meta['name']}: {label} (" in seen["text"], (seen["text"], k)
        else:
            assert f"{meta['name']}: " in seen["text"], seen["text"]


@pytest.mark.parametrize("model", list(_cases()))
def test_zoo_page(zoo, chromium: PageThread, tmp_path: Path, model: str) -> None:
    kind, message, number = observe(zoo(model), chromium, tmp_path)
    record(model, outcome=kind, message=message, number=number)
    assert_outcome(PAGE_EXPECTED.get(model), kind, message, number)


def test_a_changed_answer_fails_the_row() -> None:
    """judge_row can fail: 2e-5 of the output's scale off on row 0 misses the float32 tolerance (1e-5)."""
    manifest = {"task": "regression", "artifacts": [{"format": "tfjs_graph", "path": GRAPH, "tolerance": FLOAT32}],
                "outputs": [{"name": "y", "key": "output_0", "range": [0.0, 10.0]}]}
    golden = {"outputs": {"output_0": [[1.0], [10.0]]}}
    near = {"outputs": [{"key": "output_0", "shape": [1, 1], "data": [1.0 + 5e-5]}]}
    off = {"outputs": [{"key": "output_0", "shape": [1, 1], "data": [1.0 + 2e-4]}]}
    assert judge_row(manifest, golden, near, None)["passed"]
    verdict = judge_row(manifest, golden, off, None)
    assert not verdict["passed"]
    assert verdict["failures"] == ["y: max error 2e-05 of the output's scale (max|ref|) > 1e-05"]
