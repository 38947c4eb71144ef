// deploykit's prediction page. Reads ./manifest.json (copied next to the page by `deploykit convert`),
// builds the form from it, runs the TFJS graph model in this browser and checks itself against golden.json.
// All URLs are relative to this module, so the page works under any sub-path of any static host.
import * as tf from './vendor/tfjs.js';
import { validateFeatures, parseJsonInputs, formatNumber } from './validate.js';
import { applyInputTransforms, rowToInputs, graphArtifact, pageRelativeUrl } from './preprocess.js';
import { judgeOutputs, formatG, describeTolerance, referenceNoise, FLOAT32 } from './tolerance.js';
import { executeGraph } from './execute.js';
import { bundleFile, fetchChecked, IntegrityError } from './integrity.js';
import { BACKEND_ORDER, backendPlan } from './backends.js';
import { mountImage, imageApi } from './image-ui.js';

const BACKENDS = BACKEND_ORDER;
// Imported on first use; index.html's import map pins each file's sha384 (build.mjs), so the browser
// refuses a changed one.
const LAZY_BACKENDS = {
  cpu: () => import('./vendor/backend-cpu.js'),
  webgl: () => import('./vendor/backend-webgl.js'),
};
const here = (rel) => new URL(rel, import.meta.url).href;
const pageFolder = here('./'); // BUNDLE/web/: every file the page uses is in it, listed in manifest.json
const $ = (id) => document.getElementById(id);

const state = {
  manifest: null,
  artifact: null,
  model: null,
  boot: {}, // what boot.js started (window.deploykitBoot)
  plan: null, // backendPlan(): the backends to try, in order, and the parity record's verdicts
  warmed: new Set(),
  last: null, // {values|tensors, outputs, backend, ms}
  shown: null, // the last answer the page showed, from the form or a picture: {via, outputs, backend}
  predictions: 0,
};

/**
 * Fetch and parse a JSON file next to the page; throws an Error that says what to do.
 * @param {string} rel path relative to the page
 * @param {Promise<Response>} [started] the same request already under way (boot.js)
 */
async function fetchJson(rel, started) {
  let res;
  try {
    res = await (started || fetch(here(rel)));
  } catch (e) {
    throw new Error(`Could not fetch ${rel}: ${e.message}.`);
  }
  if (!res.ok) {
    throw new Error(`Could not load ${rel} (HTTP ${res.status}). Serve the whole BUNDLE/web folder written by deploykit convert.`);
  }
  try {
    return await res.json();
  } catch (e) {
    throw new Error(`${rel} is not valid JSON: ${e.message}`);
  }
}

function setStatus(text, kind = '') {
  const el = $('load-status');
  el.textContent = text;
  el.className = `panel ${kind}`.trim();
  el.hidden = !text;
}

// ---------------------------------------------------------------------------------------------------
// Form

function fieldId(i) {
  return `feature-${i}`;
}

function buildForm(manifest) {
  const fields = $('fields');
  const features = manifest.features;
  if (Array.isArray(features) && features.length) {
    features.forEach((f, i) => {
      const id = fieldId(i);
      const wrap = document.createElement('div');
      wrap.className = 'field';
      const label = document.createElement('label');
      label.htmlFor = id;
      label.textContent = f.label || f.name;
      const input = document.createElement('input');
      Object.assign(input, { id, name: f.name, type: 'text', inputMode: 'decimal', autocomplete: 'off', required: true });
      input.spellcheck = false;
      if (typeof f.median === 'number') input.placeholder = formatNumber(f.median);
      input.setAttribute('aria-describedby', `${id}-hint ${id}-msg`);
      const hint = document.createElement('p');
      hint.className = 'hint';
      hint.id = `${id}-hint`;
      const parts = [];
      if (f.unit) parts.push(f.unit);
      if (typeof f.min === 'number' && typeof f.max === 'number') {
        parts.push(`training range ${formatNumber(f.min)} to ${formatNumber(f.max)}`);
      }
      if (typeof f.median === 'number') parts.push(`median ${formatNumber(f.median)}`);
      hint.textContent = parts.join(' · ');
      const msg = document.createElement('p');
      msg.className = 'msg';
      msg.id = `${id}-msg`;
      wrap.append(label, input, hint, msg);
      fields.append(wrap);
    });
  } else {
    fields.hidden = true;
    $('json-field').hidden = false;
    const example = {};
    for (const inp of manifest.inputs) example[inp.name] = zerosLike(inp.shape);
    $('json-input').placeholder = JSON.stringify(example);
    $('json-input-hint').textContent =
      'One nested array per model input: ' + manifest.inputs.map((i) => `${i.name} [${i.shape.map((d) => d ?? 'n')}]`).join(', ');
  }
}

function zerosLike(shape) {
  const dims = shape.map((d) => (d === null ? 1 : d));
  const make = (k) => (k === dims.length ? 0 : Array.from({ length: dims[k] }, () => make(k + 1)));
  return make(0);
}

function setFieldMessage(input, msgEl, text, kind) {
  msgEl.textContent = text || '';
  msgEl.className = `msg ${text ? kind : ''}`.trim();
  input.setAttribute('aria-invalid', kind === 'error' && text ? 'true' : 'false');
}

/** Validate the form; show errors and warnings at their fields. Returns the model inputs or null. */
function readForm() {
  const m = state.manifest;
  if (Array.isArray(m.features) && m.features.length) {
    const texts = {};
    m.features.forEach((f, i) => (texts[f.name] = $(fieldId(i)).value));
    const r = validateFeatures(m.features, texts);
    let firstBad = null;
    m.features.forEach((f, i) => {
      const input = $(fieldId(i));
      const msg = $(`${fieldId(i)}-msg`);
      if (r.errors[f.name]) {
        setFieldMessage(input, msg, r.errors[f.name], 'error');
        firstBad ??= input;
      } else {
        setFieldMessage(input, msg, r.warnings[f.name], 'warning');
      }
    });
    if (!r.ok) {
      firstBad.focus();
      return null;
    }
    const warnings = m.features.filter((f) => r.warnings[f.name]).map((f) => f.label || f.name);
    return { inputs: rowToInputs(m.features, r.values, m.inputs), values: r.values, warnings };
  }
  const input = $('json-input');
  const r = parseJsonInputs(input.value, m.inputs);
  setFieldMessage(input, $('json-input-msg'), r.ok ? '' : r.error, 'error');
  if (!r.ok) {
    input.focus();
    return null;
  }
  return { inputs: r.tensors, values: JSON.parse(input.value), warnings: [] };
}

// ---------------------------------------------------------------------------------------------------
// Model

/**
 * Run the graph model on plain inputs {name: {shape, data}}; applies the artifact's input_transform.
 * Every tensor created here is disposed before returning.
 * @returns {Promise<Record<string, {shape: number[], data: Float32Array}>>} outputs keyed by manifest output key
 */
async function runModel(inputs) {
  const m = state.manifest;
  const prepared = applyInputTransforms(state.artifact.input_transform, inputs);
  const keys = m.outputs.map((o) => o.key);
  // Signature keys when the model has them (TFJS maps them to nodes), else the graph's node names that
  // convert recorded in the artifact's io.
  const io = state.artifact.io || {};
  const sigIn = state.model.modelSignature?.inputs || {};
  const sigOut = state.model.modelSignature?.outputs || {};
  const resolved = keys.map((k) => (k in sigOut ? k : io.outputs?.[k]));
  const names = resolved.every(Boolean) ? resolved : undefined; // undefined: the model's outputs, in order
  const makeFeed = () => {
    const feed = {};
    for (const inp of m.inputs) {
      const p = prepared[inp.name];
      const dtype = inp.dtype.startsWith('int') || inp.dtype === 'uint8' ? 'int32' : inp.dtype === 'bool' ? 'bool' : 'float32';
      const node = inp.name in sigIn ? inp.name : io.inputs?.[inp.name] ?? inp.name;
      feed[node] = tf.tensor(dtype === 'float32' ? p.data : Array.from(p.data, Math.round), p.shape, dtype);
    }
    return feed;
  };
  // model.execute when the graph allows it (fastest), else executeAsync (control flow, dynamic shapes).
  const outs = await executeGraph(tf, state.model, makeFeed, names);
  try {
    const result = {};
    for (let i = 0; i < keys.length; i++) {
      result[keys[i]] = { shape: outs[i].shape, data: await outs[i].data() };
    }
    return result;
  } finally {
    tf.dispose(outs);
  }
}

function warmUpInputs() {
  const m = state.manifest;
  if (Array.isArray(m.features) && m.features.length) {
    const values = m.features.map((f) => (typeof f.median === 'number' ? f.median : 0));
    return rowToInputs(m.features, values, m.inputs);
  }
  const r = {};
  for (const inp of m.inputs) {
    const shape = inp.shape.map((d) => (d === null ? 1 : d));
    r[inp.name] = { shape, data: new Array(shape.reduce((a, b) => a * b, 1)).fill(0) };
  }
  return r;
}

/**
 * The graph model's artifacts, every file checked against manifest.json's sha256 (web/src/integrity.js):
 * the copy boot.js already fetched when it is the same URL, else fetched here.
 * @param {object} manifest
 * @param {{path: string}} artifact the manifest's tfjs_graph artifact
 * @param {{url: string, artifacts: Promise<{bytes: ArrayBuffer, buffers: ArrayBuffer[]}>}} [early] from boot.js
 * @throws {IntegrityError} a file on another origin, outside the page's folder, unlisted or changed
 */
async function loadArtifacts(manifest, artifact, early) {
  const model = bundleFile(pageRelativeUrl(artifact.path), pageFolder, pageFolder);
  const got = early && early.url === model.url ? await early.artifacts.catch(() => null) : null;
  const bytes = await fetchChecked(manifest, model, got ? Promise.resolve(got.bytes) : undefined);
  let json;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new Error(`${model.path} is not valid JSON: ${e.message}`);
  }
  const files = [];
  for (const group of json.weightsManifest || []) for (const p of group.paths) files.push(bundleFile(p, model.url, pageFolder));
  const buffers = await Promise.all(
    files.map((file, i) => fetchChecked(manifest, file, got ? Promise.resolve(got.buffers[i]) : undefined)),
  );
  return tf.io.getModelArtifactsForJSON(json, async (wm) => [tf.io.getWeightSpecs(wm), buffers]);
}

/**
 * Switch to a backend (loading its code on first use; wasm from the checked binary) and warm the model up
 * once on it.
 * @throws {IntegrityError} the backend's code or binary was refused (changed or unlisted)
 * @throws {Error} the backend cannot start here, or cannot run the model
 */
async function useBackend(name) {
  if (!BACKENDS.includes(name)) throw new Error(`Unknown backend "${name}": choose wasm, webgl or cpu.`);
  if (LAZY_BACKENDS[name] && !tf.engine().registryFactory[name]) {
    try {
      await LAZY_BACKENDS[name]();
    } catch {
      throw new IntegrityError(
        `The browser refused vendor/backend-${name}.js (or a file it imports): it is missing or does not match ` +
        'its sha384 in index.html. Nothing was run with it: copy the bundle again.',
      );
    }
  }
  if (name === 'wasm' && !tf.engine().registry.wasm && typeof tf.useCompiledWasm === 'function') {
    const wasm = await checkedWasm(state.boot.wasm);
    tf.useCompiledWasm(wasm.url, wasm.module);
  }
  let ok = false;
  try {
    ok = await tf.setBackend(name);
  } catch {
    ok = false;
  }
  if (!ok) throw new Error(`The ${name} backend cannot start in this browser.`);
  if (state.model && !state.warmed.has(name)) {
    await runModel(warmUpInputs());
    state.warmed.add(name);
  }
  $('backend').value = tf.getBackend();
  return tf.getBackend();
}

// ---------------------------------------------------------------------------------------------------
// Showing results

const MAX_SHOWN = 16; // values of one output shown in the prediction line

function flatOutputs(outputs) {
  return state.manifest.outputs.map((o) => ({ out: o, data: Array.from(outputs[o.key].data) }));
}

function describePrediction(outputs) {
  const m = state.manifest;
  const parts = [];
  for (const { out, data } of flatOutputs(outputs)) {
    // Class scores: one row of more than one class ([1, classes]); a sequence of them is shown as values.
    const shape = outputs[out.key].shape;
    if (m.task === 'classification' && shape.length === 2 && shape[0] === 1 && shape[1] > 1) {
      const k = data.indexOf(Math.max(...data));
      parts.push(`${out.name}: ${out.labels ? out.labels[k] : `class ${k}`} (${formatG(data[k], 4)})`);
    } else {
      // A large output (an image, a sequence) shows its first values and its shape.
      const shown = data.slice(0, MAX_SHOWN).map((v) => formatG(v, 7)).join(', ');
      const more = data.length > MAX_SHOWN ? `, … (${data.length} values, shape [${outputs[out.key].shape.join(', ')}])` : '';
      parts.push(`${out.name}: ${shown}${more}`);
    }
  }
  return parts.join(' · ');
}

function showPrediction(res) {
  $('result').hidden = false;
  const p = $('prediction');
  p.textContent = describePrediction(res.outputs);
  const first = state.manifest.outputs[0].key;
  p.dataset.value = String(res.outputs[first].data[0]);
  const ex = $('extrapolation');
  if (res.warnings.length) {
    ex.hidden = false;
    ex.textContent = `Warning: ${res.warnings.join(', ')} ${res.warnings.length > 1 ? 'are' : 'is'} outside the training range; the model is extrapolating and the prediction may be unreliable.`;
  } else {
    ex.hidden = true;
    ex.textContent = '';
  }
  $('run-info').textContent = `Backend in use: ${res.backend} · prediction time ${res.ms.toFixed(2)} ms`;
  $('run-info').dataset.backend = res.backend;
  $('run-info').dataset.ms = String(res.ms);
}

function clearPrediction() {
  $('result').hidden = true;
  $('prediction').textContent = '';
  delete $('prediction').dataset.value;
}

/** Validate, predict and show. Returns the result, or null when the form has errors. */
async function submit() {
  const form = readForm();
  if (!form) {
    clearPrediction();
    return null;
  }
  const t0 = performance.now();
  const outputs = await runModel(form.inputs);
  const ms = performance.now() - t0;
  const res = { ...form, outputs, ms, backend: tf.getBackend() };
  state.last = res;
  state.predictions += 1;
  showPrediction(res);
  state.shown = { via: 'form', outputs, backend: res.backend };
  if (state.predictions === 1) performance.mark('deploykit:first-prediction');
  return res;
}

// ---------------------------------------------------------------------------------------------------
// Check this device

/** Flat data as a nested array of the given shape (any rank; a scalar for shape []). */
function nest(flatData, shape) {
  let offset = 0;
  const build = (k) => {
    if (k === shape.length) return Number(flatData[offset++]);
    return Array.from({ length: shape[k] }, () => build(k + 1));
  };
  return build(0);
}

function flattenNested(a) {
  return Array.isArray(a) ? a.flatMap(flattenNested) : [Number(a)];
}

function shapeOfNested(a) {
  const s = [];
  for (let x = a; Array.isArray(x); x = x[0]) s.push(x.length);
  return s;
}

/**
 * Run inputs given as nested arrays per model input (golden.json's form) through the model, as "Check this
 * device" does; `deploykit verify` calls this too (window.deploykit.checkInputs), so the parity run in
 * Chromium goes through the page's own code.
 * @param {Record<string, Array>} nested
 * @returns {Promise<{actual: Record<string, Array|number>, outputs: object, ms: number}>} outputs as nested
 *   arrays of their own shape (any rank), and as {shape, data}
 * @throws {Error} an input is missing, or the model cannot run
 */
async function runNested(nested) {
  const inputs = {};
  for (const inp of state.manifest.inputs) {
    const rows = nested?.[inp.name];
    if (rows === undefined) throw new Error(`no inputs for "${inp.name}"`);
    inputs[inp.name] = { shape: shapeOfNested(rows), data: flattenNested(rows) };
  }
  const t0 = performance.now();
  const outputs = await runModel(inputs);
  const ms = performance.now() - t0;
  const actual = {};
  for (const [k, v] of Object.entries(outputs)) actual[k] = nest(v.data, v.shape);
  return { actual, outputs, ms };
}

async function checkDevice() {
  const out = $('check-result');
  out.textContent = 'Running the golden inputs…';
  const goldenFile = bundleFile('./golden.json', pageFolder, pageFolder);
  let golden;
  const goldenBytes = await fetchChecked(state.manifest, goldenFile);
  try {
    golden = JSON.parse(new TextDecoder().decode(goldenBytes));
  } catch (e) {
    throw new Error(`golden.json is not valid JSON: ${e.message}`);
  }
  for (const inp of state.manifest.inputs) {
    if (!golden.inputs?.[inp.name]) throw new Error(`golden.json has no inputs for "${inp.name}": re-create the bundle.`);
  }
  const { actual, ms } = await runNested(golden.inputs);
  const tolerance = state.artifact.tolerance || FLOAT32;
  const verdict = judgeOutputs(state.manifest, tolerance, golden.outputs, actual, golden.twins?.[state.artifact.variant]);
  const n = shapeOfNested(Object.values(golden.inputs)[0])[0];
  const metrics = Object.values(verdict.outputs);
  const maxAbs = Math.max(...metrics.map((x) => x.max_abs));
  const maxScaled = Math.max(...metrics.map((x) => x.max_scaled));
  const rule = describeTolerance(tolerance, tolerance.kind === 'scaled' ? referenceNoise(state.manifest) : null);
  out.replaceChildren();
  const head = document.createElement('p');
  head.id = 'check-verdict';
  head.className = verdict.passed ? 'pass' : 'fail';
  head.dataset.passed = String(verdict.passed);
  head.textContent = verdict.passed
    ? `PASS: this device (${tf.getBackend()}) matches Keras on all ${n} golden inputs.`
    : `FAIL: this device (${tf.getBackend()}) differs from Keras: ${verdict.failures.join('; ')}.`;
  const table = document.createElement('table');
  const tbody = table.createTBody();
  const rows = [
    ['Backend', tf.getBackend()],
    ['Golden inputs', String(n)],
    ['Largest absolute error', formatG(maxAbs, 3)],
    ['Largest error / output scale', formatG(maxScaled, 3)],
    ['Tolerance', rule],
    ['Time', `${ms.toFixed(1)} ms`],
  ];
  if (tf.getBackend() === 'webgl') {
    rows.push(['WebGL float32 textures', tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED') ? 'yes' : 'no (half floats)']);
  }
  for (const [k, v] of rows) {
    const tr = tbody.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = v;
  }
  table.querySelector('tr:nth-child(3) td:last-child').id = 'check-max-error';
  out.append(head, table);
  return { passed: verdict.passed, maxAbs, maxScaled, backend: tf.getBackend(), n, verdict };
}

// ---------------------------------------------------------------------------------------------------
// Compare with edge server

function edgeEndpoint(text) {
  const s = text.trim();
  if (!s) throw new Error('Enter the edge server address, e.g. http://raspberrypi.local:8000');
  let u;
  try {
    u = new URL(s);
  } catch {
    throw new Error(`"${s}" is not a URL: write it like http://raspberrypi.local:8000`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('Use an http:// or https:// address.');
  if (location.protocol === 'https:' && u.protocol === 'http:') {
    throw new Error('This page is served over https, so the browser blocks an http:// edge server: serve the edge over https or open this page over http.');
  }
  return u.href.replace(/\/+$/, '') + '/predict_json';
}

async function compareEdge() {
  const urlInput = $('edge-url');
  const msg = $('edge-url-msg');
  const out = $('compare-result');
  let endpoint;
  try {
    endpoint = edgeEndpoint(urlInput.value);
    setFieldMessage(urlInput, msg, '', 'error');
  } catch (e) {
    setFieldMessage(urlInput, msg, e.message, 'error');
    return null;
  }
  const local = await submit();
  if (!local) {
    out.textContent = 'Fix the inputs above first.';
    return null;
  }
  out.textContent = 'Asking the edge server…';
  let body;
  try {
    const res = await fetch(endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(local.values),
    });
    body = await res.json().catch(() => null);
    if (!res.ok || !body || body.success === false) {
      const why = body && (body.error || body.detail) ? `: ${body.error || JSON.stringify(body.detail)}` : '';
      throw new Error(`the edge server answered HTTP ${res.status}${why}`);
    }
  } catch (e) {
    out.textContent = `Could not compare: ${e.message.startsWith('the edge') ? e.message : `no answer from ${endpoint} (${e.message}). Check the address, that deploykit-edge serve is running, and that it allows this page's origin (CORS).`}`;
    return null;
  }
  const edgeValues = flattenNested(body.prediction);
  const browserValues = flatOutputs(local.outputs).flatMap((x) => x.data);
  out.replaceChildren();
  const table = document.createElement('table');
  const head = table.createTHead().insertRow();
  for (const h of ['', 'Browser (' + local.backend + ')', 'Edge server', 'Difference', 'Relative']) {
    const th = document.createElement('th');
    th.textContent = h;
    head.append(th);
  }
  const n = Math.max(edgeValues.length, browserValues.length);
  const tbody = table.createTBody();
  const diffs = [];
  for (let i = 0; i < n; i++) {
    const b = browserValues[i];
    const e = edgeValues[i];
    const d = Math.abs(b - e);
    diffs.push(d);
    const tr = tbody.insertRow();
    tr.insertCell().textContent = n > 1 ? `output ${i}` : state.manifest.outputs[0].name;
    tr.insertCell().textContent = b === undefined ? '—' : formatG(b, 7);
    tr.insertCell().textContent = e === undefined || Number.isNaN(e) ? '—' : formatG(e, 7);
    tr.insertCell().textContent = Number.isFinite(d) ? formatG(d, 3) : '—';
    tr.insertCell().textContent = Number.isFinite(d) && b ? formatG(d / Math.abs(b), 3) : '—';
  }
  table.id = 'compare-table';
  out.append(table);
  return { browser: browserValues, edge: edgeValues, diff: diffs };
}

// ---------------------------------------------------------------------------------------------------
// Start-up

function wire() {
  const form = $('predict-form');
  const button = $('predict-button');
  const busy = async (btn, fn) => {
    btn.disabled = true;
    try {
      return await fn();
    } catch (e) {
      setStatus(`Error: ${e.message}`, 'alert');
      throw e;
    } finally {
      btn.disabled = false;
    }
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(button, submit).catch(() => {});
  });
  $('backend').addEventListener('change', async (ev) => {
    const want = ev.target.value;
    const before = tf.getBackend();
    ev.target.disabled = true;
    try {
      setStatus(`Switching to ${want}…`);
      await useBackend(want);
      setStatus('');
      if (state.last) await submit();
    } catch (e) {
      await tf.setBackend(before);
      ev.target.value = before;
      setStatus(`Error: ${e.message} Staying on ${before}.`, 'alert');
    } finally {
      ev.target.disabled = false;
    }
  });
  $('check-button').addEventListener('click', () => busy($('check-button'), checkDevice).catch(() => {}));
  $('compare-button').addEventListener('click', () => busy($('compare-button'), compareEdge).catch(() => {}));
  $('edge-url').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') {
      ev.preventDefault();
      $('compare-button').click();
    }
  });
}

function prefillFromQuery() {
  const q = new URLSearchParams(location.search);
  const feats = state.manifest.features;
  if (!Array.isArray(feats) || !feats.length) return false;
  let all = true;
  feats.forEach((f, i) => {
    if (q.has(f.name)) $(fieldId(i)).value = q.get(f.name);
    else all = false;
  });
  return all;
}

/**
 * The wasm binary TFJS will ask for (SIMD or not, by its own flag), checked against manifest.json's sha256,
 * compiled: boot.js's module when it compiled that binary, else compiled here.
 * @param {Promise<{url: string, bytes: Promise<ArrayBuffer>, module: Promise<WebAssembly.Module>}|null>} [started]
 *   what boot.js started for wasm
 * @throws {IntegrityError} the binary is unlisted or changed
 */
async function checkedWasm(started) {
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const file = bundleFile(`./vendor/${simd ? 'tfjs-backend-wasm-simd.wasm' : 'tfjs-backend-wasm.wasm'}`, pageFolder, pageFolder);
  const early = started ? await Promise.resolve(started).catch(() => null) : null;
  const fromBoot = Boolean(early && early.url === file.url && early.bytes);
  const bytes = await fetchChecked(state.manifest, file, fromBoot ? early.bytes : undefined);
  const module = (fromBoot && (await early.module.catch(() => null))) || (await WebAssembly.compile(bytes));
  return { url: file.url, module };
}

/** The picker's options, in the page's order, each marked with what `deploykit verify` recorded for it. */
function markPicker(plan) {
  const select = $('backend');
  select.replaceChildren();
  for (const name of BACKENDS) {
    const v = plan.verdicts[name];
    const notes = [];
    if (name === plan.order[0] && plan.source !== 'query') notes.push('default');
    if (v) notes.push(v.passed ? 'passed verify' : 'failed verify');
    const option = new Option(notes.length ? `${name} (${notes.join(', ')})` : name, name);
    option.dataset.verify = v ? (v.passed ? 'passed' : 'failed') : 'none';
    if (v && !v.passed && v.error) option.title = v.error;
    select.append(option);
  }
  const note = $('backend-note');
  const failed = BACKENDS.filter((n) => plan.verdicts[n] && !plan.verdicts[n].passed);
  note.textContent = plan.source === 'parity' && failed.length
    ? `deploykit verify found that ${failed.join(' and ')} cannot run this model as converted; the page uses ${plan.order[0]}.`
    : '';
  note.hidden = !note.textContent;
}

/**
 * Load the model on the first backend of the plan that can load and run it; the others are fallbacks.
 * @returns {Promise<string>} a note for the page when it fell back ('' when the first backend worked)
 * @throws {IntegrityError} a file was refused (never a reason to try another backend)
 * @throws {Error} no backend could run the model (each one's reason)
 */
async function startModel(first, artifacts, predictNow) {
  const failures = [];
  for (const [i, name] of state.plan.order.entries()) {
    try {
      await (i === 0 ? first : useBackend(name));
      if (i === 0) performance.mark('deploykit:backend-ready');
      if (!state.model) {
        state.model = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
        performance.mark('deploykit:model-loaded');
      }
      // A query string with every feature (?rm=6&tax=250&age=66.5) asks for a prediction as soon as the
      // model is ready: that prediction is then the model's first run, so no separate warm-up run before it.
      if (!state.warmed.has(name)) {
        if (!predictNow || !(await submit())) await runModel(warmUpInputs());
        state.warmed.add(name);
      } else if (predictNow && !state.predictions) {
        await submit();
      }
      if (!failures.length) return '';
      const why = failures.length > 1 ? failures.map((f) => `${f.name}: ${f.reason}`).join('; ') : failures[0].reason;
      return `The ${failures.map((f) => f.name).join(' and ')} backend${failures.length > 1 ? 's' : ''} could not run this model (${why}). Using ${name} instead.`;
    } catch (e) {
      if (e.integrity) throw e;
      failures.push({ name, reason: String(e.message || e).replace(/\.$/, '') });
    }
  }
  throw new Error(`No backend can run this model here: ${failures.map((f) => `${f.name}: ${f.reason}`).join('; ')}.`);
}

async function start() {
  wire();
  // What boot.js (inlined in index.html) started fetching before this module ran; {} when it did not run.
  const boot = globalThis.deploykitBoot || {};
  state.boot = boot;
  const q = new URLSearchParams(location.search);
  performance.mark('deploykit:start');
  tf.setWasmPaths(here('./vendor/'));
  // Only the single-threaded wasm build is bundled (threads need COOP/COEP headers static hosts lack).
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  // manifest.json is the root of the checks: every other file is checked against its sha256. It also says
  // which backend to start (its parity record; web/src/backends.js), as boot.js decided from the same file.
  const manifest = await fetchJson('./manifest.json', boot.manifest);
  state.manifest = manifest;
  state.artifact = graphArtifact(manifest);
  state.plan = backendPlan(manifest, q.get('backend'));
  // All at once: the first backend (wasm instantiation) and the model files (which boot.js has usually
  // fetched already).
  const first = useBackend(state.plan.order[0]);
  first.catch(() => {}); // awaited in startModel
  const artifacts = loadArtifacts(manifest, state.artifact, boot.model);
  artifacts.catch(() => {}); // awaited below; an error surfaces there
  delete boot.model; // its weight buffers are not kept alive twice when the manifest pointed elsewhere
  $('title').textContent = `Predict ${manifest.target || manifest.outputs[0].name} in your browser`;
  buildForm(manifest);
  markPicker(state.plan);
  mountImage(manifest, {
    run: runModel,
    backend: () => tf.getBackend(),
    describe: describePrediction,
    shown: (outputs) => (state.shown = { via: 'image', outputs, backend: tf.getBackend() }),
  });
  const predictNow = prefillFromQuery();
  const startNote = await startModel(first, await artifacts, predictNow);
  $('backend').value = tf.getBackend();
  for (const id of ['predict-form', 'self-check', 'compare']) $(id).hidden = false;
  const v = manifest.versions || {};
  $('about').textContent = `Model "${manifest.name}" (${manifest.task}), created ${manifest.created}. ` +
    `TFJS ${tf.version_core} (core, converter, wasm), converted with tensorflowjs ${v.tensorflowjs ?? '?'}. ` +
    'Runs offline: no file is fetched from another site.';
  setStatus(startNote, startNote ? 'alert' : '');
  $('load-status').dataset.fallback = startNote ? 'true' : 'false';
  document.body.dataset.state = 'ready';
  performance.mark('deploykit:ready');
}

// A small handle for tests and benchmarks (the same functions the buttons call).
const ready = start().catch((e) => {
  document.body.dataset.state = 'error';
  setStatus(`Error: ${e.message}`, 'alert');
  throw e;
});
window.deploykit = {
  ready,
  submit,
  checkDevice,
  compareEdge,
  useBackend,
  backend: () => tf.getBackend(),
  plan: () => state.plan,
  /**
   * What `deploykit verify` runs in Chromium (convert/parity/browser.py): switch to `backend` (no fallback)
   * and run nested inputs through the same code as "Check this device".
   */
  checkInputs: async (backend, inputs) => {
    await ready;
    await useBackend(backend);
    const { outputs } = await runNested(inputs);
    return {
      backend: tf.getBackend(),
      version: tf.version_core,
      userAgent: navigator.userAgent,
      float32: tf.getBackend() === 'webgl' ? tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED') : null,
      outputs: state.manifest.outputs.map((o) => ({ shape: outputs[o.key].shape, data: Array.from(outputs[o.key].data) })),
    };
  },
  memory: () => tf.memory(),
  /**
   * The last answer the page showed (the form's Predict or a picture), every output in full:
   * {via: 'form'|'image', backend, outputs: [{key, shape, data}]} in the manifest's order; null before one.
   */
  last: () => state.shown && {
    via: state.shown.via,
    backend: state.shown.backend,
    outputs: state.manifest.outputs.map((o) => ({
      key: o.key, shape: state.shown.outputs[o.key].shape, data: Array.from(state.shown.outputs[o.key].data),
    })),
  },
  image: imageApi,
  runRows: async (rows) => {
    const m = state.manifest;
    const inputs = { [m.inputs[0].name]: { shape: [rows.length, rows[0].length], data: rows.flat() } };
    return runModel(inputs);
  },
};
