// Images as model inputs on the page: the JavaScript twin of edge/images.py. Same steps, same IEEE-754
// double operations in the same order (docs/architecture.md, "Class labels and image inputs"), so a PNG
// gives the page the same float32 tensor as the Pi runner, bit for bit (tests/web/test_web_images.py).
// No TFJS here: plain arithmetic on the RGBA bytes the browser decoded.

/**
 * The manifest's image inputs: [{name, height, width, channels, pixels: [low, high] | null}].
 * @param {object} manifest
 */
export function imageInputs(manifest) {
  return (manifest.inputs || [])
    .filter((i) => i && i.image && typeof i.image === 'object')
    .map((i) => ({
      name: i.name,
      height: i.image.height,
      width: i.image.width,
      channels: i.image.channels,
      pixels: Array.isArray(i.image.pixels) ? [Number(i.image.pixels[0]), Number(i.image.pixels[1])] : null,
    }));
}

/** Bilinear sampling along one axis, half-pixel centres: {i0, i1, f} per output index. */
function axis(nIn, nOut) {
  const ratio = nIn / nOut;
  const i0 = new Int32Array(nOut);
  const i1 = new Int32Array(nOut);
  const f = new Float64Array(nOut);
  for (let o = 0; o < nOut; o++) {
    let s = (o + 0.5) * ratio - 0.5;
    s = Math.min(Math.max(s, 0), nIn - 1);
    const lo = Math.floor(s);
    i0[o] = lo;
    i1[o] = Math.min(lo + 1, nIn - 1);
    f[o] = s - lo;
  }
  return { i0, i1, f };
}

/**
 * Decoded RGBA bytes as the model's input tensor data, [height, width, channels] row-major, float32.
 * @param {{data: Uint8ClampedArray|Uint8Array, width: number, height: number}} rgba as getImageData returns it
 * @param {{height: number, width: number, channels: number, pixels: number[]|null, name: string}} spec
 * @returns {Float32Array}
 * @throws {Error} the bundle does not say which pixel values the model takes
 */
export function tensorFromRGBA(rgba, spec) {
  if (!spec.pixels) {
    throw new Error(`Input "${spec.name}" is an image but the bundle does not say which pixel values the model takes; re-convert with --image-scale LOW..HIGH (e.g. 0..1).`);
  }
  const { width: w, height: h, data } = rgba;
  const C = spec.channels;
  // the source plane, float64, C channels per pixel (gray from RGB for 1 channel)
  const src = new Float64Array(w * h * C);
  for (let p = 0; p < w * h; p++) {
    const r = data[4 * p], g = data[4 * p + 1], b = data[4 * p + 2];
    if (C === 1) src[p] = (0.299 * r + 0.587 * g) + 0.114 * b;
    else {
      src[C * p] = r;
      src[C * p + 1] = g;
      src[C * p + 2] = b;
      if (C === 4) src[C * p + 3] = data[4 * p + 3];
    }
  }
  const ys = axis(h, spec.height);
  const xs = axis(w, spec.width);
  const [low, high] = spec.pixels;
  const step = (high - low) / 255;
  const out = new Float32Array(spec.height * spec.width * C);
  let k = 0;
  for (let y = 0; y < spec.height; y++) {
    const r0 = ys.i0[y] * w, r1 = ys.i1[y] * w, fy = ys.f[y], gy = 1 - fy;
    for (let x = 0; x < spec.width; x++) {
      const c0 = xs.i0[x], c1 = xs.i1[x], fx = xs.f[x], gx = 1 - fx;
      for (let c = 0; c < C; c++) {
        const top = src[(r0 + c0) * C + c] * gx + src[(r0 + c1) * C + c] * fx;
        const bottom = src[(r1 + c0) * C + c] * gx + src[(r1 + c1) * C + c] * fx;
        const v = top * gy + bottom * fy;
        out[k++] = low + v * step; // the one rounding to float32
      }
    }
  }
  return out;
}

/**
 * Decode an image file (a Blob: PNG, JPEG, or anything this browser decodes) to RGBA bytes, EXIF orientation
 * applied, no colour-space conversion and no premultiplied alpha (exact for an opaque 8-bit PNG).
 * @param {Blob|ImageBitmap|HTMLVideoElement} source
 * @returns {Promise<{data: Uint8ClampedArray, width: number, height: number}>}
 * @throws {Error} the browser cannot decode it
 */
export async function decodeRGBA(source) {
  let bitmap;
  try {
    bitmap = source instanceof ImageBitmap ? source
      : await createImageBitmap(source, { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
  } catch (e) {
    throw new Error(`This file is not an image this browser can decode (${e.message}). Use a PNG or JPEG.`);
  }
  const width = bitmap.width, height = bitmap.height;
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const { data } = ctx.getImageData(0, 0, width, height);
  return { data, width, height };
}

/**
 * The k highest scores of one row, highest first (ties: lower index first), as edge/images.py's top_k.
 * @param {ArrayLike<number>} scores
 * @param {string[]|undefined} labels
 * @param {number} k
 * @returns {{index: number, label: string|null, score: number}[]}
 */
export function topK(scores, labels, k) {
  const order = Array.from(scores, (s, i) => i).sort((a, b) => scores[b] - scores[a] || a - b);
  return order.slice(0, Math.max(1, Math.min(k, scores.length))).map((i) => ({
    index: i,
    label: Array.isArray(labels) ? labels[i] : null,
    score: scores[i],
  }));
}
