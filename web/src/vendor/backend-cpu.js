// Vendor entry: registers the cpu backend (loaded on demand).
export { version_cpu } from '@tensorflow/tfjs-backend-cpu';
