// Vendor entry: registers the webgl backend (loaded on demand).
export { version_webgl } from '@tensorflow/tfjs-backend-webgl';
