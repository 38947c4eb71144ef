import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyInputTransforms, rowToInputs, graphArtifact, pageRelativeUrl } from '../src/preprocess.js';

const T = { kind: 'standardize', input: 'features', mean: [6.284634387351779, 408.2371541501976, 68.57490118577076], std: [0.7019225143345692, 168.37049503938118, 28.121032570236885] };

test('no transform: values are only cast to float32', () => {
  for (const tr of [[], null, undefined]) {
    const r = applyInputTransforms(tr, { features: { shape: [1, 3], data: [6, 250, 66.5] } });
    assert.ok(r.features.data instanceof Float32Array);
    assert.deepEqual(Array.from(r.features.data), [6, 250, 66.5]);
    assert.deepEqual(r.features.shape, [1, 3]);
  }
  const r = applyInputTransforms([], { features: { shape: [1, 1], data: [0.1] } });
  assert.equal(r.features.data[0], Math.fround(0.1));
});

test('standardize computes in float64, then casts to float32 (bit-identical to numpy)', () => {
  const x = [6, 250, 66.5, 3.561, 711, 100];
  const r = applyInputTransforms([T], { features: { shape: [2, 3], data: x } });
  const want = x.map((v, i) => Math.fround((v - T.mean[i % 3]) / T.std[i % 3]));
  assert.deepEqual(Array.from(r.features.data), want);
  // Reference values from numpy: ((x.astype(float64) - mean) / std).astype(float32) for row 1.
  const f32 = new Float32Array([(6 - T.mean[0]) / T.std[0], (250 - T.mean[1]) / T.std[1], (66.5 - T.mean[2]) / T.std[2]]);
  assert.deepEqual(Array.from(r.features.data.slice(0, 3)), Array.from(f32));
});

test('float64 then float32 differs from float32 arithmetic (why the order matters)', () => {
  // Doing the subtraction in float32 would round the inputs first; the contract says float64.
  const t = { kind: 'standardize', input: 'x', mean: [0.1], std: [3] };
  const r = applyInputTransforms([t], { x: { shape: [1, 1], data: [16777217.3] } });
  assert.equal(r.x.data[0], Math.fround((16777217.3 - 0.1) / 3));
});

test('a single transform object is accepted and other inputs pass through', () => {
  const r = applyInputTransforms(T, { features: { shape: [1, 3], data: [6, 250, 66.5] }, other: { shape: [1, 1], data: [2] } });
  assert.deepEqual(Array.from(r.other.data), [2]);
  assert.notDeepEqual(Array.from(r.features.data), [6, 250, 66.5]);
});

test('transform errors name the problem', () => {
  assert.throws(() => applyInputTransforms([{ ...T, kind: 'log' }], { features: { shape: [1, 3], data: [1, 2, 3] } }),
    { message: 'Unknown input_transform kind "log": upgrade deploykit and rebuild the bundle.' });
  assert.throws(() => applyInputTransforms([T], { features: { shape: [1, 2], data: [1, 2] } }),
    { message: 'Input "features" has 2 columns, the transform expects 3.' });
  assert.throws(() => applyInputTransforms([{ ...T, input: 'nope' }], { features: { shape: [1, 3], data: [1, 2, 3] } }),
    { message: 'input_transform refers to unknown input "nope".' });
});

test('rowToInputs places features by (input, index)', () => {
  const feats = [{ name: 'a', input: 'x', index: 2 }, { name: 'b', input: 'x', index: 0 }, { name: 'c', input: 'y', index: 0 }];
  const inputs = [{ name: 'x', shape: [null, 3] }, { name: 'y', shape: [null, 1] }];
  assert.deepEqual(rowToInputs(feats, [1, 2, 3], inputs), { x: { shape: [1, 3], data: [2, 0, 1] }, y: { shape: [1, 1], data: [3] } });
  assert.throws(() => rowToInputs([{ name: 'a', input: 'z', index: 0 }], [1], inputs), { message: 'Feature "a" refers to unknown input "z".' });
});

test('graphArtifact and pageRelativeUrl', () => {
  const m = { artifacts: [{ format: 'tflite', path: 'edge/a.tflite' }, { format: 'tfjs_graph', path: 'web/model/graph/model.json' }] };
  assert.equal(graphArtifact(m).path, 'web/model/graph/model.json');
  assert.throws(() => graphArtifact({ artifacts: [] }), { message: 'The bundle has no TFJS graph model: run deploykit convert again.' });
  const rejected = { format: 'tfjs_graph', path: 'web/model/graph/model.json', status: 'rejected', rejection: 'max error 2% of the output range > 1%' };
  assert.throws(() => graphArtifact({ artifacts: [rejected] }),
    { message: "The bundle's TFJS graph model was rejected by deploykit convert (max error 2% of the output range > 1%)." });
  assert.equal(pageRelativeUrl('web/model/graph/model.json'), './model/graph/model.json');
  for (const bad of ['/etc/passwd', 'web/../manifest.json', 'https://cdn.example/model.json']) {
    assert.throws(() => pageRelativeUrl(bad), { message: `Unsafe artifact path "${bad}" in manifest.json.` });
  }
  assert.throws(() => pageRelativeUrl('edge/model.tflite'), { message: 'Artifact "edge/model.tflite" is outside the web folder.' });
});
