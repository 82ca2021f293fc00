// Unit tests of web/graph_settings.js and web/input_rules.js on fake graphs (node:test; no browser, no ComfyUI).
// The shipped example workflows are read as graphs here too: each step-map node finds its latent, steps and shift.
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { test } from "node:test";

import { basisLine, graphSettings, latentShape } from "../../web/graph_settings.js";
import { ignoredInputs, rulesFromNodeDef } from "../../web/input_rules.js";

const WORKFLOWS = new URL("../../example_workflows/", import.meta.url);

/**
 * A saved workflow as graph_settings reads a LiteGraph graph. Widget names come from the workflow's own order
 * (names below); only the widgets read here are named.
 */
const WIDGET_NAMES = {
  KSampler: ["seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler", "denoise"],
  KSamplerAdvanced: ["add_noise", "noise_seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler",
    "start_at_step", "end_at_step", "return_with_leftover_noise"],
  BasicScheduler: ["scheduler", "steps", "denoise"],
  SplitSigmas: ["step"],
  ModelSamplingSD3: ["shift"],
  UNETLoader: ["unet_name", "weight_dtype"],
  CheckpointLoaderSimple: ["ckpt_name"],
  EmptyHunyuanLatentVideo: ["width", "height", "length", "batch_size"],
  EmptyMochiLatentVideo: ["width", "height", "length", "batch_size"],
  EmptyLTXVLatentVideo: ["width", "height", "length", "batch_size"],
  WanImageToVideo: ["width", "height", "length", "batch_size"],
  Wan22ImageToVideoLatent: ["width", "height", "length", "batch_size"],
  RhymeFlowTestbedEmptyLatent: ["frames"],
  RhymeFlowAccelerate: ["preset", "target_speedup", "strategy", "budget", "context_mode", "warmup", "n_small", "n_large",
    "placement", "cache_dtype"],
  RhymeFlowProjectionPatch: ["context_mode", "placement", "cache_dtype"],
};

function graphOf(wf) {
  const nodes = new Map(wf.nodes.map((n) => [n.id, {
    ...n,
    widgets: (WIDGET_NAMES[n.type] ?? []).map((name, i) => ({ name, value: n.widgets_values?.[i] })),
  }]));
  const links = new Map(wf.links.map(([id, origin_id, origin_slot, target_id, target_slot]) =>
    [id, { origin_id, origin_slot, target_id, target_slot }]));
  return { nodes, g: { node: (id) => nodes.get(id), link: (id) => links.get(id) } };
}

function load(name) {
  return graphOf(JSON.parse(readFileSync(new URL(name, WORKFLOWS), "utf8")));
}

test("Wan 2.1 T2V drop-in: frames from the latent, steps and scheduler from KSampler, shift and model up the chain", () => {
  const { nodes, g } = load("Wan 2.1 T2V 1.3B with RhymeFlow Accelerate (KSampler).json");
  const acc = [...nodes.values()].find((n) => n.type === "RhymeFlowAccelerate");
  const { values, sources } = graphSettings(g, acc);
  assert.deepEqual(values, { steps: 30, scheduler: "simple", denoise: 1, frames: 21, latent_h: 60, latent_w: 104, shift: 8,
    model_loader: "UNETLoader", model_file: "wan2.1_t2v_1.3B_fp16.safetensors", context_mode: "kv" });
  assert.match(sources.frames, /^EmptyHunyuanLatentVideo #\d+$/);
  assert.match(sources.steps, /^KSampler #\d+$/);
  assert.match(sources.shift, /^ModelSamplingSD3 #\d+$/);
  assert.equal(basisLine(sources, true), "frames, steps, shift, model from the graph · cost on this model's size");
});

test("Async Sampler: steps from BasicScheduler, latent from SamplerCustomAdvanced, context from the Projection Patch", () => {
  const { nodes, g } = load("RhymeFlow try it now, bundled test bed, no download (Async Sampler).json");
  const sampler = [...nodes.values()].find((n) => n.type === "RhymeFlowAsyncSampler");
  const { values, sources } = graphSettings(g, sampler);
  assert.deepEqual(values, { scheduler: "simple", steps: 30, denoise: 1, frames: 16, latent_h: 16, latent_w: 16, shift: 3,
    model_loader: "UNETLoader", model_file: "testbed_wan.safetensors", context_mode: "kv" });
  assert.match(sources.context, /^RhymeFlowProjectionPatch #\d+$/);
});

test("Wan 2.2 A14B: each expert's node plans its own KSamplerAdvanced slice", () => {
  const { nodes, g } = load("Wan 2.2 T2V A14B, two experts, with RhymeFlow Accelerate (KSamplerAdvanced).json");
  const slices = [...nodes.values()].filter((n) => n.type === "RhymeFlowAccelerate")
    .map((n) => graphSettings(g, n).values).map((v) => [v.start_step, v.end_step, v.model_file]);
  const ks = [...nodes.values()].filter((n) => n.type === "KSamplerAdvanced").map((n) => [n.widgets_values[7], n.widgets_values[8]]);
  assert.equal(slices.length, 2);
  assert.deepEqual(slices.map((s) => [s[0], s[1]]).sort(), ks.sort());
  assert.ok(slices.every((s) => typeof s[2] === "string" && s[2].includes("noise")), JSON.stringify(slices));
});

test("every step-map node of every example workflow finds its frames and steps in the graph", () => {
  const names = readdirSync(WORKFLOWS).filter((f) => f.endsWith(".json"));
  assert.ok(names.length >= 10);
  for (const name of names) {
    const { nodes, g } = load(name);
    for (const n of nodes.values()) {
      if (n.type !== "RhymeFlowAccelerate" && n.type !== "RhymeFlowAsyncSampler") continue;
      const { values, sources } = graphSettings(g, n);
      assert.ok(sources.frames && Number.isInteger(values.frames), `${name} #${n.id}: frames ${JSON.stringify(sources)}`);
      // LTX samples with LTXVScheduler (its own shift rule): its steps come from the box, and the map says so
      const ltxvScheduler = [...nodes.values()].some((m) => m.type === "LTXVScheduler");
      if (!ltxvScheduler) assert.ok(sources.steps && Number.isInteger(values.steps), `${name} #${n.id}: steps`);
    }
  }
});

test("nothing connected: everything from the boxes", () => {
  const g = { node: () => null, link: () => null };
  const { values, sources } = graphSettings(g, { id: 1, type: "RhymeFlowAccelerate", widgets: [], inputs: [], outputs: [] });
  assert.deepEqual(values, {});
  assert.equal(basisLine(sources, false), "nothing from the graph; frames, steps, shift from the boxes · cost on an assumed Wan 1.3B size");
});

test("latent shapes follow ComfyUI's formulas", () => {
  const node = (type, width, height, length) => ({ id: 1, type, widgets: [{ name: "width", value: width },
    { name: "height", value: height }, { name: "length", value: length }] });
  assert.deepEqual(latentShape(node("EmptyHunyuanLatentVideo", 832, 480, 81)), { frames: 21, latent_h: 60, latent_w: 104 });
  assert.deepEqual(latentShape(node("Wan22ImageToVideoLatent", 1280, 704, 121)), { frames: 31, latent_h: 44, latent_w: 80 });
  assert.deepEqual(latentShape(node("EmptyMochiLatentVideo", 848, 480, 163)), { frames: 28, latent_h: 60, latent_w: 106 });
  assert.deepEqual(latentShape(node("EmptyLTXVLatentVideo", 768, 512, 97)), { frames: 13, latent_h: 16, latent_w: 24 });
  assert.equal(latentShape(node("SomethingElse", 1, 1, 1)), null);
});

test("input rules: a preset hides what it does not read, a connected socket hides what it replaces", () => {
  const def = { input: {
    required: {
      preset: [["paper", "custom", "target"], { rhymeflow_uses: { paper: [], custom: ["warmup", "n_small"], target: ["target_speedup"] } }],
      strategy: [["semantic", "uniform"], { rhymeflow_uses: { semantic: ["budget"], uniform: ["budget"] } }],
      warmup: ["INT", {}],
    },
    optional: { keyframes: ["RHYMEFLOW_KEYFRAMES", { rhymeflow_overrides: ["strategy", "budget"] }] },
  } };
  const rules = rulesFromNodeDef(def);
  const hidden = (values, connected = []) => [...ignoredInputs(rules, values, new Set(connected))].sort();
  assert.deepEqual(hidden({ preset: "paper", strategy: "semantic" }), ["n_small", "target_speedup", "warmup"]);
  assert.deepEqual(hidden({ preset: "custom", strategy: "semantic" }), ["target_speedup"]);
  assert.deepEqual(hidden({ preset: "target", strategy: "uniform" }), ["n_small", "warmup"]);
  assert.deepEqual(hidden({ preset: "target", strategy: "uniform" }, ["keyframes"]), ["budget", "n_small", "strategy", "warmup"]);
  assert.deepEqual(rulesFromNodeDef({ input: { required: { x: ["INT", {}] } } }), { uses: {}, overrides: {} });
});

test("passKinds names each step's pass", async () => {
  const { passKinds } = await import("../../web/step_map_logic.js");
  assert.equal(passKinds([[0, 1, 2, 3, 1], [0, 1, 3, 2, 1]]), "WSKKS");
  assert.equal(passKinds([]), "");
});
