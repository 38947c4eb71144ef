import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareOutput, judge, judgeOutputs, formatG, describeTolerance, referenceNoise, FLOAT32 } from '../src/tolerance.js';

// The same cases as tests/edge/test_tolerance.py; tests/web/test_web_tolerance.py also checks this port
// against the Python implementation on random cases.
const F16 = { kind: 'float16', max_range_fraction: 1e-3, max_twin_scaled: 1e-5 };
const Q = { kind: 'quantized', max_range_fraction: 0.01, min_top1: 0.99 };

test('scaled: error against the output scale, not per element', () => {
  // a near-zero element with float32-level noise relative to the output's scale passes
  const ref = [[1000], [1e-6]];
  const m = compareOutput(ref, [[1000.0001], [3e-5]], [0, 1000], false);
  assert.ok(Math.abs(m.max_scaled - 1e-7) < 1e-12);
  assert.deepEqual(judge(FLOAT32, m), [true, '']);
  const m2 = compareOutput([[20], [30]], [[20.001], [30]], [5, 50], false);
  assert.deepEqual(judge(FLOAT32, m2), [false, "max error 3.33e-05 of the output's scale (max|ref|) > 1e-05"]);
});

test('non-finite outputs fail', () => {
  const m = compareOutput([[1]], [[NaN]], [0, 1], false);
  assert.equal(m.max_abs, Infinity);
  assert.deepEqual(judge(FLOAT32, m), [false, "max error inf of the output's scale (max|ref|) > 1e-05"]);
});

test('float16: range bound and the precision twin', () => {
  const ref = [[10], [20]];
  const twin = [[10.01], [20]];
  const faithful = compareOutput(ref, [[10.01], [20]], [5, 50], false, { twin });
  assert.equal(faithful.twin_scaled, 0);
  assert.ok(Math.abs(faithful.precision_loss - 0.01 / 45) < 1e-12);
  assert.deepEqual(judge(F16, faithful), [true, '']);
  const broken = compareOutput(ref, [[10.02], [20]], [5, 50], false, { twin });
  assert.deepEqual(judge(F16, broken), [false,
    "differs from its float16 precision twin by 0.0005 of the output's scale > 1e-05 (the converter changed more than the weights' precision)"]);
  const far = compareOutput(ref, [[10.1], [20]], [5, 50], false, { twin });
  assert.deepEqual(judge(F16, far), [false, 'max error 0.222% of the output range > 0.1%; differs from its float16 precision '
    + "twin by 0.0045 of the output's scale > 1e-05 (the converter changed more than the weights' precision)"]);
  const none = compareOutput(ref, [[10.01], [20]], [5, 50], false);
  assert.deepEqual(judge(F16, none), [false, "no float16 twin outputs to compare with (golden.json has no 'twins'); re-create the bundle"]);
});

test('quantized: range fraction, and top-1 on decisive rows only', () => {
  const m = compareOutput([[10], [20]], [[10.3], [20]], [5, 50], false);
  assert.ok(Math.abs(m.range_fraction - 0.3 / 45) < 1e-12);
  assert.deepEqual(judge(Q, m), [true, '']);
  const m2 = compareOutput([[10], [20]], [[11], [20]], [5, 50], false);
  assert.deepEqual(judge(Q, m2), [false, 'max error 2.222% of the output range > 1%']);
  // row 2's margin 0.01 is below 2 x 1% of the range: a flip there is not counted
  const ref = [[0.9, 0.1], [0.505, 0.495], [0.2, 0.8]];
  const act = [[0.9, 0.1], [0.495, 0.505], [0.2, 0.8]];
  const c = compareOutput(ref, act, [0, 1], true, { decisiveMargin: 0.02 });
  assert.equal(c.top1, 1);
  assert.equal(c.decisive_rows, 2);
  assert.equal(c.undecided_rows, 1);
  const flipped = compareOutput(ref, [[0.1, 0.9], [0.505, 0.495], [0.2, 0.8]], [0, 1], true, { decisiveMargin: 0.02 });
  assert.deepEqual(judge({ ...Q, max_range_fraction: 1 }, flipped),
    [false, 'top-1 agreement 50.00% < 99% on 2 decisive rows (1 closer than twice the bound not counted)']);
});

test('shape mismatch is a failure and unknown kinds throw', () => {
  assert.throws(() => compareOutput([[1, 2]], [[1]], [0, 1], false), { message: 'output shape [1, 1] differs from the reference shape [1, 2]' });
  assert.throws(() => judge({ kind: 'x' }, {}), { message: "unknown tolerance kind 'x'" });
  const manifest = { task: 'regression', outputs: [{ name: 'y', key: 'output_0', range: [0, 1] }] };
  const v = judgeOutputs(manifest, FLOAT32, { output_0: [[1, 2]] }, { output_0: [[1]] });
  assert.deepEqual(v.failures, ['y: output shape [1, 1] differs from the reference shape [1, 2]']);
});

test('judgeOutputs reports missing outputs and per-output metrics, outputs of any rank', () => {
  const manifest = { task: 'regression', outputs: [{ name: 'medv', key: 'output_0', range: [5, 50] }] };
  const ok = judgeOutputs(manifest, FLOAT32, { output_0: [[23.5]] }, { output_0: [[23.5]] });
  assert.equal(ok.passed, true);
  assert.equal(ok.outputs.medv.max_abs, 0);
  assert.deepEqual(ok.outputs.medv.per_row_abs, [0]);
  const missing = judgeOutputs(manifest, FLOAT32, { output_0: [[1]] }, {});
  assert.deepEqual(missing.failures, ["medv: output 'output_0' missing"]);
  const image = [[[[1, 2], [3, 4]]], [[[5, 6], [7, 8]]]];
  const rank4 = judgeOutputs(manifest, FLOAT32, { output_0: image }, { output_0: image });
  assert.equal(rank4.passed, true);
  assert.deepEqual(rank4.outputs.medv.per_row_abs, [0, 0]);
});

test('formatG matches Python format(x, "g"); tolerances in words', () => {
  assert.equal(formatG(1e-5), '1e-05');
  assert.equal(formatG(1234567), '1.23457e+06');
  assert.equal(formatG(0.00012345, 3), '0.000123');
  assert.equal(formatG(45.67, 3), '45.7');
  assert.equal(formatG(Infinity), 'inf');
  assert.equal(describeTolerance(FLOAT32), "error ≤ 1e-05 of the output's scale");
  assert.equal(describeTolerance(Q), 'error ≤ 1% of the output range, top-1 ≥ 99% on decisive rows');
  assert.equal(describeTolerance(F16), 'error ≤ 0.1% of the output range, and within 1e-05 of the float16 twin');
});

test('float32: twice the reference noise joins the bound, as edge.tolerance does', () => {
  const manifest = (noise) => ({ task: 'regression', outputs: [{ name: 'y', key: 'output_0', range: [0, 10], ...(noise === undefined ? {} : { reference_noise: noise }) }] });
  const ref = { output_0: [[10], [5]] };
  const act = { output_0: [[10 + 3e-4], [5]] };
  assert.deepEqual(judgeOutputs(manifest(undefined), FLOAT32, ref, act).failures, ["y: max error 3e-05 of the output's scale (max|ref|) > 1e-05"]);
  const noisy = judgeOutputs(manifest(1.82e-5), FLOAT32, ref, act);
  assert.equal(noisy.passed, true);
  assert.equal(noisy.outputs.y.reference_noise, 1.82e-5);
  assert.deepEqual(judgeOutputs(manifest(5e-6), FLOAT32, ref, act).failures,
    ["y: max error 3e-05 of the output's scale (max|ref|) > 2e-05 (1e-05 + 2 × the reference's own float32 noise 5e-06)"]);
  assert.equal(referenceNoise(manifest(undefined)), null);
  assert.equal(referenceNoise({ outputs: [{ reference_noise: 1e-7 }, {}, { reference_noise: 3e-7 }] }), 3e-7);
  assert.equal(describeTolerance(FLOAT32, 1.82e-5), "error ≤ 1e-05 of the output's scale + 2 × the reference's own float32 noise (1.82e-05)");
  // quantized tolerances never read it
  const q = judgeOutputs(manifest(0.5), Q, { output_0: [[10], [0]] }, { output_0: [[10.2], [0]] });
  assert.deepEqual(q.failures, ['y: max error 2.000% of the output range > 1%']);
});
