import { test } from 'node:test';
import assert from 'node:assert/strict';
import { imageInputs, tensorFromRGBA, topK } from '../src/image.js';

const rgba = (w, h, px) => ({ width: w, height: h, data: Uint8ClampedArray.from(px.flatMap((p) => [...p, 255])) });

test('imageInputs reads the manifest image entries', () => {
  const m = { inputs: [{ name: 'image', image: { height: 2, width: 3, channels: 3, pixels: [0, 1] } }, { name: 'x' }] };
  assert.deepEqual(imageInputs(m), [{ name: 'image', height: 2, width: 3, channels: 3, pixels: [0, 1] }]);
});

test('same size at 0..255 is the pixels themselves', () => {
  const px = [[1, 2, 3], [250, 128, 0]];
  const t = tensorFromRGBA(rgba(2, 1, px), { name: 'i', height: 1, width: 2, channels: 3, pixels: [0, 255] });
  assert.deepEqual(Array.from(t), [1, 2, 3, 250, 128, 0]);
});

test('bilinear, half-pixel centres, edges clamped (as edge/images.py)', () => {
  const t = tensorFromRGBA(rgba(2, 1, [[0, 0, 0], [100, 100, 100]]), { name: 'i', height: 1, width: 4, channels: 3, pixels: [0, 255] });
  assert.deepEqual(Array.from(t), [0, 0, 0, 25, 25, 25, 75, 75, 75, 100, 100, 100]);
  const g = tensorFromRGBA(rgba(1, 1, [[10, 20, 30]]), { name: 'i', height: 1, width: 1, channels: 1, pixels: [0, 255] });
  assert.deepEqual(Array.from(g), [Math.fround((0.299 * 10 + 0.587 * 20) + 0.114 * 30)]);
  const s = tensorFromRGBA(rgba(1, 1, [[255, 255, 255]]), { name: 'i', height: 2, width: 2, channels: 3, pixels: [-1, 1] });
  assert.deepEqual(Array.from(s), new Array(12).fill(1));
});

test('an unknown pixel range names the flag', () => {
  assert.throws(() => tensorFromRGBA(rgba(1, 1, [[0, 0, 0]]), { name: 'image', height: 1, width: 1, channels: 3, pixels: null }),
    /re-convert with --image-scale LOW\.\.HIGH/);
});

test('topK: highest first, ties by index, labels as given', () => {
  assert.deepEqual(topK([0.1, 0.5, 0.5, 0.2], ['a', 'b', '<c>', 'd'], 3), [
    { index: 1, label: 'b', score: 0.5 }, { index: 2, label: '<c>', score: 0.5 }, { index: 3, label: 'd', score: 0.2 }]);
  assert.deepEqual(topK([0.3, 0.7], undefined, 9).map((t) => t.label), [null, null]);
});
