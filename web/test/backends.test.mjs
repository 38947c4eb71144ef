import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backendPlan, parityVerdicts, pageArtifactPath } from '../src/backends.js';

const GRAPH = 'web/model/graph/model.json';
const manifest = (results) => ({
  artifacts: [{ path: 'edge/model.fp32.tflite', format: 'tflite' }, { path: GRAPH, format: 'tfjs_graph' }],
  ...(results ? { parity: { results } } : {}),
});
const r = (backend, status, extra = {}) => ({ artifact: GRAPH, runtime: `chromium-${backend}`, passed: status === 'passed', status, ...extra });

test('without a parity record: wasm, webgl, cpu', () => {
  assert.deepEqual(backendPlan(manifest(null), null), { order: ['wasm', 'webgl', 'cpu'], source: 'default', verdicts: {} });
  assert.deepEqual(backendPlan(null, null).order, ['wasm', 'webgl', 'cpu']);
});

test('the first backend that passed verify is the default; failed ones go last', () => {
  const m = manifest([r('wasm', 'unsupported', { error: 'TFJS wasm cannot run it' }), r('cpu', 'passed')]);
  const plan = backendPlan(m, null);
  assert.deepEqual(plan.order, ['cpu', 'webgl', 'wasm']);
  assert.equal(plan.source, 'parity');
  assert.deepEqual(plan.verdicts.wasm, { status: 'unsupported', passed: false, error: 'TFJS wasm cannot run it' });
  assert.deepEqual(backendPlan(manifest([r('wasm', 'failed'), r('webgl', 'passed'), r('cpu', 'passed')]), null).order,
    ['webgl', 'cpu', 'wasm']);
});

test('a record where nothing passed keeps the default order, failed last', () => {
  const plan = backendPlan(manifest([r('wasm', 'failed'), r('webgl', 'failed')]), null);
  assert.deepEqual(plan.order, ['cpu', 'wasm', 'webgl']);
  assert.equal(plan.source, 'default');
});

test('?backend= comes first, the record orders the rest', () => {
  const plan = backendPlan(manifest([r('wasm', 'failed'), r('cpu', 'passed')]), 'wasm');
  assert.deepEqual(plan.order, ['wasm', 'cpu', 'webgl']);
  assert.equal(plan.source, 'query');
  assert.equal(backendPlan(manifest(null), 'gpu').source, 'default');
});

test('only the graph model the page runs counts, and only chromium runtimes', () => {
  const m = manifest([{ artifact: 'web/model/layers/model.json', runtime: 'chromium-cpu', passed: true, status: 'passed' },
    { artifact: GRAPH, runtime: 'litert', passed: true, status: 'passed' }]);
  assert.deepEqual(parityVerdicts(m), {});
  assert.equal(pageArtifactPath({ artifacts: [{ path: 'a', format: 'tfjs_graph', status: 'rejected' }] }), null);
});
