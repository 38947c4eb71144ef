import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { bundleFile, checkBytes, listedSha256, sha256, sha256Hex } from '../src/integrity.js';

const nodeSha = (b) => createHash('sha256').update(b).digest('hex');
const hex = (u8) => Buffer.from(u8).toString('hex');

test('the JS SHA-256 matches node on every length around the block boundaries', () => {
  for (const n of [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 70000]) {
    const bytes = new Uint8Array(randomBytes(n));
    assert.equal(hex(sha256(bytes)), nodeSha(bytes), `length ${n}`);
  }
  assert.equal(hex(sha256(new TextEncoder().encode('abc'))), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('sha256Hex (SubtleCrypto) and the JS SHA-256 agree', async () => {
  const bytes = new Uint8Array(randomBytes(4097));
  assert.equal(await sha256Hex(bytes.buffer), hex(sha256(bytes)));
});

const page = 'http://127.0.0.1:8080/b/web/';
const manifest = {
  artifacts: [{ path: 'web/model/graph/model.json', sha256: nodeSha(Buffer.from('{}')) }],
  files: { 'web/model/graph/group1-shard1of1.bin': nodeSha(Buffer.from([1, 2, 3])) },
};

test('a file must be same-origin and inside the page folder', () => {
  const model = new URL('./model/graph/model.json', page).href;
  assert.deepEqual(bundleFile('group1-shard1of1.bin', model, page),
    { url: 'http://127.0.0.1:8080/b/web/model/graph/group1-shard1of1.bin', path: 'web/model/graph/group1-shard1of1.bin' });
  assert.throws(() => bundleFile('http://evil.example/w.bin', model, page),
    { message: 'Refusing http://evil.example/w.bin: it is on another site, and the page loads only its own bundle\'s files.' });
  assert.throws(() => bundleFile('../../../x.bin', model, page),
    { message: 'Refusing http://127.0.0.1:8080/b/x.bin: it is outside the bundle\'s web folder.' });
});

test('a listed file passes; a flipped byte and an unlisted file are refused', async () => {
  assert.equal(listedSha256(manifest, 'web/model/graph/model.json'), manifest.artifacts[0].sha256);
  await checkBytes(manifest, 'web/model/graph/group1-shard1of1.bin', new Uint8Array([1, 2, 3]).buffer);
  const want = manifest.files['web/model/graph/group1-shard1of1.bin'];
  const got = nodeSha(Buffer.from([1, 2, 4]));
  await assert.rejects(checkBytes(manifest, 'web/model/graph/group1-shard1of1.bin', new Uint8Array([1, 2, 4]).buffer), {
    name: 'IntegrityError',
    message: `Integrity check failed: web/model/graph/group1-shard1of1.bin does not match its sha256 in manifest.json (expected ${want.slice(0, 12)}…, got ${got.slice(0, 12)}…). Nothing was run with it: copy the bundle again.`,
  });
  await assert.rejects(checkBytes(manifest, 'web/other.bin', new ArrayBuffer(1)), {
    message: 'web/other.bin is not listed in manifest.json with a sha256, so the page will not use it: re-create the bundle.',
  });
});
