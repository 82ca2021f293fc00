// @ts-check
/**
 * What the planned step map is planned on, read from the graph around a step-map node (pure: no DOM, no
 * ComfyUI imports; tests/web/graph_settings.test.mjs runs it on fake graphs).
 *
 * Why: the map an artist judges the speed-up by must be the map the run will make, and the run takes its frames
 * from the latent, its steps and sigmas from the sampler or scheduler, its noise levels from the model's shift and
 * its cost from the model itself. So the widget follows the links: from RhymeFlow Accelerate down its MODEL output
 * (through other MODEL patches) to the KSampler / KSamplerAdvanced / SamplerCustom or guider that uses it, from the
 * Async Sampler down its SAMPLER output to SamplerCustom(Advanced); from there to the sigmas node and the latent
 * node; and up the MODEL inputs to ModelSamplingSD3 and the loader. What is found is sent to
 * GET /rhymeflow/step_map, where the Python core turns it into the plan (the sigmas by ComfyUI's own scheduler, the
 * FLOP dims from the model file); what is not found falls back to the widget's own boxes, and ``sources`` says
 * which is which.
 *
 * ComfyUI imports every .js under web/ as an extension; importing this module has no side effects.
 */

/**
 * @typedef {object} GNode the parts of a LiteGraph node read here
 * @property {number | string} id
 * @property {string} type
 * @property {{name: string, value: unknown}[]} [widgets]
 * @property {{name: string, type: string | number, link: number | null}[]} [inputs]
 * @property {{name: string, type: string | number, links: number[] | null}[]} [outputs]
 * @property {number} [mode] 4 = bypassed (the frontend's LGraphEventMode.BYPASS), 2 = muted
 */
/**
 * @typedef {object} GLink
 * @property {number | string} origin_id
 * @property {number} origin_slot
 * @property {number | string} target_id
 * @property {number} target_slot
 */
/**
 * @typedef {object} GraphLike
 * @property {(id: number | string) => GNode | null | undefined} node
 * @property {(id: number) => GLink | null | undefined} link
 */
/**
 * @typedef {object} GraphSettings
 * @property {Record<string, string | number>} values query parameters read from the graph
 * @property {Record<string, string>} sources which node each group of values came from (frames, steps, shift,
 *   model, context), e.g. ``{frames: "EmptyHunyuanLatentVideo #8"}``
 */

/**
 * Latent nodes: time and space compression of the VAE they are made for (ComfyUI's own formulas: latent frames =
 * (length - 1) / t + 1, grid = pixels / s), or a widget that already counts latent frames; ``slot`` is the LATENT
 * output when the node has several.
 * @type {Record<string, {t?: number, s?: number, framesWidget?: string, grid?: [number, number]}>}
 */
export const LATENT_NODES = Object.freeze({
  EmptyHunyuanLatentVideo: { t: 4, s: 8 }, // Wan 2.1, HunyuanVideo
  WanImageToVideo: { t: 4, s: 8 },
  Wan22ImageToVideoLatent: { t: 4, s: 16 }, // Wan 2.2 TI2V-5B's VAE
  EmptyMochiLatentVideo: { t: 6, s: 8 },
  EmptyLTXVLatentVideo: { t: 8, s: 32 },
  RhymeFlowTestbedEmptyLatent: { framesWidget: "frames", grid: [16, 16] }, // 64 x 64 pixels, pseudo-VAE 4x
});

/** Samplers reached from a MODEL: their widgets and which input holds the latent / the sigmas. */
const MODEL_SAMPLERS = new Set(["KSampler", "KSamplerAdvanced", "SamplerCustom"]);
const GUIDERS = new Set(["CFGGuider", "BasicGuider", "DualCFGGuider"]);
const SIGMA_SAMPLERS = new Set(["SamplerCustom", "SamplerCustomAdvanced"]);
/** MODEL -> MODEL nodes whose widget sets the flow shift (what ComfyUI's ModelSampling nodes set). */
const SHIFT_NODES = Object.freeze({ ModelSamplingSD3: "shift", ModelSamplingAuraFlow: "shift" });
/** Loaders whose file the route can read the model's dims from, and the widget naming the file. */
const LOADERS = Object.freeze({ UNETLoader: "unet_name", CheckpointLoaderSimple: "ckpt_name" });
const PATCH_NODE = "RhymeFlowProjectionPatch";
const BYPASSED = 4;
const MAX_HOPS = 32; // a graph walk never loops forever on a malformed graph

/** @param {GNode | null | undefined} node @param {string} name @returns {unknown} */
export function widgetValue(node, name) {
  return node?.widgets?.find((w) => w.name === name)?.value;
}

/** @param {GNode} n @returns {string} */
function label(n) {
  return `${n.type} #${n.id}`;
}

/**
 * The node feeding input ``name`` of ``node``, with the output slot it comes from.
 * @param {GraphLike} g @param {GNode | null | undefined} node @param {string} name
 * @returns {{node: GNode, slot: number} | null}
 */
export function upstream(g, node, name) {
  const input = node?.inputs?.find((i) => i.name === name);
  const link = input && input.link !== null && input.link !== undefined ? g.link(input.link) : null;
  const src = link ? g.node(link.origin_id) : null;
  return src && link ? { node: src, slot: link.origin_slot } : null;
}

/**
 * Every (node, input name) that output ``slot`` of ``node`` feeds.
 * @param {GraphLike} g @param {GNode} node @param {number} slot
 * @returns {{node: GNode, input: string}[]}
 */
export function downstream(g, node, slot) {
  /** @type {{node: GNode, input: string}[]} */
  const out = [];
  for (const id of node.outputs?.[slot]?.links ?? []) {
    const link = g.link(id);
    const dst = link ? g.node(link.target_id) : null;
    const input = dst?.inputs?.[link?.target_slot ?? -1];
    if (dst && input) out.push({ node: dst, input: input.name });
  }
  return out;
}

/** @param {GNode} node @param {string} type @returns {number} */
function outputSlot(node, type) {
  return node.outputs?.findIndex((o) => o.type === type) ?? -1;
}

/**
 * The sampler that runs ``start``'s MODEL: down the MODEL output through MODEL -> MODEL nodes to a KSampler-like
 * node, or a guider and then the SamplerCustomAdvanced using it.
 * @param {GraphLike} g @param {GNode} start
 * @returns {GNode | null}
 */
function samplerOfModel(g, start) {
  let frontier = [start];
  for (let hop = 0; hop < MAX_HOPS && frontier.length; hop++) {
    /** @type {GNode[]} */
    const next = [];
    for (const n of frontier) {
      const slot = outputSlot(n, "MODEL");
      if (slot < 0) continue;
      for (const { node, input } of downstream(g, n, slot)) {
        if (input !== "model") continue;
        if (node.mode === BYPASSED) continue;
        if (MODEL_SAMPLERS.has(node.type)) return node;
        if (GUIDERS.has(node.type)) {
          const gs = outputSlot(node, "GUIDER");
          const use = gs >= 0 ? downstream(g, node, gs).find((d) => d.input === "guider") : undefined;
          if (use) return use.node;
        } else if (outputSlot(node, "MODEL") >= 0) next.push(node);
      }
    }
    frontier = next;
  }
  return null;
}

/**
 * Up the ``model`` inputs from ``node``: the first shift node and the loader.
 * @param {GraphLike} g @param {GNode | null} node
 * @returns {{shift: GNode | null, loader: GNode | null, patch: GNode | null}}
 */
function modelChain(g, node) {
  /** @type {{shift: GNode | null, loader: GNode | null, patch: GNode | null}} */
  const out = { shift: null, loader: null, patch: null };
  let n = node;
  for (let hop = 0; hop < MAX_HOPS && n; hop++) {
    if (n.mode !== BYPASSED) {
      if (!out.shift && n.type in SHIFT_NODES) out.shift = n;
      if (!out.patch && n.type === PATCH_NODE) out.patch = n;
      if (n.type in LOADERS) {
        out.loader = n;
        break;
      }
    }
    n = upstream(g, n, "model")?.node ?? null;
  }
  return out;
}

/**
 * Steps, scheduler, denoise and step range from the node that makes the sigmas a sampler uses.
 * @param {GraphLike} g @param {GNode} sampler
 * @returns {{values: Record<string, string | number>, from: GNode | null, model: GNode | null}}
 *   ``model``: the node whose MODEL the scheduler reads (for the shift)
 */
function stepSettings(g, sampler) {
  if (sampler.type === "KSampler") {
    return { values: pick(sampler, { steps: "steps", scheduler: "scheduler", denoise: "denoise" }), from: sampler, model: null };
  }
  if (sampler.type === "KSamplerAdvanced") {
    return {
      values: pick(sampler, { steps: "steps", scheduler: "scheduler", start_step: "start_at_step", end_step: "end_at_step" }),
      from: sampler,
      model: null,
    };
  }
  if (!SIGMA_SAMPLERS.has(sampler.type)) return { values: {}, from: null, model: null };
  let src = upstream(g, sampler, "sigmas");
  /** @type {Record<string, string | number>} */
  const range = {};
  if (src?.node.type === "SplitSigmas") {
    const at = Number(widgetValue(src.node, "step"));
    if (Number.isFinite(at)) Object.assign(range, src.slot === 0 ? { start_step: 0, end_step: at } : { start_step: at });
    src = upstream(g, src.node, "sigmas");
  }
  if (src?.node.type !== "BasicScheduler") return { values: {}, from: null, model: null };
  const values = { ...pick(src.node, { steps: "steps", scheduler: "scheduler", denoise: "denoise" }), ...range };
  return { values, from: src.node, model: upstream(g, src.node, "model")?.node ?? null };
}

/**
 * @param {GNode} node @param {Record<string, string>} names query name -> widget name
 * @returns {Record<string, string | number>}
 */
function pick(node, names) {
  /** @type {Record<string, string | number>} */
  const out = {};
  for (const [key, widget] of Object.entries(names)) {
    const v = widgetValue(node, widget);
    if (typeof v === "number" || typeof v === "string") out[key] = v;
  }
  return out;
}

/**
 * Latent frames and grid from a latent node, or null when its type is not known here.
 * @param {GNode} node
 * @returns {{frames: number, latent_h?: number, latent_w?: number} | null}
 */
export function latentShape(node) {
  const spec = /** @type {Record<string, {t?: number, s?: number, framesWidget?: string, grid?: [number, number]}>} */ (LATENT_NODES)[node.type];
  if (!spec) return null;
  if (spec.framesWidget) {
    const frames = Number(widgetValue(node, spec.framesWidget));
    if (!Number.isInteger(frames)) return null;
    return spec.grid ? { frames, latent_h: spec.grid[0], latent_w: spec.grid[1] } : { frames };
  }
  const length = Number(widgetValue(node, "length"));
  const width = Number(widgetValue(node, "width"));
  const height = Number(widgetValue(node, "height"));
  if (![length, width, height].every(Number.isFinite) || !spec.t || !spec.s) return null;
  return { frames: Math.floor((length - 1) / spec.t) + 1, latent_h: Math.floor(height / spec.s), latent_w: Math.floor(width / spec.s) };
}

/**
 * Everything the plan can take from the graph around step-map node ``node`` (RhymeFlow Accelerate or the Async
 * Sampler). Values absent from the result are not in the graph (or not readable): the widget's boxes stand in.
 * @param {GraphLike} g
 * @param {GNode} node
 * @returns {GraphSettings}
 */
export function graphSettings(g, node) {
  /** @type {Record<string, string | number>} */
  const values = {};
  /** @type {Record<string, string>} */
  const sources = {};
  /** @type {GNode | null} */
  let sampler = null;
  /** @type {GNode | null} */
  let modelEnd = null; // where the walk up the model chain starts
  if (node.type === "RhymeFlowAsyncSampler") {
    const slot = outputSlot(node, "SAMPLER");
    sampler = slot >= 0 ? downstream(g, node, slot).find((d) => SIGMA_SAMPLERS.has(d.node.type) && d.input === "sampler")?.node ?? null : null;
    const guider = sampler ? upstream(g, sampler, "guider")?.node ?? null : null;
    modelEnd = guider ? upstream(g, guider, "model")?.node ?? null : sampler ? upstream(g, sampler, "model")?.node ?? null : null;
  } else {
    sampler = samplerOfModel(g, node);
    modelEnd = upstream(g, node, "model")?.node ?? null;
  }
  let schedulerModel = null;
  if (sampler) {
    const steps = stepSettings(g, sampler);
    Object.assign(values, steps.values);
    if (steps.from) sources.steps = label(steps.from);
    schedulerModel = steps.model;
    // a second expert samples the first one's output: its latent is the first sampler's
    let latent = upstream(g, sampler, "latent_image")?.node;
    for (let hop = 0; hop < MAX_HOPS && latent && (MODEL_SAMPLERS.has(latent.type) || SIGMA_SAMPLERS.has(latent.type)); hop++) {
      latent = upstream(g, latent, "latent_image")?.node;
    }
    const shape = latent ? latentShape(latent) : null;
    if (latent && shape) {
      Object.assign(values, shape);
      sources.frames = label(latent);
    }
  }
  const chain = modelChain(g, modelEnd);
  const shiftNode = chain.shift ?? (schedulerModel ? modelChain(g, schedulerModel).shift : null);
  if (shiftNode) {
    const shift = Number(widgetValue(shiftNode, /** @type {Record<string, string>} */ (SHIFT_NODES)[shiftNode.type]));
    if (Number.isFinite(shift)) {
      values.shift = shift;
      sources.shift = label(shiftNode);
    }
  }
  if (chain.loader) {
    const file = widgetValue(chain.loader, /** @type {Record<string, string>} */ (LOADERS)[chain.loader.type]);
    if (typeof file === "string" && file) {
      values.model_loader = chain.loader.type;
      values.model_file = file;
      sources.model = label(chain.loader);
    }
  }
  const contextNode = node.type === "RhymeFlowAccelerate" ? node : chain.patch;
  const mode = widgetValue(contextNode, "context_mode");
  if (contextNode && typeof mode === "string") {
    values.context_mode = mode;
    sources.context = label(contextNode);
  }
  return { values, sources };
}

/**
 * One line saying what the plan came from: which settings the graph gave and which the boxes, and whether its
 * cost is priced on the model's own size (read from its file) or on an assumed one.
 * @param {Record<string, string>} sources
 * @param {boolean} ownSize
 * @returns {string}
 */
export function basisLine(sources, ownSize) {
  /** @type {string[]} */
  const graph = [];
  /** @type {string[]} */
  const boxes = [];
  for (const key of ["frames", "steps", "shift"]) (sources[key] ? graph : boxes).push(key);
  if (sources.model) graph.push("model");
  let line = graph.length ? `${graph.join(", ")} from the graph` : "nothing from the graph";
  if (boxes.length) line += `; ${boxes.join(", ")} from the boxes`;
  return `${line} · cost on ${ownSize ? "this model's size" : "an assumed Wan 1.3B size"}`;
}
