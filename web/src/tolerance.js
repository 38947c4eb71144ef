/**
 * The parity rule of edge/tolerance.py, ported line for line (docs/architecture.md, "Tolerances").
 *
 * scaled (float32):   max|y - ref| <= (max_scaled + 2 * noise) * max|ref| over each output, where noise is the
 *                     output's reference_noise in the manifest (the reference's own float32 error; 0 when absent)
 * float16:            max|y - ref| <= max_range_fraction * span, and max|y - twin| <= max_twin_scaled * max|twin|
 * quantized:          max|y - ref| <= max_range_fraction * span, and top-1 >= min_top1 over the decisive rows
 *                     (reference margin between the two best classes > twice the allowed error)
 *
 * Arrays are nested JS arrays (rows x columns) or flat arrays; all math is float64.
 */
/** edge.tolerance.FLOAT32: the float32 variants' tolerance */
export const FLOAT32 = Object.freeze({ kind: 'scaled', max_scaled: 1e-5 });

/** numpy's np.finfo(np.float32).tiny */
export const FLOAT32_TINY = 1.1754943508222875e-38;

function shapeOf(a) {
  const s = [];
  let x = a;
  while (Array.isArray(x) || ArrayBuffer.isView(x)) {
    s.push(x.length);
    x = x[0];
  }
  return s;
}

function flat(a) {
  return Array.isArray(a) || ArrayBuffer.isView(a) ? Array.from(a).flatMap(flat) : [Number(a)];
}

const maxOf = (xs) => xs.reduce((m, v) => (v > m || Number.isNaN(v) ? v : m), -Infinity);
const maxOr0 = (xs) => (xs.length ? maxOf(xs) : 0);

function spanOf(valueRange, scale) {
  const span = Number(valueRange[1]) - Number(valueRange[0]);
  return span > 0 ? span : Math.max(scale, 1.0);
}

function absError(ref, act) {
  return ref.map((r, i) => (Number.isFinite(act[i]) ? Math.abs(act[i] - r) : Infinity));
}

function sameShape(a, b) {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Error metrics of one output, as edge.tolerance.compare_output computes them.
 * @param {Array} reference nested array of reference values
 * @param {Array} actual nested array of the same shape
 * @param {[number, number]} valueRange the output's reference range on DATA
 * @param {boolean} classifier whether to compute top-1 agreement (with decisiveMargin)
 * @param {{decisiveMargin?: number|null, twin?: Array|null}} [options]
 * @returns {object} max_abs, max_scaled, range_fraction, per_row_abs; top1, decisive_rows, undecided_rows;
 *   twin_scaled, precision_loss
 * @throws {Error} when the shapes differ
 */
export function compareOutput(reference, actual, valueRange, classifier, { decisiveMargin = null, twin = null } = {}) {
  const rs = shapeOf(reference);
  const as = shapeOf(actual);
  if (!sameShape(rs, as)) {
    throw new Error(`output shape [${as.join(', ')}] differs from the reference shape [${rs.join(', ')}]`);
  }
  const ref = flat(reference);
  const act = flat(actual);
  const diff = absError(ref, act);
  const scale = maxOr0(ref.map(Math.abs));
  const span = spanOf(valueRange, scale);
  const worst = maxOr0(diff);
  const rows = rs.length ? rs[0] : 0;
  const perRow = [];
  if (rows && diff.length) {
    const width = diff.length / rows;
    for (let r = 0; r < rows; r++) perRow.push(maxOf(diff.slice(r * width, (r + 1) * width)));
  }
  const metrics = {
    max_abs: worst,
    max_scaled: worst / Math.max(scale, FLOAT32_TINY),
    range_fraction: worst / span,
    per_row_abs: perRow,
  };
  if (classifier && decisiveMargin !== null && decisiveMargin !== undefined && rs.length >= 2 && rs[rs.length - 1] > 1) {
    const k = rs[rs.length - 1];
    const n = ref.length / k;
    let decisive = 0;
    let agree = 0;
    for (let r = 0; r < n; r++) {
      const rowRef = ref.slice(r * k, (r + 1) * k);
      const sorted = [...rowRef].sort((a, b) => a - b);
      if (sorted[k - 1] - sorted[k - 2] > decisiveMargin) {
        decisive++;
        if (argmax(rowRef) === argmax(act.slice(r * k, (r + 1) * k))) agree++;
      }
    }
    metrics.decisive_rows = decisive;
    metrics.undecided_rows = n - decisive;
    metrics.top1 = decisive ? agree / decisive : null;
  }
  if (twin !== null && twin !== undefined) {
    const ts = shapeOf(twin);
    if (!sameShape(ts, rs)) {
      throw new Error(`twin output shape [${ts.join(', ')}] differs from the reference shape [${rs.join(', ')}]`);
    }
    const tw = flat(twin);
    metrics.twin_scaled = maxOr0(absError(tw, act)) / Math.max(maxOr0(tw.map(Math.abs)), FLOAT32_TINY);
    metrics.precision_loss = maxOr0(tw.map((t, i) => Math.abs(t - ref[i]))) / span;
  }
  return metrics;
}

function argmax(xs) {
  // numpy's argmax: first maximum; NaN counts as the maximum.
  let best = 0;
  for (let i = 1; i < xs.length; i++) {
    if (Number.isNaN(xs[best])) break;
    if (xs[i] > xs[best] || Number.isNaN(xs[i])) best = i;
  }
  return best;
}

/** Python's format(x, f'.{p}g'), for the numbers that reach a message. */
export function formatG(x, p = 6) {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  const strip = (s) => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);
  const [m, e] = x.toExponential(p - 1).split('e');
  const exp = Number(e);
  if (exp >= -4 && exp < p) return strip(x.toFixed(p - 1 - exp));
  return `${strip(m)}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
}

/**
 * The largest outputs[].reference_noise of a manifest, as edge.tolerance.reference_noise returns it.
 * @param {{outputs: Array<{reference_noise?: number|null}>}} manifest
 * @returns {number|null} null when no output has one
 */
export function referenceNoise(manifest) {
  const values = manifest.outputs.map((o) => o.reference_noise).filter((v) => v !== undefined && v !== null);
  return values.length ? maxOf(values.map(Number)) : null;
}

/**
 * A tolerance in words, for the page.
 * @param {object} tolerance
 * @param {number|null} [noise] the largest outputs[].reference_noise (float32 tolerances only)
 * @returns {string}
 */
export function describeTolerance(tolerance, noise = null) {
  if (tolerance.kind === 'scaled') {
    let text = `error ≤ ${formatG(tolerance.max_scaled)} of the output's scale`;
    if (noise !== null && noise !== undefined) text += ` + 2 × the reference's own float32 noise (${formatG(Number(noise), 3)})`;
    return text;
  }
  const range = `error ≤ ${formatG(tolerance.max_range_fraction * 100)}% of the output range`;
  if (tolerance.kind === 'float16') return `${range}, and within ${formatG(tolerance.max_twin_scaled)} of the float16 twin`;
  return `${range}, top-1 ≥ ${formatG(tolerance.min_top1 * 100)}% on decisive rows`;
}

const percent = (x, digits) => `${(x * 100).toFixed(digits)}%`;

/**
 * The float32 bound on max_scaled, as edge.tolerance.scaled_limit: max_scaled + 2 * noise (plain without noise).
 * @param {{max_scaled: number}} tolerance
 * @param {number|null|undefined} noise
 * @returns {number}
 */
export function scaledLimit(tolerance, noise) {
  const limit = Number(tolerance.max_scaled);
  return noise === null || noise === undefined ? limit : limit + 2.0 * Number(noise);
}

/**
 * Judge one output's metrics against a tolerance, as edge.tolerance.judge does (a float32 tolerance reads
 * metrics.reference_noise, which judgeOutputs sets from the manifest).
 * @param {{kind: string, max_scaled?: number, max_range_fraction?: number, max_twin_scaled?: number, min_top1?: number}} tolerance
 * @param {object} metrics what compareOutput returned
 * @returns {[boolean, string]} passed, and every reason it failed (joined by '; ')
 * @throws {Error} on an unknown tolerance kind
 */
export function judge(tolerance, metrics) {
  const kind = tolerance.kind;
  if (!['scaled', 'float16', 'quantized'].includes(kind)) throw new Error(`unknown tolerance kind '${kind}'`);
  const reasons = [];
  if (kind === 'scaled') {
    const noise = metrics.reference_noise;
    const limit = scaledLimit(tolerance, noise);
    if (!(metrics.max_scaled <= limit)) {
      const bound = noise === null || noise === undefined ? formatG(limit)
        : `${formatG(limit, 3)} (${formatG(Number(tolerance.max_scaled))} + 2 × the reference's own float32 noise ${formatG(Number(noise), 3)})`;
      reasons.push(`max error ${formatG(metrics.max_scaled, 3)} of the output's scale (max|ref|) > ${bound}`);
    }
  } else {
    const limit = Number(tolerance.max_range_fraction);
    if (!(metrics.range_fraction <= limit)) {
      reasons.push(`max error ${percent(metrics.range_fraction, 3)} of the output range > ${formatG(limit * 100)}%`);
    }
  }
  if (kind === 'float16') {
    const limit = Number(tolerance.max_twin_scaled);
    if (!('twin_scaled' in metrics)) {
      reasons.push("no float16 twin outputs to compare with (golden.json has no 'twins'); re-create the bundle");
    } else if (!(metrics.twin_scaled <= limit)) {
      reasons.push(`differs from its float16 precision twin by ${formatG(metrics.twin_scaled, 3)} of the output's `
        + `scale > ${formatG(limit)} (the converter changed more than the weights' precision)`);
    }
  }
  if (kind === 'quantized') {
    const top1 = metrics.top1;
    if (top1 !== undefined && top1 !== null && top1 < Number(tolerance.min_top1)) {
      reasons.push(`top-1 agreement ${percent(top1, 2)} < ${percent(Number(tolerance.min_top1), 0)} on `
        + `${metrics.decisive_rows} decisive rows (${metrics.undecided_rows} closer than twice the bound not counted)`);
    }
  }
  return [reasons.length === 0, reasons.join('; ')];
}

/**
 * Compare every output of a run with the reference, as edge.tolerance.judge_outputs does.
 * @param {{task?: string, outputs: Array<{name: string, key: string, range: [number, number], reference_noise?: number|null}>}} manifest
 * @param {object} tolerance
 * @param {Record<string, Array>} reference reference outputs per key
 * @param {Record<string, Array>} actual outputs per key
 * @param {Record<string, Array>|null} [twin] the precision twin's outputs per key (float16 tolerances)
 * @returns {{passed: boolean, outputs: Record<string, object>, failures: string[]}}
 * @throws {Error} on an unknown tolerance kind
 */
export function judgeOutputs(manifest, tolerance, reference, actual, twin = null) {
  const classifier = manifest.task === 'classification';
  const fraction = tolerance.kind === 'quantized' ? Number(tolerance.max_range_fraction) : null;
  const result = { passed: true, outputs: {}, failures: [] };
  for (const out of manifest.outputs) {
    const key = out.key;
    if (!(key in actual)) {
      result.passed = false;
      result.failures.push(`${out.name}: output '${key}' missing`);
      continue;
    }
    let margin = null;
    if (fraction !== null) margin = 2.0 * fraction * spanOf(out.range, maxOr0(flat(reference[key]).map(Math.abs)));
    const twinOut = twin && tolerance.kind === 'float16' && key in twin ? twin[key] : null;
    let metrics;
    try {
      metrics = compareOutput(reference[key], actual[key], out.range, classifier, { decisiveMargin: margin, twin: twinOut });
    } catch (err) {
      result.passed = false;
      result.failures.push(`${out.name}: ${err.message}`);
      continue;
    }
    if (tolerance.kind === 'scaled' && out.reference_noise !== undefined && out.reference_noise !== null) {
      metrics.reference_noise = Number(out.reference_noise);
      metrics.max_scaled_allowed = scaledLimit(tolerance, metrics.reference_noise);
    }
    const [ok, reason] = judge(tolerance, metrics);
    Object.assign(metrics, { passed: ok, reason });
    result.outputs[out.name] = metrics;
    if (!ok) {
      result.passed = false;
      result.failures.push(`${out.name}: ${reason}`);
    }
  }
  return result;
}
