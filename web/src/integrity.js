// What the page loads is what the bundle lists: every file it fetches (model.json, the weight shards,
// golden.json, the wasm binary) must be on the page's own origin, inside its folder (BUNDLE/web), listed in
// manifest.json with a sha256, and match that sha256 before it is used. manifest.json itself is the root:
// it is fetched from the page's folder only, and `deploykit verify` checks it is the bundle's manifest.
// The hash is SubtleCrypto's; where SubtleCrypto is missing (plain http from a LAN address is not a secure
// context), a small SHA-256 below computes the same digest.

/** An Error the page must not recover from by trying something else (another backend, say). */
export class IntegrityError extends Error {
  constructor(message) {
    super(message);
    this.name = 'IntegrityError';
    this.integrity = true;
  }
}

/**
 * The bundle path ("web/model/graph/group1-shard1of1.bin") of a file the page may fetch.
 * @param {string} rel a URL, relative to `base`
 * @param {string} base the URL it is relative to
 * @param {string} pageFolder the URL of the page's folder (BUNDLE/web/)
 * @returns {{url: string, path: string}}
 * @throws {IntegrityError} another origin, or outside the page's folder
 */
export function bundleFile(rel, base, pageFolder) {
  const url = new URL(rel, base);
  const folder = new URL(pageFolder);
  if (url.origin !== folder.origin) {
    throw new IntegrityError(`Refusing ${url.href}: it is on another site, and the page loads only its own bundle's files.`);
  }
  if (!url.pathname.startsWith(folder.pathname) || url.search || url.hash) {
    throw new IntegrityError(`Refusing ${url.href}: it is outside the bundle's web folder.`);
  }
  let path;
  try {
    path = 'web/' + decodeURIComponent(url.pathname.slice(folder.pathname.length));
  } catch {
    throw new IntegrityError(`Refusing ${url.href}: its path is malformed.`);
  }
  return { url: url.href, path };
}

/**
 * The sha256 manifest.json lists for a bundle path (an artifact's, or an entry of "files").
 * @throws {IntegrityError} when it is not listed
 */
export function listedSha256(manifest, path) {
  const artifact = (manifest.artifacts || []).find((a) => a.path === path);
  if (artifact && typeof artifact.sha256 === 'string') return artifact.sha256;
  const files = manifest.files || {};
  if (Object.prototype.hasOwnProperty.call(files, path) && typeof files[path] === 'string') return files[path];
  throw new IntegrityError(`${path} is not listed in manifest.json with a sha256, so the page will not use it: re-create the bundle.`);
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

/** The sha256 of some bytes, as lowercase hex. */
export async function sha256Hex(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  if (subtle && typeof subtle.digest === 'function') return hex(new Uint8Array(await subtle.digest('SHA-256', bytes)));
  return hex(sha256(bytes));
}

/**
 * Check bytes against the sha256 manifest.json lists for them; returns the bytes.
 * @throws {IntegrityError} not listed, or a different digest
 */
export async function checkBytes(manifest, path, buffer) {
  const want = listedSha256(manifest, path).toLowerCase();
  const got = await sha256Hex(buffer);
  if (got !== want) {
    throw new IntegrityError(
      `Integrity check failed: ${path} does not match its sha256 in manifest.json (expected ${want.slice(0, 12)}…, ` +
      `got ${got.slice(0, 12)}…). Nothing was run with it: copy the bundle again.`,
    );
  }
  return buffer;
}

/**
 * Fetch a bundle file (or take the response already under way) and check it; returns its bytes.
 * @param {object} manifest
 * @param {{url: string, path: string}} file from bundleFile
 * @param {Promise<Response>|Promise<ArrayBuffer>} [started] the same request boot.js started
 */
export async function fetchChecked(manifest, file, started) {
  listedSha256(manifest, file.path); // listed before anything is fetched
  let got = started ? await started.catch(() => null) : null;
  if (!(got instanceof ArrayBuffer)) {
    let res = got;
    if (!res) {
      try {
        res = await fetch(file.url, { credentials: 'same-origin' });
      } catch (e) {
        throw new Error(`Could not fetch ${file.path}: ${e.message}.`);
      }
    }
    if (!res.ok) throw new Error(`Could not load ${file.path} (HTTP ${res.status}). Serve the whole BUNDLE/web folder.`);
    got = await res.arrayBuffer();
  }
  return checkBytes(manifest, file.path, got);
}

// ---------------------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4), for pages served where SubtleCrypto is not available.

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** SHA-256 of `bytes` (a Uint8Array); returns the 32-byte digest. */
export function sha256(bytes) {
  const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const blocks = Math.ceil((bytes.length + 9) / 64);
  const padded = new Uint8Array(blocks * 64);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  const bits = bytes.length * 8;
  view.setUint32(padded.length - 8, Math.floor(bits / 0x100000000));
  view.setUint32(padded.length - 4, bits >>> 0);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, k] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      k = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) outView.setUint32(i * 4, h[i]);
  return out;
}
