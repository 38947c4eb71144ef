// executeGraph: model.execute for a static graph, model.executeAsync for one TFJS cannot run synchronously
// (here a dynamic-shape Where op), on real TFJS graph models (tfjs-core + converter + cpu backend in node).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import '@tensorflow/tfjs-backend-cpu';
import { executeGraph, runsAsync } from '../src/execute.js';

const placeholder = (name, type) => ({
  name, op: 'Placeholder', attr: { dtype: { type }, shape: { shape: { dim: [{ size: '-1' }] } } },
});
const graph = (nodes) => loadGraphModel(tf.io.fromMemory({
  modelTopology: { versions: { producer: 1, minConsumer: 0 }, node: nodes },
  weightSpecs: [],
  weightData: new ArrayBuffer(0),
}));

before(async () => {
  tf.env().set('IS_TEST', true); // no "install tfjs-node" banner
  await tf.setBackend('cpu');
});

test('a static graph runs with execute and leaves only its outputs', async () => {
  const model = await graph([placeholder('x', 'DT_FLOAT'), { name: 'neg', op: 'Neg', input: ['x'], attr: { T: { type: 'DT_FLOAT' } } }]);
  const before = tf.memory().numTensors;
  const outs = await executeGraph(tf, model, () => ({ x: tf.tensor([1, 2.5]) }), undefined);
  assert.equal(runsAsync(model), false);
  assert.deepEqual(Array.from(await outs[0].data()), [-1, -2.5]);
  assert.equal(tf.memory().numTensors, before + 1);
  tf.dispose(outs);
  assert.equal(tf.memory().numTensors, before);
});

test('a dynamic-shape graph falls back to executeAsync, once, and leaks nothing', async () => {
  const model = await graph([placeholder('x', 'DT_BOOL'), { name: 'w', op: 'Where', input: ['x'], attr: { T: { type: 'DT_BOOL' } } }]);
  const before = tf.memory().numTensors;
  for (const [mask, want] of [[[true, false, true], [0, 2]], [[false, true], [1]]]) {
    const outs = await executeGraph(tf, model, () => ({ x: tf.tensor(mask, undefined, 'bool') }), undefined);
    assert.equal(runsAsync(model), true);
    assert.deepEqual(Array.from(await outs[0].data()), want);
    tf.dispose(outs);
    assert.equal(tf.memory().numTensors, before);
  }
});

test('other execution errors are not swallowed', async () => {
  const model = await graph([placeholder('x', 'DT_FLOAT'), { name: 'neg', op: 'Neg', input: ['x'], attr: { T: { type: 'DT_FLOAT' } } }]);
  const before = tf.memory().numTensors;
  await assert.rejects(executeGraph(tf, model, () => ({ y: tf.tensor([1]) }), undefined));
  assert.equal(runsAsync(model), false);
  assert.equal(tf.memory().numTensors, before);
});
