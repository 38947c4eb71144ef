// The page's picture panel, for a model whose one input is an image: a file picker, drag and drop and the
// camera (where the browser has getUserMedia), then the picture beside the top-k answer with the manifest's
// labels. The tensor is made by image.js (the same arithmetic as the Pi runner's edge/images.py). Labels
// are data from the bundle: they are only ever set as textContent.
import { imageInputs, tensorFromRGBA, decodeRGBA, topK } from './image.js';
import { formatG } from './tolerance.js';

const TOP_K = 5;

/** Filled by mountImage: what tests and benchmarks call (window.deploykit.image). */
export const imageApi = {};

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k in e) e[k] = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

/**
 * Add the picture panel after #predict-form when the model takes one image; returns false otherwise.
 * When the bundle does not say which pixel values the model takes, the panel only says how to fix that and
 * the JSON box stays the way to predict.
 * @param {object} manifest
 * @param {{run: (inputs: object) => Promise<object>, backend: () => string,
 *   describe?: (outputs: object) => string, shown?: (outputs: object) => void}} hooks app.js's runModel, backend,
 *   the prediction line for outputs that are not class scores, and what to call once an answer is shown
 */
export function mountImage(manifest, hooks) {
  const specs = imageInputs(manifest);
  if (specs.length !== 1 || manifest.inputs.length !== 1) return false;
  const spec = specs[0];
  const output = manifest.outputs[0];
  const classifier = manifest.task === 'classification';
  if (!spec.pixels) {
    const why = `This model takes a ${spec.width}×${spec.height} picture, but the bundle does not say which pixel ` +
      'values it expects, so pictures cannot be used: re-convert with --image-scale LOW..HIGH (e.g. 0..1). ' +
      'Meanwhile, type the input as JSON above.';
    document.getElementById('predict-form').after(el('section', { id: 'image-panel', className: 'panel' },
      el('h2', {}, 'Picture'), el('p', { id: 'image-msg', className: 'msg warning', role: 'status' }, why)));
    return false;
  }
  // Top-k for class scores (one output, one row of more than one class); else the app's prediction line.
  const ranked = classifier && manifest.outputs.length === 1 && Array.isArray(output.shape) &&
    output.shape.length === 2 && output.shape[1] > 1;

  const file = el('input', { id: 'image-file', type: 'file', accept: 'image/png,image/jpeg,image/*' });
  const drop = el('div', { id: 'image-drop', className: 'drop', tabIndex: 0 },
    el('p', {}, 'Drop a picture here, or choose one: '), file);
  const cameraButton = el('button', { type: 'button', id: 'camera-button', className: 'secondary' }, 'Use the camera');
  const shotButton = el('button', { type: 'button', id: 'camera-shot', hidden: true }, 'Take the picture');
  const video = el('video', { id: 'camera-video', playsInline: true, muted: true, hidden: true });
  const msg = el('p', { id: 'image-msg', className: 'msg', role: 'status' });
  const preview = el('img', { id: 'image-preview', alt: 'The picture the model saw' });
  const list = el('ol', { id: 'image-topk' });
  const answer = el('p', { id: 'image-answer', className: 'prediction', hidden: true });
  const info = el('p', { id: 'image-info', className: 'muted' });
  const result = el('div', { id: 'image-result', className: 'image-result', hidden: true },
    preview, el('div', {}, list, answer, info));
  const hint = `The picture is resized to ${spec.width}×${spec.height} (stretched) and scaled to ` +
    (spec.pixels ? `${spec.pixels[0]}..${spec.pixels[1]}` : 'an unknown range') + ' on this device; nothing is uploaded.';
  const panel = el('section', { id: 'image-panel', className: 'panel' },
    el('h2', {}, 'Picture'), drop, el('div', { className: 'controls' }, cameraButton, shotButton), video,
    el('p', { className: 'hint' }, hint), msg, result);
  document.getElementById('predict-form').after(panel);
  // The JSON box and its Predict button are for tensors typed by hand: a picture replaces them.
  for (const id of ['json-field', 'predict-button']) document.getElementById(id).hidden = true;

  const hasCamera = Boolean(navigator.mediaDevices && typeof navigator.mediaDevices.getUserMedia === 'function');
  cameraButton.hidden = !hasCamera;
  let previewUrl = null;
  let stream = null;
  let count = 0;

  const say = (text, kind = '') => {
    msg.textContent = text;
    msg.className = `msg ${kind}`.trim();
  };

  async function tensorOf(source) {
    const rgba = await decodeRGBA(source);
    return tensorFromRGBA(rgba, spec);
  }

  function show(outputs, ms) {
    info.textContent = `Backend ${hooks.backend()} · ${ms.toFixed(1)} ms`;
    result.hidden = false;
    list.hidden = !ranked;
    answer.hidden = ranked;
    if (!ranked) {
      answer.textContent = hooks.describe ? hooks.describe(outputs) : Array.from(outputs[output.key].data.slice(0, 16), (v) => formatG(v, 7)).join(', ');
      list.replaceChildren();
      return [];
    }
    const top = topK(outputs[output.key].data, output.labels, TOP_K);
    list.replaceChildren(...top.map((t) => el('li', { dataset: { index: String(t.index), score: String(t.score) } },
      el('span', { className: 'label' }, t.label ?? `class ${t.index}`), ' ',
      el('span', { className: 'score' }, `${(t.score * 100).toFixed(1)} %`))));
    return top;
  }

  /** Classify a Blob (a file), an ImageBitmap or a video frame; show it and its top-k. */
  async function classify(source, picture) {
    say('Classifying…');
    try {
      const t0 = performance.now();
      const data = await tensorOf(source);
      const outputs = await hooks.run({ [spec.name]: { shape: [1, spec.height, spec.width, spec.channels], data } });
      const ms = performance.now() - t0;
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      previewUrl = picture ? URL.createObjectURL(picture) : null;
      if (previewUrl) preview.src = previewUrl;
      const top = show(outputs, ms);
      if (hooks.shown) hooks.shown(outputs);
      say('');
      count += 1;
      if (count === 1) performance.mark('deploykit:first-image-prediction');
      document.body.dataset.images = String(count);
      return top;
    } catch (e) {
      say(`Error: ${e.message}`, 'error');
      throw e;
    }
  }

  const fromFiles = (files) => {
    const f = files && files[0];
    if (f) classify(f, f).catch(() => {});
  };
  file.addEventListener('change', () => fromFiles(file.files));
  drop.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    fromFiles(ev.dataTransfer && ev.dataTransfer.files);
  });

  cameraButton.addEventListener('click', async () => {
    if (stream) {
      stream.getTracks().forEach((t) => t.stop());
      stream = null;
      video.hidden = shotButton.hidden = true;
      cameraButton.textContent = 'Use the camera';
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
    } catch (e) {
      say(`Error: the camera cannot start (${e.message}). Choose a file instead.`, 'error');
      return;
    }
    video.srcObject = stream;
    await video.play().catch(() => {});
    video.hidden = shotButton.hidden = false;
    cameraButton.textContent = 'Stop the camera';
  });
  shotButton.addEventListener('click', async () => {
    const canvas = el('canvas', { width: video.videoWidth, height: video.videoHeight });
    canvas.getContext('2d').drawImage(video, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
    if (blob) classify(blob, blob).catch(() => {});
  });

  Object.assign(imageApi, {
    spec,
    classify: (blob) => classify(blob, blob),
    /** The model's input tensor for an image file, as a plain array (for the parity test). */
    tensor: async (blob) => Array.from(await tensorOf(blob)),
    hasCamera,
  });
  return true;
}
