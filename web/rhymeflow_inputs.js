// @ts-check
/**
 * Hides the inputs a node's current choices ignore (web/input_rules.js says which, from rules the Python core
 * declares), and shows them again when a choice reads them: preset custom shows warmup / n_small / n_large, target
 * shows target_speedup, a Keyframes strategy shows budget / threshold / manual as it reads them, an AsymRnR schedule
 * source its rates or file, and RhymeFlow Accelerate hides strategy and budget while a Keyframes node is connected.
 *
 * Hidden widgets keep their values and are still sent with the prompt (the schema is unchanged, so saved workflows
 * and API prompts run as before); the run ignores them exactly as the node would.
 */
import { app } from "../../scripts/app.js";
import { ignoredInputs, rulesFromNodeDef } from "./input_rules.js";
import { chain } from "./prototype_chain.js";

/** @typedef {import("@comfyorg/comfyui-frontend-types").ComfyExtension} ComfyExtension */

/**
 * Apply the rules to ``node``'s widgets; resize the node when what shows changed.
 * @param {any} node
 */
function applyInputRules(node) {
  const rules = node.rhymeflowInputRules;
  if (!rules || !node.widgets) return;
  /** @type {Record<string, unknown>} */
  const values = Object.fromEntries(node.widgets.map((/** @type {any} */ w) => [w.name, w.value]));
  const connected = new Set((node.inputs ?? []).filter((/** @type {any} */ i) => i.link !== null && i.link !== undefined)
    .map((/** @type {any} */ i) => i.name));
  const ignored = ignoredInputs(rules, values, connected);
  let changed = false;
  for (const w of node.widgets) {
    const hide = ignored.has(w.name);
    if (!!w.hidden !== hide) {
      w.hidden = hide;
      changed = true;
    }
  }
  if (changed) {
    node.setSize?.([node.size[0], node.computeSize()[1]]);
    node.setDirtyCanvas?.(true, true);
  }
}

/** @type {ComfyExtension} */
const extension = {
  name: "RhymeFlow.InputRules",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const rules = rulesFromNodeDef(nodeData);
    if (!Object.keys(rules.uses).length && !Object.keys(rules.overrides).length) return;
    const proto = /** @type {any} */ (nodeType.prototype);
    proto.rhymeflowInputRules = rules;
    chain(proto, "onNodeCreated", function () {
      applyInputRules(this);
    });
    // Every redraw catches any way a value changes (a widget edit, a paste, a script setting w.value); a
    // comparison per widget, and a resize only when what shows changed.
    chain(proto, "onDrawForeground", function () {
      applyInputRules(this);
    });
    chain(proto, "onConfigure", function () {
      applyInputRules(this);
    });
    chain(proto, "onConnectionsChange", function () {
      applyInputRules(this);
    });
  },
};

app.registerExtension(extension);
