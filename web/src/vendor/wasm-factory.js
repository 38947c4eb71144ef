// Stands in for tfjs-backend-wasm's emscripten module factory (wasm-out/tfjs-backend-wasm.js; build.mjs
// redirects the backend's import here) so the page can hand over a WebAssembly.Module it compiled early
// (boot.js streams and compiles the binary while the JavaScript is still downloading). Without one, or when
// the backend asks for a different binary than the one compiled, this is the unchanged factory, which
// fetches and compiles the binary itself.
import * as glue from '@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm.js';

const factory = glue.default || glue;
let compiled = null; // {url: string, module: WebAssembly.Module}

/**
 * Use this compiled module when the wasm backend initialises and asks for the binary at `url`.
 * Call before tf.setBackend('wasm').
 * @param {string} url absolute URL the module was compiled from
 * @param {WebAssembly.Module} module
 */
export function useCompiledWasm(url, module) {
  compiled = module instanceof WebAssembly.Module ? { url: String(url), module } : null;
}

export default function wasmModuleFactory(config = {}) {
  const c = compiled;
  if (!c || config.instantiateWasm || typeof config.locateFile !== 'function') return factory(config);
  let wanted;
  try {
    wanted = new URL(config.locateFile('tfjs-backend-wasm.wasm', ''), document.baseURI).href;
  } catch {
    return factory(config);
  }
  if (wanted !== c.url) return factory(config);
  return factory({
    ...config,
    // Emscripten's hook: instantiate with its imports, hand the instance back, return {} (async).
    instantiateWasm(imports, receiveInstance) {
      WebAssembly.instantiate(c.module, imports).then(
        (instance) => receiveInstance(instance, c.module),
        (e) => config.onAbort?.(e),
      );
      return {};
    },
  });
}
