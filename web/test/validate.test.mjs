import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseNumber, rangeWarning, validateFeatures, parseJsonInputs, formatNumber } from '../src/validate.js';

const FEATURES = [
  { name: 'rm', min: 3.561, max: 8.78 },
  { name: 'tax', min: 187, max: 711 },
  { name: 'age', min: 2.9, max: 100 },
];

test('parseNumber accepts plain decimals and exponents', () => {
  for (const [s, v] of [['6', 6], [' 250 ', 250], ['66.5', 66.5], ['-1.5e2', -150], ['.5', 0.5], ['5.', 5], ['+3', 3], ['1E3', 1000]]) {
    assert.deepEqual(parseNumber(s), { ok: true, value: v }, s);
  }
});

test('parseNumber: empty is required, never 0', () => {
  for (const s of ['', '   ', null, undefined]) {
    assert.deepEqual(parseNumber(s), { ok: false, error: 'Required: enter a number.' });
  }
});

test('parseNumber rejects text that Number() would half-accept', () => {
  for (const s of ['abc', '0x10', '1e', '1,5', 'Infinity', 'NaN', '1 2', '--1', '6abc']) {
    const r = parseNumber(s);
    assert.equal(r.ok, false, s);
    assert.equal(r.error, `"${s}" is not a number: use digits, e.g. 6.5.`);
  }
});

test('parseNumber rejects values that are not finite in float32', () => {
  assert.deepEqual(parseNumber('1e999'), { ok: false, error: '1e999 is too large: enter a finite number.' });
  assert.deepEqual(parseNumber('-1e39'), { ok: false, error: '-1e39 is too large: enter a finite number.' });
  assert.equal(parseNumber('3.4e38').ok, true);
});

test('rangeWarning flags values outside the training range only', () => {
  assert.equal(rangeWarning(6, FEATURES[0]), null);
  assert.equal(rangeWarning(3.561, FEATURES[0]), null);
  assert.equal(rangeWarning(8.78, FEATURES[0]), null);
  assert.equal(rangeWarning(9.5, FEATURES[0]), 'Outside the training range 3.561 to 8.78: the model is extrapolating.');
  assert.equal(rangeWarning(100, FEATURES[1]), 'Outside the training range 187 to 711: the model is extrapolating.');
  assert.equal(rangeWarning(5, { min: null, max: null }), null);
});

test('validateFeatures collects every error and keeps order', () => {
  const ok = validateFeatures(FEATURES, { rm: '6', tax: '250', age: '66.5' });
  assert.deepEqual(ok, { ok: true, values: [6, 250, 66.5], errors: {}, warnings: {} });
  const bad = validateFeatures(FEATURES, { rm: '', tax: 'abc', age: '1e999' });
  assert.equal(bad.ok, false);
  assert.deepEqual(bad.values, []);
  assert.deepEqual(Object.keys(bad.errors), ['rm', 'tax', 'age']);
  const warn = validateFeatures(FEATURES, { rm: '9.5', tax: '250', age: '66.5' });
  assert.equal(warn.ok, true);
  assert.deepEqual(warn.values, [9.5, 250, 66.5]);
  assert.deepEqual(Object.keys(warn.warnings), ['rm']);
});

test('no validation result ever contains NaN', () => {
  for (const s of ['', 'abc', '1e999', 'NaN', '-', '.', 'e5']) {
    const r = validateFeatures(FEATURES, { rm: s, tax: s, age: s });
    assert.equal(r.ok, false, s);
    assert.ok(r.values.every((v) => !Number.isNaN(v)));
  }
});

test('parseJsonInputs: object, bare array, batch dimension added', () => {
  const inputs = [{ name: 'x', shape: [null, 2, 2] }];
  assert.deepEqual(parseJsonInputs('{"x": [[[1,2],[3,4]]]}', inputs), { ok: true, tensors: { x: { shape: [1, 2, 2], data: [1, 2, 3, 4] } } });
  assert.deepEqual(parseJsonInputs('[[1,2],[3,4]]', inputs), { ok: true, tensors: { x: { shape: [1, 2, 2], data: [1, 2, 3, 4] } } });
});

test('parseJsonInputs: errors say what is wrong', () => {
  const inputs = [{ name: 'x', shape: [null, 3] }];
  assert.match(parseJsonInputs('{', inputs).error, /^Not valid JSON: /);
  assert.equal(parseJsonInputs('{"y": [[1,2,3]]}', inputs).error, 'Missing input "x".');
  assert.equal(parseJsonInputs('[[1,2]]', inputs).error, 'Input "x" has shape [1,2], the model expects [any,3].');
  assert.equal(parseJsonInputs('[[1,2,3],[1,2]]', inputs).error, 'Input "x" is ragged: every row must have the same length.');
  assert.equal(parseJsonInputs('[[1,"a",3]]', inputs).error, 'Input "x" must be a non-empty (nested) array of numbers.');
  assert.equal(parseJsonInputs('[[1,1e999,3]]', inputs).error, 'Input "x" holds a value that is not a finite number.');
  assert.equal(parseJsonInputs('{"x": [[1,2,3]], "z": 1}', inputs).error, 'Unknown input "z".');
  const two = [{ name: 'a', shape: [null, 1] }, { name: 'b', shape: [null, 1] }];
  assert.equal(parseJsonInputs('[[1]]', two).error, 'This model has 2 inputs: give an object {"name": [...]} per input.');
});

test('formatNumber keeps hints short', () => {
  assert.equal(formatNumber(3.561), '3.561');
  assert.equal(formatNumber(6.208500003814697), '6.2085');
  assert.equal(formatNumber(711), '711');
  assert.equal(formatNumber(0.00012), '1.200e-4');
});

test('inputs that index an Embedding take integers from 0 to size - 1 only (as the edge runner)', () => {
  const inputs = [{ name: 'tokens', shape: [null, 3], vocabulary: { size: 10, layer: 'embedding' } }];
  assert.equal(parseJsonInputs('[[0, 9, 3]]', inputs).ok, true);
  for (const [text, shown] of [['[[1, 10, 3]]', '10'], ['[[1, -1, 3]]', '-1'], ['[[1, 2.5, 3]]', '2.5']]) {
    assert.deepEqual(parseJsonInputs(text, inputs), {
      ok: false,
      error: `Input "tokens" must be an integer from 0 to 9 (the vocabulary of its Embedding 'embedding'), got ${shown}.`,
    });
  }
  const features = [{ name: 'x', input: 'x' }, { name: 'cat', input: 'cat' }];
  const tabular = [{ name: 'x' }, { name: 'cat', vocabulary: { size: 5, layer: 'colour' } }];
  assert.deepEqual(validateFeatures(features, { x: '-2.5', cat: '4' }, tabular).values, [-2.5, 4]);
  const r = validateFeatures(features, { x: '1', cat: '5' }, tabular);
  assert.equal(r.ok, false);
  assert.equal(r.errors.cat, "Must be an integer from 0 to 4 (the vocabulary of its Embedding 'colour'), got 5.");
  assert.equal(validateFeatures(features, { x: '1', cat: '5' }).ok, true); // without the inputs: numbers only
});
