// Stands in for the multi-threaded wasm build (54 KB of emscripten glue + its worker). Threads need a
// cross-origin-isolated page (COOP/COEP headers) that static hosts do not send, and a small tabular model
// gains nothing from them; app.js sets WASM_HAS_MULTITHREAD_SUPPORT=false so this is never called.
export default function threadedWasmNotBundled() {
  throw new Error('deploykit bundles the single-threaded wasm backend only');
}
export const wasmWorkerContents = '';
