// @ts-check
/**
 * Shows the text that RhymeFlow nodes return as ``ui.text`` (Stats, Compare, AsymRnR Schedule, AsymRnR Stats) on the node
 * itself. ComfyUI's frontend keeps that output but draws nothing for it on custom nodes, so without this the
 * summary is only reachable through the node's STRING output or /history.
 *
 * The text box is a read-only, monospace DOM widget added on the node's first execution (nodes that never ran
 * keep their compact size) and updated on every later one; the latest text is also ``node.rhymeflowText``.
 */
import { app } from "../../scripts/app.js";
import { outputText, wrappedRows } from "./step_map_logic.js";

/** @typedef {import("@comfyorg/comfyui-frontend-types").ComfyExtension} ComfyExtension */
/** @typedef {Parameters<NonNullable<ComfyExtension["nodeCreated"]>>[0]} LGraphNode */
/** @typedef {import("@comfyorg/comfyui-frontend-types").DOMWidgetOptions<string>} DOMWidgetOptions */
/** @typedef {import("@comfyorg/comfyui-frontend-types").DOMWidget<HTMLElement, string>} DOMWidget */
/**
 * The node members this file uses that the 1.36 type package does not declare on LGraphNode.
 * @typedef {LGraphNode & {
 *   addDOMWidget(name: string, type: string, element: HTMLElement, options?: DOMWidgetOptions): DOMWidget,
 *   onExecuted?: (output: Record<string, unknown>) => void,
 *   rhymeflowText?: string,
 *   rhymeflowTextBox?: HTMLTextAreaElement,
 * }} ComfyNode
 */

/** Python ``node_id`` of every node in nodes/ that returns ``ui={"text": ...}``. */
const TEXT_NODES = new Set(["RhymeFlowStats", "RhymeFlowCompare", "RhymeFlowAsymRnRSchedule", "RhymeFlowAsymRnRStats"]);
const WIDGET = "rhymeflow_text";
/** Wide enough for ~45 columns; no wider, so the node stays in its column of the shipped workflows. */
const MIN_WIDTH = 340;
const FONT_PX = 11;
const LINE_PX = 14;
/** Upper bound of one monospace character's advance at FONT_PX, to estimate wrapping before layout. */
const CHAR_PX = 7;
/** Space the box's padding and the DOM widget's margins take (measured 28 across, 16 down), plus a little spare. */
const PAD_X = 32;
const PAD_Y = 20;
/** Taller texts scroll inside the box instead of growing the node further. */
const MAX_ROWS = 16;

/**
 * The node's text box, created on first use.
 * @param {ComfyNode} node
 * @returns {HTMLTextAreaElement}
 */
function textBox(node) {
  if (node.rhymeflowTextBox) return node.rhymeflowTextBox;
  const box = document.createElement("textarea");
  box.readOnly = true;
  box.spellcheck = false;
  box.className = "rhymeflow-text-output";
  box.dataset.nodeId = String(node.id);
  box.style.cssText = `width:100%;height:100%;box-sizing:border-box;resize:none;margin:0;padding:4px;` +
    `font:${FONT_PX}px/${LINE_PX}px ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;` +
    `color:var(--input-text,#ddd);background:var(--comfy-input-bg,#222);border:none;border-radius:4px;`;
  // The text is display only: the option keeps it out of the API prompt (the 1.36 types omit it), the widget's
  // own flag out of the saved workflow's widgets_values.
  /** @type {DOMWidgetOptions & {serialize: boolean}} */
  const options = {
    serialize: false,
    getValue: () => box.value,
    setValue: () => {},
    getMinHeight: () => {
      const columns = (node.size[0] - PAD_X) / CHAR_PX;
      return Math.min(wrappedRows(box.value, columns), MAX_ROWS) * LINE_PX + PAD_Y;
    },
  };
  const widget = node.addDOMWidget(WIDGET, "RHYMEFLOW_TEXT", box, options);
  widget.serialize = false;
  node.rhymeflowTextBox = box;
  return box;
}

/**
 * Show ``text`` on ``node`` and grow the node until the box fits it (never shrink what the user sized).
 * @param {ComfyNode} node
 * @param {string} text
 */
function showText(node, text) {
  node.rhymeflowText = text;
  textBox(node).value = text;
  const [w, h] = node.size;
  node.setSize([Math.max(w, MIN_WIDTH), h]);
  node.setSize([node.size[0], Math.max(h, node.computeSize()[1])]);
  app.canvas?.setDirty(true, true);
}

/** @type {ComfyExtension} */
const extension = {
  name: "rhymeflow.text_output",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!TEXT_NODES.has(nodeData.name)) return;
    const proto = /** @type {ComfyNode} */ (nodeType.prototype);
    const original = proto.onExecuted;
    proto.onExecuted = function (output) {
      original?.call(this, output);
      if (output && "text" in output) showText(this, outputText(output.text));
    };
  },
};

app.registerExtension(extension);
