// Vendor entry: the part of TFJS the page always needs: all of tfjs-core (re-exported whole, so the lazily
// loaded backends import their tfjs-core from this file and share one engine), the graph-model loader and
// the wasm backend. The cpu and webgl backends are separate files, loaded only when the user picks them.
export * from '@tensorflow/tfjs-core';
export { loadGraphModel, version_converter } from '@tensorflow/tfjs-converter';
export { setWasmPaths, version_wasm } from '@tensorflow/tfjs-backend-wasm';
