// tfjs-core for inference, as TFJS's own custom bundles build it: the package's index.js without
// registerOptimizers() (training optimizers are never used by a prediction page).
import '@tensorflow/tfjs-core/dist/base_side_effects';
export * from '@tensorflow/tfjs-core/dist/base';
