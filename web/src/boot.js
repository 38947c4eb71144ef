// Start-up fetches, inlined by build.mjs into index.html as a classic <script> at the top of <head> (before
// the stylesheet, so nothing blocks it). It starts, while app.js and vendor/tfjs.js are still downloading,
// everything the first prediction needs, all at once:
//   * manifest.json;
//   * the graph model at its fixed bundle path (web/model/graph/model.json), then its weight files as soon
//     as model.json names them (only files in the page's own folder, on its own origin);
//   * the code of the backend app.js will start first: the same choice (web/src/backends.js, bundled in by
//     build.mjs) from ?backend= or else manifest.json's parity record, so it waits for manifest.json unless
//     the address names a backend. For wasm, the binary (SIMD build when the browser has SIMD, the same test
//     TFJS uses), compiled while it streams in (WebAssembly.compileStreaming, which needs the server to send
//     application/wasm); for cpu or webgl, modulepreloads of that backend's files, each with its sha384
//     (app.js imports them only after vendor/tfjs.js has run).
// It also defines window.deploykitRefused, which index.html calls when the browser refuses app.js or
// vendor/tfjs.js (a file that does not match its sha384 in index.html, or a missing one).
// It only starts work: app.js (window.deploykitBoot) decides whether to use each result, and checks each
// file's sha256 against manifest.json before it does. A fetch that fails,
// a model that lives elsewhere, or a wasm that cannot compile here makes app.js take the ordinary path
// (tf.io.http, TFJS's own wasm loader), which then reports the error as before. Promises are pre-caught so a
// failure here never shows as an unhandled rejection.
import { BACKEND_ORDER, backendPlan } from './backends.js';

(() => {
  // The sha384 of every script (index.html's import map has the same), filled in by build.mjs.
  const integrity = /* deploykit:integrity */ {};
  // The page's code was refused (Subresource Integrity, or missing): say so instead of "Loading the model…",
  // then name the file: fetch the page's eager scripts again and compare each with its sha384.
  let refused = false;
  window.deploykitRefused = (file) => {
    if (location.protocol === 'file:') return; // module scripts never load from file:// (index.html explains)
    const status = document.getElementById('load-status');
    if (!status || refused) return;
    refused = true;
    const done = () => {
      document.body.dataset.state = 'error'; // once the message names the file (tests and verify read it then)
    };
    const say = (what, why) => {
      status.className = 'panel alert';
      status.textContent = `Error: the browser refused ${what}: ${why}. Nothing was run: copy the bundle again.`;
    };
    say(`${file} (or a file it imports)`, 'it is missing or does not match its sha384 in index.html');
    const subtle = globalThis.crypto && globalThis.crypto.subtle;
    if (!subtle || typeof fetch !== 'function') return done();
    const base64 = (bytes) => {
      let text = '';
      for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
      return btoa(text);
    };
    const check = async (rel) => {
      const r = await fetch(new URL(rel, document.baseURI).href, { cache: 'no-store', credentials: 'same-origin' });
      if (!r.ok) return [rel, `it is missing (HTTP ${r.status})`];
      const digest = new Uint8Array(await subtle.digest('SHA-384', await r.arrayBuffer()));
      return `sha384-${base64(digest)}` === integrity[rel] ? null : [rel, 'it does not match its sha384 in index.html'];
    };
    Promise.all(['./app.js', './vendor/tfjs.js'].map(check))
      .then((found) => {
        const bad = found.find(Boolean);
        if (bad) say(bad[0].slice(2), bad[1]);
      })
      .catch(() => {})
      .then(done);
  };
  if (location.protocol === 'file:' || typeof fetch !== 'function') return;
  const quiet = (p) => {
    p.catch(() => {});
    return p;
  };
  const abs = (rel, base = document.baseURI) => new URL(rel, base).href;
  const get = (url) => fetch(url, { credentials: 'same-origin' });
  const ok = (r) => {
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return r;
  };
  const boot = {};

  const manifest = get(abs('./manifest.json'));
  boot.manifest = quiet(manifest);

  const modelUrl = abs('./model/graph/model.json');
  // Only files of the page's own folder on its own origin are fetched early; app.js checks every one against
  // the sha256 manifest.json lists (web/src/integrity.js) before it is used, and refuses the rest itself.
  const folder = new URL(abs('./'));
  const inside = (u) => u.origin === folder.origin && u.pathname.startsWith(folder.pathname) && !u.search && !u.hash;
  boot.model = {
    url: modelUrl,
    artifacts: quiet(
      get(modelUrl)
        .then((r) => ok(r).arrayBuffer())
        .then((bytes) => {
          const json = JSON.parse(new TextDecoder().decode(bytes));
          const urls = [];
          for (const group of json.weightsManifest || []) for (const p of group.paths) urls.push(new URL(p, modelUrl));
          if (!urls.every(inside)) throw new Error('a weight file outside the page folder');
          return Promise.all(urls.map((u) => get(u.href).then((r) => ok(r).arrayBuffer()))).then((buffers) => ({ bytes, json, buffers }));
        }),
    ),
  };

  // The files of each lazily loaded backend, filled in by build.mjs from esbuild's output.
  const lazyBackends = /* deploykit:lazy-backends */ {};
  const preloadLazy = (name) => {
    for (const file of lazyBackends[name] || []) {
      const link = document.createElement('link');
      link.rel = 'modulepreload';
      link.href = `./vendor/${file}`;
      if (integrity[`./vendor/${file}`]) link.integrity = integrity[`./vendor/${file}`];
      document.head.append(link);
    }
    return null;
  };
  const startWasm = () => {
    if (typeof WebAssembly !== 'object') return null;
    let simd = false;
    try {
      // From wasm-feature-detect, as TFJS's WASM_HAS_SIMD_SUPPORT flag: a tiny module with a v128 instruction.
      simd = WebAssembly.validate(new Uint8Array([
        0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 10, 9, 1, 7, 0, 65, 0, 253, 15, 26, 11,
      ]));
    } catch {
      simd = false;
    }
    const wasmUrl = abs(`./vendor/${simd ? 'tfjs-backend-wasm-simd.wasm' : 'tfjs-backend-wasm.wasm'}`);
    const response = get(wasmUrl);
    // A copy of the bytes for app.js's sha256 check (cloned before the streaming compile reads the body).
    const bytes = quiet(response.then((r) => ok(r.clone()).arrayBuffer()));
    return {
      url: wasmUrl,
      bytes,
      module: quiet(
        typeof WebAssembly.compileStreaming === 'function'
          ? WebAssembly.compileStreaming(response)
          : response.then((r) => ok(r).arrayBuffer()).then((b) => WebAssembly.compile(b)),
      ),
    };
  };

  // The backend app.js will start first (web/src/backends.js decides for both).
  const requested = new URLSearchParams(location.search).get('backend');
  const chosen = BACKEND_ORDER.includes(requested)
    ? Promise.resolve(requested)
    : manifest.then((r) => ok(r.clone()).json()).then((m) => backendPlan(m, requested).order[0], () => BACKEND_ORDER[0]);
  boot.backend = quiet(chosen);
  boot.wasm = quiet(chosen.then((name) => (name === 'wasm' ? startWasm() : preloadLazy(name))));
  window.deploykitBoot = boot;
})();
