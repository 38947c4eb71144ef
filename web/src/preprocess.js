/**
 * Runner-side preprocessing, exactly as the Python side applies it (docs/architecture.md):
 * an artifact's `input_transform` of kind "standardize" maps z = (x - mean) / std per column,
 * computed in float64, then cast to float32. JavaScript numbers are float64, so the arithmetic
 * below is float64 and `Float32Array.from` performs the round-to-nearest cast numpy's astype does.
 */

/**
 * Apply an artifact's input_transform list to the model inputs.
 * @param {Array<{kind: string, input: string, mean: number[], std: number[]}> | object | null} transforms
 *   the artifact's `input_transform` ([] or null for none; a single object is accepted too)
 * @param {Record<string, {shape: number[], data: ArrayLike<number>}>} inputs plain data per model input
 * @returns {Record<string, {shape: number[], data: Float32Array}>} float32 data ready for the model
 * @throws {Error} on an unknown transform kind, an unknown input, or a column count mismatch
 */
export function applyInputTransforms(transforms, inputs) {
  const list = transforms == null ? [] : Array.isArray(transforms) ? transforms : [transforms];
  const f64 = {};
  for (const [name, t] of Object.entries(inputs)) f64[name] = { shape: t.shape, data: Float64Array.from(t.data, Number) };
  for (const tr of list) {
    if (tr == null) continue;
    if (tr.kind !== 'standardize') {
      throw new Error(`Unknown input_transform kind "${tr.kind}": upgrade deploykit and rebuild the bundle.`);
    }
    const t = f64[tr.input];
    if (!t) throw new Error(`input_transform refers to unknown input "${tr.input}".`);
    const cols = t.shape[t.shape.length - 1];
    const { mean, std } = tr;
    if (mean.length !== cols || std.length !== cols) {
      throw new Error(`Input "${tr.input}" has ${cols} columns, the transform expects ${mean.length}.`);
    }
    const out = new Float64Array(t.data.length);
    for (let i = 0; i < t.data.length; i++) {
      const c = i % cols;
      out[i] = Math.fround((t.data[i] - mean[c]) / std[c]); // float64 math, then the float32 cast
    }
    t.data = out;
  }
  const result = {};
  for (const [name, t] of Object.entries(f64)) result[name] = { shape: t.shape, data: Float32Array.from(t.data) };
  return result;
}

/**
 * Build the model's input tensors (as plain data) from one row of tabular feature values.
 * Features map to (input, index); every input gets shape [1, columns].
 * @param {Array<{input: string, index: number}>} features
 * @param {number[]} values one value per feature, same order
 * @param {Array<{name: string, shape: Array<number|null>}>} inputs manifest inputs
 * @returns {Record<string, {shape: number[], data: number[]}>}
 * @throws {Error} when a feature points at an unknown input
 */
export function rowToInputs(features, values, inputs) {
  const result = {};
  for (const inp of inputs) {
    const width = inp.shape[inp.shape.length - 1] ?? features.filter((f) => f.input === inp.name).length;
    result[inp.name] = { shape: [1, width], data: new Array(width).fill(0) };
  }
  features.forEach((f, i) => {
    const slot = result[f.input];
    if (!slot) throw new Error(`Feature "${f.name}" refers to unknown input "${f.input}".`);
    slot.data[f.index] = values[i];
  });
  return result;
}

/**
 * Pick the artifact the page runs: the TFJS graph model, never one that convert rejected.
 * @param {{artifacts: Array<{format: string, path: string, status?: string, rejection?: string}>}} manifest
 * @returns {{format: string, path: string, input_transform?: object|null, tolerance?: object}}
 * @throws {Error} when the bundle has no TFJS graph model, or convert rejected it
 */
export function graphArtifact(manifest) {
  const graphs = (manifest.artifacts || []).filter((x) => x.format === 'tfjs_graph');
  const a = graphs.find((x) => x.status !== 'rejected');
  if (a) return a;
  if (graphs.length) throw new Error(`The bundle's TFJS graph model was rejected by deploykit convert (${graphs[0].rejection || 'it missed its tolerance'}).`);
  throw new Error('The bundle has no TFJS graph model: run deploykit convert again.');
}

/**
 * The URL of a bundle file, relative to the page (which lives in BUNDLE/web/).
 * @param {string} bundlePath a manifest path such as "web/model/graph/model.json"
 * @returns {string} e.g. "./model/graph/model.json"
 * @throws {Error} for absolute paths, "..", or paths outside web/
 */
export function pageRelativeUrl(bundlePath) {
  const p = String(bundlePath);
  if (p.startsWith('/') || /^[a-z]+:/i.test(p) || p.split('/').includes('..')) {
    throw new Error(`Unsafe artifact path "${p}" in manifest.json.`);
  }
  if (!p.startsWith('web/')) throw new Error(`Artifact "${p}" is outside the web folder.`);
  return './' + p.slice('web/'.length);
}
