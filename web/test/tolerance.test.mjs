import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareOutput, judge, judgeOutputs, formatG } from '../src/tolerance.js';

// The same cases as edge/tolerance.py; tests/web/test_tolerance_js.py also checks this port against the
// Python implementation on random cases.
const F32 = { kind: 'relative', max_rel: 1e-5 };
const Q = { kind: 'quantized', max_range_fraction: 0.01, min_top1: 0.99 };

test('relative: within 1e-5 passes, beyond fails with the Python message', () => {
  const ref = [[20], [30]];
  const m = compareOutput(ref, [[20.0001], [30]], [5, 50], false);
  assert.ok(Math.abs(m.max_rel - 5e-6) < 1e-12);
  assert.deepEqual(judge(F32, m), [true, '']);
  const m2 = compareOutput(ref, [[20.001], [30]], [5, 50], false);
  assert.deepEqual(judge(F32, m2), [false, 'max relative error 5e-05 > 1e-05']);
});

test('relative: the floor is 1% of the largest |ref|', () => {
  const ref = [[1, 1e-9]];
  const m = compareOutput(ref, [[1, 1e-7]], [0, 1], false);
  assert.ok(Math.abs(m.max_rel - (1e-7 - 1e-9) / 0.01) < 1e-15);
});

test('non-finite outputs fail', () => {
  const m = compareOutput([[1]], [[NaN]], [0, 1], false);
  assert.equal(m.max_abs, Infinity);
  assert.deepEqual(judge(F32, m), [false, 'max relative error inf > 1e-05']);
});

test('quantized: range fraction and top-1', () => {
  const m = compareOutput([[10], [20]], [[10.3], [20]], [5, 50], false);
  assert.ok(Math.abs(m.range_fraction - 0.3 / 45) < 1e-12);
  assert.deepEqual(judge(Q, m), [true, '']);
  const m2 = compareOutput([[10], [20]], [[11], [20]], [5, 50], false);
  assert.deepEqual(judge(Q, m2), [false, 'max error 2.222% of the output range > 1%']);
  const c = compareOutput([[0.9, 0.1], [0.2, 0.8]], [[0.9, 0.1], [0.8, 0.2]], [0, 1], true);
  assert.equal(c.top1, 0.5);
  const loose = { ...Q, max_range_fraction: 1 };
  assert.deepEqual(judge(loose, c), [false, 'top-1 agreement 50.00% < 99%']);
});

test('shape mismatch and unknown kinds throw', () => {
  assert.throws(() => compareOutput([[1, 2]], [[1]], [0, 1], false), { message: 'output shape [1,1] differs from the reference shape [1,2]' });
  assert.throws(() => judge({ kind: 'x' }, {}), { message: "unknown tolerance kind 'x'" });
});

test('judgeOutputs reports missing outputs and per-output metrics', () => {
  const manifest = { task: 'regression', outputs: [{ name: 'medv', key: 'output_0', range: [5, 50] }] };
  const ok = judgeOutputs(manifest, F32, { output_0: [[23.5]] }, { output_0: [[23.5]] });
  assert.equal(ok.passed, true);
  assert.equal(ok.outputs.medv.max_abs, 0);
  assert.deepEqual(ok.outputs.medv.per_row_abs, [0]);
  const missing = judgeOutputs(manifest, F32, { output_0: [[1]] }, {});
  assert.deepEqual(missing.failures, ["medv: output 'output_0' missing"]);
});

test('formatG matches Python format(x, "g")', () => {
  assert.equal(formatG(1e-5), '1e-05');
  assert.equal(formatG(1234567), '1.23457e+06');
  assert.equal(formatG(0.00012345, 3), '0.000123');
  assert.equal(formatG(45.67, 3), '45.7');
  assert.equal(formatG(Infinity), 'inf');
});
