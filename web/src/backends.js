// Which TFJS backend the page runs a bundle on, shared by boot.js (which preloads that backend's code while
// the rest of the page downloads) and app.js (which starts it), so both pick the same one.
//
// The order of preference is wasm (exact, fast to start), webgl, cpu. `deploykit verify` records, in
// manifest.json's parity.results, how the page's graph model did on each backend ("chromium-wasm", ...).
//   * ?backend=NAME asks for one backend: it is tried first.
//   * Otherwise, with a parity record, the first backend that passed is the default.
//   * Without one, wasm is.
// Either way the others follow as fallbacks (passed ones first, backends verify never ran next, failed ones
// last): when the first cannot load or run the model, app.js moves to the next and says so on the page.

/** The page's backends, in order of preference. */
export const BACKEND_ORDER = Object.freeze(['wasm', 'webgl', 'cpu']);

/**
 * The bundle path of the TFJS graph model the page runs, or null when there is none it can run.
 * @param {object} manifest
 * @returns {string|null}
 */
export function pageArtifactPath(manifest) {
  const graphs = ((manifest && manifest.artifacts) || []).filter((a) => a && a.format === 'tfjs_graph');
  const artifact = graphs.find((a) => a.status !== 'rejected');
  return artifact ? String(artifact.path) : null;
}

/**
 * What `deploykit verify` recorded for the page's graph model on each browser backend.
 * @param {object} manifest
 * @returns {Record<string, {status: string, passed: boolean, error: string}>} by backend name; backends verify
 *   did not run are absent
 */
export function parityVerdicts(manifest) {
  const path = pageArtifactPath(manifest);
  const results = (manifest && manifest.parity && Array.isArray(manifest.parity.results)) ? manifest.parity.results : [];
  const verdicts = {};
  for (const r of results) {
    if (!r || r.artifact !== path || typeof r.runtime !== 'string' || !r.runtime.startsWith('chromium-')) continue;
    const name = r.runtime.slice('chromium-'.length);
    if (!BACKEND_ORDER.includes(name)) continue;
    const passed = r.passed === true && (r.status === undefined || r.status === 'passed');
    verdicts[name] = { status: String(r.status || (passed ? 'passed' : 'failed')), passed, error: String(r.error || r.note || '') };
  }
  return verdicts;
}

/**
 * The backends to try, in order, and why the first one.
 * @param {object|null} manifest manifest.json (null when it could not be read: the default order)
 * @param {string|null} requested the ?backend= of the page's address
 * @returns {{order: string[], source: 'query'|'parity'|'default', verdicts: object}}
 */
export function backendPlan(manifest, requested) {
  const verdicts = manifest ? parityVerdicts(manifest) : {};
  const rank = (name) => (verdicts[name] ? (verdicts[name].passed ? 0 : 2) : 1);
  const order = [...BACKEND_ORDER].sort((a, b) => rank(a) - rank(b)); // stable: keeps wasm, webgl, cpu within a rank
  if (BACKEND_ORDER.includes(requested)) {
    return { order: [requested, ...order.filter((n) => n !== requested)], source: 'query', verdicts };
  }
  const source = order.some((n) => verdicts[n] && verdicts[n].passed) ? 'parity' : 'default';
  return { order, source, verdicts };
}
