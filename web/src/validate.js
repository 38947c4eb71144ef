/**
 * Input validation for the prediction form. Pure functions, no DOM, no TFJS.
 *
 * A field value is accepted only when it is a complete decimal number that is finite
 * in float64 AND representable as a finite float32 (the model computes in float32).
 * Nothing here ever returns NaN as a value: a failure is reported as an error message.
 */

/** Largest finite float32. */
export const FLOAT32_MAX = 3.4028234663852886e38;

// Plain decimal notation: optional sign, digits with optional fraction, optional exponent.
// Rejects "", "abc", "0x10", "1e", "1,5", "Infinity", "NaN", " 1 2".
const NUMBER_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * Parse one field.
 * @param {string} text what the user typed
 * @returns {{ok: true, value: number} | {ok: false, error: string}}
 */
export function parseNumber(text) {
  const s = String(text ?? '').trim();
  if (s === '') return { ok: false, error: 'Required: enter a number.' };
  if (!NUMBER_RE.test(s)) return { ok: false, error: `"${s}" is not a number: use digits, e.g. 6.5.` };
  const value = Number(s);
  if (!Number.isFinite(value) || Math.abs(value) > FLOAT32_MAX) {
    return { ok: false, error: `${s} is too large: enter a finite number.` };
  }
  return { ok: true, value };
}

/**
 * Whether a value lies outside the training range of a feature.
 * @param {number} value
 * @param {{min?: number|null, max?: number|null}} feature
 * @returns {string|null} a warning sentence, or null when inside the range (or no range is known)
 */
export function rangeWarning(value, feature) {
  const { min, max } = feature;
  const hasMin = typeof min === 'number' && Number.isFinite(min);
  const hasMax = typeof max === 'number' && Number.isFinite(max);
  if ((hasMin && value < min) || (hasMax && value > max)) {
    const lo = hasMin ? formatNumber(min) : '−∞';
    const hi = hasMax ? formatNumber(max) : '∞';
    return `Outside the training range ${lo} to ${hi}: the model is extrapolating.`;
  }
  return null;
}

/**
 * What is wrong with a value for an input that indexes an Embedding (the manifest's `vocabulary`:
 * integers from 0 to size - 1), or null. The edge runner refuses the same values (edge/inputs.py).
 * @param {number} value
 * @param {{size: number, layer: string}} vocabulary
 * @returns {string|null}
 */
export function vocabularyProblem(value, vocabulary) {
  const size = vocabulary.size;
  if (Number.isInteger(value) && value >= 0 && value < size) return null;
  return `must be an integer from 0 to ${size - 1} (the vocabulary of its Embedding '${vocabulary.layer}'), got ${value}.`;
}

/**
 * Validate every feature field.
 * @param {Array<{name: string, input?: string}>} features manifest features, in contract order
 * @param {Record<string, string>} texts raw text per feature name
 * @param {Array<{name: string, vocabulary?: {size: number, layer: string}}>} [inputs] manifest inputs: a
 *   feature of an input with a vocabulary takes its integers only
 * @returns {{ok: boolean, values: number[], errors: Record<string,string>, warnings: Record<string,string>}}
 *   values is complete (one per feature) only when ok is true
 */
export function validateFeatures(features, texts, inputs = []) {
  const values = [];
  const errors = {};
  const warnings = {};
  const vocabularies = Object.fromEntries(inputs.filter((i) => i.vocabulary).map((i) => [i.name, i.vocabulary]));
  for (const f of features) {
    const r = parseNumber(texts[f.name]);
    if (!r.ok) {
      errors[f.name] = r.error;
      continue;
    }
    const vocabulary = vocabularies[f.input];
    const problem = vocabulary ? vocabularyProblem(r.value, vocabulary) : null;
    if (problem) {
      errors[f.name] = `M${problem.slice(1)}`; // shown beside the field
      continue;
    }
    values.push(r.value);
    const w = rangeWarning(r.value, f);
    if (w) warnings[f.name] = w;
  }
  const ok = Object.keys(errors).length === 0;
  return { ok, values: ok ? values : [], errors, warnings };
}

/**
 * Parse the JSON input box used for non-tabular models.
 * Accepts either an object {inputName: nestedArray} or, for a single-input model, a bare nested array.
 * Every leaf must be a finite float32 number and the shape must match the manifest (null = any size).
 * @param {string} text
 * @param {Array<{name: string, shape: Array<number|null>}>} inputs manifest inputs
 * @returns {{ok: true, tensors: Record<string, {shape: number[], data: number[]}>} | {ok: false, error: string}}
 */
export function parseJsonInputs(text, inputs) {
  let obj;
  try {
    obj = JSON.parse(String(text ?? ''));
  } catch (e) {
    return { ok: false, error: `Not valid JSON: ${e.message}` };
  }
  if (Array.isArray(obj)) {
    if (inputs.length !== 1) {
      return { ok: false, error: `This model has ${inputs.length} inputs: give an object {"name": [...]} per input.` };
    }
    obj = { [inputs[0].name]: obj };
  }
  if (obj === null || typeof obj !== 'object') {
    return { ok: false, error: 'Give an array, or an object with one array per model input.' };
  }
  const tensors = {};
  for (const inp of inputs) {
    if (!(inp.name in obj)) return { ok: false, error: `Missing input "${inp.name}".` };
    const r = flatten(obj[inp.name], inp.name);
    if (!r.ok) return r;
    let { shape, data } = r;
    const want = inp.shape || [];
    // A single example without the batch dimension: add it.
    if (shape.length === want.length - 1 && want[0] === null) shape = [1, ...shape];
    if (shape.length !== want.length || want.some((d, i) => d !== null && d !== shape[i])) {
      return { ok: false, error: `Input "${inp.name}" has shape [${shape}], the model expects [${want.map((d) => (d === null ? 'any' : d))}].` };
    }
    if (inp.vocabulary) {
      const bad = data.findIndex((v) => vocabularyProblem(v, inp.vocabulary) !== null);
      if (bad >= 0) return { ok: false, error: `Input "${inp.name}" ${vocabularyProblem(data[bad], inp.vocabulary)}` };
    }
    tensors[inp.name] = { shape, data };
  }
  const extra = Object.keys(obj).filter((k) => !inputs.some((i) => i.name === k));
  if (extra.length) return { ok: false, error: `Unknown input "${extra[0]}".` };
  return { ok: true, tensors };
}

function flatten(value, name) {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || Math.abs(value) > FLOAT32_MAX) return { ok: false, error: `Input "${name}" holds a value that is not a finite number.` };
    return { ok: true, shape: [], data: [value] };
  }
  if (!Array.isArray(value) || value.length === 0) {
    return { ok: false, error: `Input "${name}" must be a non-empty (nested) array of numbers.` };
  }
  const parts = value.map((v) => flatten(v, name));
  const bad = parts.find((p) => !p.ok);
  if (bad) return bad;
  const inner = parts[0].shape;
  if (parts.some((p) => p.shape.length !== inner.length || p.shape.some((d, i) => d !== inner[i]))) {
    return { ok: false, error: `Input "${name}" is ragged: every row must have the same length.` };
  }
  return { ok: true, shape: [value.length, ...inner], data: parts.flatMap((p) => p.data) };
}

/** Short human formatting of a number for hints (no trailing noise). */
export function formatNumber(x) {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return x.toExponential(3);
  return String(Number(x.toPrecision(6)));
}
