/**
 * The parity rule of edge/tolerance.py, ported line for line (docs/architecture.md, "Tolerances").
 *
 * relative:  every element |y - ref| / max(|ref|, 0.01 * max|ref|) <= max_rel
 * quantized: max|y - ref| <= max_range_fraction * (range_hi - range_lo), and top-1 >= min_top1 (classifiers)
 *
 * Arrays are nested JS arrays (rows x columns) or flat arrays; all math is float64.
 */

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

/**
 * Error metrics of one output, as edge.tolerance.compare_output computes them.
 * @param {Array} reference nested array of reference values
 * @param {Array} actual nested array of the same shape
 * @param {[number, number]} valueRange the output's reference range on DATA
 * @param {boolean} classifier whether to compute top-1 agreement
 * @returns {{max_abs: number, max_rel: number, range_fraction: number, per_row_abs: number[], top1?: number}}
 * @throws {Error} when the shapes differ
 */
export function compareOutput(reference, actual, valueRange, classifier) {
  const rs = shapeOf(reference);
  const as = shapeOf(actual);
  if (rs.length !== as.length || rs.some((d, i) => d !== as[i])) {
    throw new Error(`output shape [${as}] differs from the reference shape [${rs}]`);
  }
  const ref = flat(reference);
  const act = flat(actual);
  const diff = ref.map((r, i) => (Number.isFinite(act[i]) ? Math.abs(act[i] - r) : Infinity));
  const scale = ref.length ? Math.max(...ref.map(Math.abs)) : 0;
  const floor = Math.max(0.01 * scale, FLOAT32_TINY);
  const rel = diff.map((d, i) => d / Math.max(Math.abs(ref[i]), floor));
  let span = Number(valueRange[1]) - Number(valueRange[0]);
  if (!(span > 0)) span = Math.max(scale, 1.0);
  const maxOf = (xs) => xs.reduce((m, v) => (v > m || Number.isNaN(v) ? v : m), -Infinity);
  const rows = rs.length ? rs[0] : 0;
  const perRow = [];
  if (rows) {
    const width = diff.length / rows;
    for (let r = 0; r < rows; r++) perRow.push(maxOf(diff.slice(r * width, (r + 1) * width)));
  }
  const metrics = {
    max_abs: diff.length ? maxOf(diff) : 0,
    max_rel: rel.length ? maxOf(rel) : 0,
    range_fraction: diff.length ? maxOf(diff) / span : 0,
    per_row_abs: perRow,
  };
  if (classifier && rs.length >= 2 && rs[rs.length - 1] > 1) {
    const k = rs[rs.length - 1];
    const n = ref.length / k;
    let agree = 0;
    for (let r = 0; r < n; r++) {
      if (argmax(ref.slice(r * k, (r + 1) * k)) === argmax(act.slice(r * k, (r + 1) * k))) agree++;
    }
    metrics.top1 = agree / n;
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
 * Judge one output's metrics against a tolerance, as edge.tolerance.judge does.
 * @param {{kind: string, max_rel?: number, max_range_fraction?: number, min_top1?: number}} tolerance
 * @param {{max_rel: number, range_fraction: number, top1?: number}} metrics
 * @returns {[boolean, string]} passed, and the reason when it failed
 * @throws {Error} on an unknown tolerance kind
 */
export function judge(tolerance, metrics) {
  if (tolerance.kind === 'relative') {
    const limit = Number(tolerance.max_rel);
    if (!(metrics.max_rel <= limit)) return [false, `max relative error ${formatG(metrics.max_rel, 3)} > ${formatG(limit)}`];
    return [true, ''];
  }
  if (tolerance.kind === 'quantized') {
    const limit = Number(tolerance.max_range_fraction);
    if (!(metrics.range_fraction <= limit)) {
      return [false, `max error ${(metrics.range_fraction * 100).toFixed(3)}% of the output range > ${(limit * 100).toFixed(0)}%`];
    }
    const top1 = metrics.top1;
    if (top1 !== undefined && top1 !== null && top1 < Number(tolerance.min_top1)) {
      return [false, `top-1 agreement ${(top1 * 100).toFixed(2)}% < ${(Number(tolerance.min_top1) * 100).toFixed(0)}%`];
    }
    return [true, ''];
  }
  throw new Error(`unknown tolerance kind '${tolerance.kind}'`);
}

/**
 * Compare every output of a run with the reference, as edge.tolerance.judge_outputs does.
 * @param {{task?: string, outputs: Array<{name: string, key: string, range: [number, number]}>}} manifest
 * @param {object} tolerance
 * @param {Record<string, Array>} reference reference outputs per key
 * @param {Record<string, Array>} actual outputs per key
 * @returns {{passed: boolean, outputs: Record<string, object>, failures: string[]}}
 */
export function judgeOutputs(manifest, tolerance, reference, actual) {
  const classifier = manifest.task === 'classification';
  const result = { passed: true, outputs: {}, failures: [] };
  for (const out of manifest.outputs) {
    const key = out.key;
    if (!(key in actual)) {
      result.passed = false;
      result.failures.push(`${out.name}: output '${key}' missing`);
      continue;
    }
    const metrics = compareOutput(reference[key], actual[key], out.range, classifier);
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
