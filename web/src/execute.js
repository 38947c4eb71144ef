// Run a TFJS graph model with model.execute, the synchronous path, when the graph allows it; otherwise
// (control flow such as tf.cond / tf.while_loop, or dynamic-shape ops such as Where and NonMaxSuppression)
// with model.executeAsync. TFJS itself decides: execute refuses such a graph with an error that names
// executeAsync, and the model then stays on executeAsync. executeAsync is not the default because it costs
// more per call (Boston MLP on wasm: about 0.5 ms against 0.2 ms) and warns on every call for a graph that
// does not need it.

const asyncModels = new WeakSet();
const NEEDS_ASYNC = /executeAsync\(\)/;

/**
 * @param {object} tf the tfjs-core namespace (tidy, dispose)
 * @param {object} model a tf.GraphModel
 * @param {() => Record<string, object>} makeFeed creates the input tensors, keyed by input name
 * @param {string[]|undefined} names output names (undefined: the model's outputs)
 * @returns {Promise<object[]>} the output tensors, in order; the caller disposes them. Every other tensor
 *   made here (inputs, intermediates) is disposed, also when execution fails.
 */
export async function executeGraph(tf, model, makeFeed, names) {
  if (!asyncModels.has(model)) {
    try {
      return tf.tidy(() => {
        const r = model.execute(makeFeed(), names);
        return Array.isArray(r) ? r : [r];
      });
    } catch (e) {
      if (!NEEDS_ASYNC.test(String(e && e.message))) throw e;
      asyncModels.add(model);
    }
  }
  const feed = makeFeed();
  let outs = [];
  try {
    const r = await model.executeAsync(feed, names);
    outs = Array.isArray(r) ? r : [r];
    return outs;
  } finally {
    tf.dispose(Object.values(feed).filter((t) => !outs.includes(t)));
  }
}

/** Whether executeGraph runs this model with executeAsync (known after its first call). */
export function runsAsync(model) {
  return asyncModels.has(model);
}
