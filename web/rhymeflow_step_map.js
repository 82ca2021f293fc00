// @ts-check
/**
 * RhymeFlow step-map widget on the "RhymeFlow Async Sampler" node.
 *
 * A canvas of latent frames (rows) x sampling steps (columns), coloured by role: warm-up and sync
 * steps are full passes, keyframe cells are computed in keyframe-only passes, projected cells are
 * skipped. Before a run it shows the PLANNED map for the current settings (asked from the Python core
 * through GET /rhymeflow/step_map; the schedule is never recomputed here); after a run the REALISED map
 * from the sampler's stats ("rhymeflow.stats" websocket event, or the RhymeFlowStats node's output).
 * Clicking a frame row toggles it as a manual keyframe on the connected "RhymeFlow Keyframes" node.
 *
 * Preview frame and step counts and the sampling shift are node properties (``preview_frames``,
 * ``preview_steps``, ``preview_shift``): the sampler node itself does not know them (they come from the latent,
 * the sigmas and the model's sampling settings), so the user sets them here.
 */
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import {
  DEFAULT_FRAMES,
  DEFAULT_SHIFT,
  DEFAULT_STEPS,
  KEYFRAME_MARK_COLOR,
  MAX_FRAMES,
  MAX_SHIFT,
  MAX_STEPS,
  MIN_SHIFT,
  ROLE_LEGEND,
  cellRect,
  clampFloat,
  clampInt,
  frameAtPoint,
  gridLayout,
  manualTextAfterClick,
  matchesNode,
  roleColor,
  stepAtPoint,
  stepMapQuery,
  summaryLines,
  viewFromPlanned,
  viewFromStats,
} from "./step_map_logic.js";

/** @typedef {import("@comfyorg/comfyui-frontend-types").ComfyExtension} ComfyExtension */
/** @typedef {Parameters<NonNullable<ComfyExtension["nodeCreated"]>>[0]} LGraphNode */
/** @typedef {NonNullable<LGraphNode["widgets"]>[number]} IBaseWidget */
/** @typedef {import("@comfyorg/comfyui-frontend-types").DOMWidgetOptions<string>} DOMWidgetOptions */
/** @typedef {import("@comfyorg/comfyui-frontend-types").DOMWidget<HTMLElement, string>} DOMWidget */
/** @typedef {import("./step_map_logic.js").StepMapView} StepMapView */
/**
 * The node methods this file uses that the 1.36 type package does not declare on LGraphNode.
 * @typedef {LGraphNode & {
 *   addDOMWidget(name: string, type: string, element: HTMLElement, options?: DOMWidgetOptions): DOMWidget,
 *   onExecuted?: (output: Record<string, unknown>) => void,
 *   onDrawForeground?: (ctx: CanvasRenderingContext2D) => void,
 * }} ComfyNode
 */

/** Nodes that carry the step-map widget: the Async Sampler and the drop-in (same schedule inputs). */
const WIDGET_NODES = ["RhymeFlowAsyncSampler", "RhymeFlowAccelerate"];
const KEYFRAMES = "RhymeFlowKeyframes";
const STATS = "RhymeFlowStats";
const STATS_EVENT = "rhymeflow.stats";
const ROUTE = "/rhymeflow/step_map";
const PROP_FRAMES = "preview_frames";
const PROP_STEPS = "preview_steps";
const PROP_SHIFT = "preview_shift";
const DEBOUNCE_MS = 250;
const MIN_HEIGHT = 250;
const TEXT = "#d4d4d8";
const MUTED = "#9ca3af";
const ERROR = "#f87171";

/** Sampler widgets sent to the route, and the Keyframes widgets. */
const SAMPLER_PARAMS = ["preset", "warmup", "n_small", "n_large", "target_speedup"];
const KEYFRAME_PARAMS = ["strategy", "budget", "threshold", "manual", "force_first", "force_last"];

/** @type {Set<StepMapWidget>} */
const live = new Set();

/**
 * @param {LGraphNode | null | undefined} node
 * @param {string} name
 * @returns {IBaseWidget | undefined}
 */
function widgetOf(node, name) {
  return node?.widgets?.find((w) => w.name === name);
}

/**
 * The "RhymeFlow Keyframes" node feeding the sampler's ``keyframes`` input, if any.
 * @param {LGraphNode} node
 * @returns {LGraphNode | null}
 */
function keyframesNodeOf(node) {
  const slot = node.inputs?.findIndex((i) => i.name === "keyframes") ?? -1;
  if (slot < 0) return null;
  const src = node.getInputNode(slot);
  return src && (src.type === KEYFRAMES || /** @type {any} */ (src).comfyClass === KEYFRAMES) ? src : null;
}

/**
 * Chain a prototype method: ``after`` runs after the original, with its ``this``.
 * @param {any} proto
 * @param {string} name
 * @param {(this: any, ...args: any[]) => void} after
 */
function chain(proto, name, after) {
  const original = proto[name];
  proto[name] = function (/** @type {any[]} */ ...args) {
    const r = original?.apply(this, args);
    after.apply(this, args);
    return r;
  };
}

class StepMapWidget {
  /** @param {ComfyNode} node */
  constructor(node) {
    this.node = node;
    /** @type {StepMapView | null} */
    this.planned = null;
    /** @type {StepMapView | null} */
    this.realised = null;
    /** @type {"planned" | "realised"} */
    this.showing = "planned";
    this.lastQuery = "";
    this.requestSeq = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    this.hoverFrame = -1;
    this.hoverStep = -1;
    this.flash = "";
    /** @type {import("./step_map_logic.js").Layout | null} */
    this.layout = null;

    if (node.properties[PROP_FRAMES] === undefined) node.addProperty(PROP_FRAMES, DEFAULT_FRAMES, "number");
    if (node.properties[PROP_STEPS] === undefined) node.addProperty(PROP_STEPS, DEFAULT_STEPS, "number");
    if (node.properties[PROP_SHIFT] === undefined) node.addProperty(PROP_SHIFT, DEFAULT_SHIFT, "number");

    const root = document.createElement("div");
    root.className = "rhymeflow-step-map";
    root.style.cssText = "display:flex;flex-direction:column;gap:2px;width:100%;height:100%;box-sizing:border-box;";

    const bar = document.createElement("div");
    bar.style.cssText = `display:flex;align-items:center;gap:6px;font:11px sans-serif;color:${TEXT};`;
    this.framesInput = this.numberInput(bar, "frames", PROP_FRAMES, 2, MAX_FRAMES, DEFAULT_FRAMES,
      "latent frames for the preview (Wan: (video frames - 1) / 4 + 1; 81 -> 21)");
    this.stepsInput = this.numberInput(bar, "steps", PROP_STEPS, 10, MAX_STEPS, DEFAULT_STEPS,
      "sampling steps for the preview (the scheduler's steps)");
    this.shiftInput = this.numberInput(bar, "shift", PROP_SHIFT, MIN_SHIFT, MAX_SHIFT, DEFAULT_SHIFT,
      "the model's sampling shift for the preview (ModelSamplingSD3; ComfyUI defaults: Wan 8, HunyuanVideo 7, " +
      "Mochi 6, LTX 10.7 = e^2.37; test bed 3): presets warm up while the noise level is high", 0.01);
    this.toggle = document.createElement("button");
    this.toggle.type = "button";
    this.toggle.style.cssText = "margin-left:auto;font:11px sans-serif;padding:0 6px;cursor:pointer;";
    this.toggle.title = "switch between the planned map and the map of the last run";
    this.toggle.addEventListener("click", () => {
      if (!this.realised) return;
      this.showing = this.showing === "realised" ? "planned" : "realised";
      this.draw();
    });
    bar.append(this.toggle);

    this.canvas = document.createElement("canvas");
    this.canvas.className = "rhymeflow-step-map-canvas";
    this.canvas.style.cssText = "flex:1 1 auto;width:100%;min-height:0;cursor:pointer;";
    this.canvas.addEventListener("click", (e) => this.onClick(e));
    this.canvas.addEventListener("pointermove", (e) => this.onHover(e));
    this.canvas.addEventListener("pointerleave", () => this.onHover(null));
    root.append(bar, this.canvas);

    // serialize: false keeps the widget out of the API prompt (the 1.36 types do not declare the option).
    /** @type {DOMWidgetOptions & {serialize: boolean}} */
    const options = {
      serialize: false,
      hideOnZoom: false,
      getValue: () => "",
      setValue: () => {},
      getMinHeight: () => MIN_HEIGHT,
    };
    this.widget = node.addDOMWidget("rhymeflow_step_map", "RHYMEFLOW_STEP_MAP", root, options);
    this.widget.serialize = false; // keep it out of widgets_values as well as the API prompt

    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(this.canvas);
    live.add(this);
    this.syncInputs();
    this.draw();
  }

  /**
   * @param {HTMLElement} bar
   * @param {string} label
   * @param {string} prop
   * @param {number} lo
   * @param {number} hi
   * @param {number} fallback
   * @param {string} title
   * @param {number} [step] 1 for counts; smaller for a real-valued input
   */
  numberInput(bar, label, prop, lo, hi, fallback, title, step = 1) {
    const clamp = step === 1 ? clampInt : clampFloat;
    const wrap = document.createElement("label");
    wrap.textContent = `${label} `;
    wrap.title = title;
    const input = document.createElement("input");
    input.type = "number";
    input.min = String(lo);
    input.max = String(hi);
    input.step = String(step);
    input.dataset.prop = prop;
    input.style.cssText = "width:4.5em;font:11px sans-serif;";
    input.addEventListener("change", () => {
      const value = clamp(input.value, lo, hi, fallback);
      input.value = String(value);
      this.node.properties[prop] = value;
      this.refresh();
    });
    wrap.append(input);
    bar.append(wrap);
    return input;
  }

  /** Copy the node properties into the inputs (after creation and after a workflow load). */
  syncInputs() {
    const p = this.node.properties;
    this.framesInput.value = String(clampInt(p[PROP_FRAMES], 2, MAX_FRAMES, DEFAULT_FRAMES));
    this.stepsInput.value = String(clampInt(p[PROP_STEPS], 10, MAX_STEPS, DEFAULT_STEPS));
    this.shiftInput.value = String(clampFloat(p[PROP_SHIFT], MIN_SHIFT, MAX_SHIFT, DEFAULT_SHIFT));
  }

  /** @returns {Record<string, string | number | boolean | undefined>} */
  params() {
    const p = this.node.properties;
    /** @type {Record<string, string | number | boolean | undefined>} */
    const out = {
      frames: clampInt(p[PROP_FRAMES], 2, MAX_FRAMES, DEFAULT_FRAMES),
      steps: clampInt(p[PROP_STEPS], 1, MAX_STEPS, DEFAULT_STEPS),
      shift: clampFloat(p[PROP_SHIFT], MIN_SHIFT, MAX_SHIFT, DEFAULT_SHIFT),
    };
    for (const name of SAMPLER_PARAMS) out[name] = /** @type {any} */ (widgetOf(this.node, name)?.value);
    if (out.preset !== "custom") {
      delete out.warmup;
      delete out.n_small;
      delete out.n_large;
    }
    if (out.preset !== "target") delete out.target_speedup; // RhymeFlow Accelerate's target preset only
    // A connected Keyframes node decides; else the drop-in's own strategy/budget widgets (absent on the sampler).
    const kf = keyframesNodeOf(this.node) ?? this.node;
    for (const name of KEYFRAME_PARAMS) out[name] = /** @type {any} */ (widgetOf(kf, name)?.value);
    return out;
  }

  /** Called on every redraw of the node: a cheap string compare finds any settings change. */
  refresh() {
    const query = stepMapQuery(this.params());
    if (query === this.lastQuery) return;
    this.lastQuery = query;
    this.showing = "planned";
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.fetchPlanned(query), DEBOUNCE_MS);
  }

  /** @param {string} query */
  async fetchPlanned(query) {
    const seq = ++this.requestSeq;
    /** @type {StepMapView} */
    let view;
    try {
      const res = await api.fetchApi(`${ROUTE}?${query}`);
      const body = await res.json().catch(() => ({ error: `${ROUTE} answered HTTP ${res.status} without JSON` }));
      view = viewFromPlanned(body);
    } catch (err) {
      view = viewFromPlanned({ error: `cannot reach ${ROUTE}: ${err}` });
    }
    if (seq !== this.requestSeq) return; // a newer request is under way
    this.planned = view;
    this.draw();
  }

  /** @param {any} stats */
  setRealised(stats) {
    const view = viewFromStats(stats);
    if (!view) return;
    this.realised = view;
    this.showing = "realised";
    // The run says how many frames and steps there really are: the next preview uses them.
    this.node.properties[PROP_FRAMES] = view.frames;
    this.node.properties[PROP_STEPS] = view.steps;
    this.syncInputs();
    const query = stepMapQuery(this.params());
    if (query !== this.lastQuery) {
      this.lastQuery = query; // refresh the planned map in the background without leaving this view
      clearTimeout(this.timer);
      void this.fetchPlanned(query);
    }
    this.draw();
  }

  /** @returns {StepMapView | null} */
  current() {
    return this.showing === "realised" && this.realised ? this.realised : this.planned;
  }

  /** @param {MouseEvent} e @returns {{x: number, y: number}} */
  localPoint(e) {
    // The DOM widget is scaled with the graph canvas: map screen pixels to the canvas's CSS pixels.
    const r = this.canvas.getBoundingClientRect();
    const sx = r.width ? this.canvas.clientWidth / r.width : 1;
    const sy = r.height ? this.canvas.clientHeight / r.height : 1;
    return { x: (e.clientX - r.left) * sx, y: (e.clientY - r.top) * sy };
  }

  /** @param {PointerEvent | null} e */
  onHover(e) {
    let frame = -1;
    let step = -1;
    if (e && this.layout) {
      const { x, y } = this.localPoint(e);
      frame = frameAtPoint(this.layout, x, y);
      step = stepAtPoint(this.layout, x, y);
    }
    if (frame !== this.hoverFrame || step !== this.hoverStep) {
      this.hoverFrame = frame;
      this.hoverStep = step;
      this.draw();
    }
  }

  /** @param {MouseEvent} e */
  onClick(e) {
    const view = this.current();
    if (!this.layout || !view || view.error) return;
    const { x, y } = this.localPoint(e);
    const frame = frameAtPoint(this.layout, x, y);
    if (frame >= 0) this.toggleKeyframe(frame, view.keyframes);
  }

  /**
   * Toggle ``frame`` in the connected Keyframes node's manual list and switch it to "manual".
   * @param {number} frame
   * @param {number[]} shownKeyframes
   */
  toggleKeyframe(frame, shownKeyframes) {
    const kf = keyframesNodeOf(this.node);
    const manual = widgetOf(kf, "manual");
    const strategy = widgetOf(kf, "strategy");
    if (!kf || !manual || !strategy) {
      this.flash = "connect a RhymeFlow Keyframes node to pick keyframes by clicking";
      this.draw();
      return;
    }
    const text = manualTextAfterClick({
      strategy: String(strategy.value),
      manualText: String(manual.value ?? ""),
      shownKeyframes,
      frame,
    });
    for (const [w, value] of /** @type {[IBaseWidget, string][]} */ ([[manual, text], [strategy, "manual"]])) {
      w.value = value;
      w.callback?.(value, app.canvas, kf);
    }
    this.flash = "";
    kf.setDirtyCanvas(true, true);
    this.node.setDirtyCanvas(true, true);
    this.refresh();
  }

  draw() {
    const canvas = this.canvas;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    const view = this.current();
    this.toggle.textContent = this.showing === "realised" && this.realised ? "show planned" : "show last run";
    this.toggle.disabled = !this.realised;
    // What is on screen, for browser tests and debugging (read-only; nothing reads it back).
    canvas.dataset.view = view ? view.kind : "none";
    canvas.dataset.frames = String(view?.frames ?? 0);
    canvas.dataset.steps = String(view?.steps ?? 0);
    canvas.dataset.keyframes = view ? view.keyframes.join(",") : "";
    canvas.dataset.error = view?.error ?? "";
    canvas.dataset.nodeId = String(this.node.id);
    if (w <= 0 || h <= 0) return;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px sans-serif";
    ctx.textBaseline = "top";
    if (!view) {
      ctx.fillStyle = MUTED;
      ctx.fillText("loading the planned step map…", 4, 4);
      this.layout = null;
      return;
    }
    if (view.error) {
      this.layout = null;
      this.wrapText(ctx, `error: ${view.error}`, 4, 3, w - 8, 14, ERROR);
      return;
    }
    const [line1, line2] = summaryLines(view);
    ctx.fillStyle = TEXT;
    ctx.fillText(line1, 4, 2, w - 8);
    ctx.fillStyle = view.kind === "planned" ? MUTED : TEXT;
    ctx.fillText(line2, 4, 15, w - 8);
    const layout = gridLayout(w, h, view.frames, view.steps);
    this.layout = layout;
    const keys = new Set(view.keyframes);
    // Cells: one rectangle per run of equal roles in a row keeps the draw cheap for big maps.
    for (let f = 0; f < view.frames; f++) {
      const row = view.roles[f];
      let s = 0;
      while (s < view.steps) {
        let e = s;
        while (e + 1 < view.steps && row[e + 1] === row[s]) e++;
        const a = cellRect(layout, f, s);
        const b = cellRect(layout, f, e);
        ctx.fillStyle = roleColor(row[s]);
        ctx.fillRect(a.x, a.y, b.x + b.w - a.x, a.h);
        s = e + 1;
      }
      if (keys.has(f)) {
        ctx.fillStyle = KEYFRAME_MARK_COLOR;
        ctx.fillRect(layout.left - layout.markW - 2, layout.top + f * layout.cellH, layout.markW, Math.max(1, layout.cellH - 1));
      }
    }
    // Row separators when rows are tall enough to read them.
    if (layout.cellH >= 5) {
      ctx.strokeStyle = "rgba(0,0,0,0.35)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let f = 1; f < view.frames; f++) {
        const y = Math.round(layout.top + f * layout.cellH) + 0.5;
        ctx.moveTo(layout.left, y);
        ctx.lineTo(layout.left + layout.gridW, y);
      }
      ctx.stroke();
    }
    // Where the second expert's run starts (Wan 2.2 A14B): each run syncs every frame there.
    for (const step of view.switches) {
      const x = Math.round(cellRect(layout, 0, step).x) - 0.5;
      ctx.strokeStyle = "#ffffff";
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(x, layout.top - 3);
      ctx.lineTo(x, layout.top + layout.gridH + 3);
      ctx.stroke();
    }
    if (this.hoverFrame >= 0 && this.hoverFrame < view.frames) {
      ctx.strokeStyle = "#ffffff";
      ctx.lineWidth = 1;
      ctx.strokeRect(layout.left - layout.markW - 2.5, layout.top + this.hoverFrame * layout.cellH + 0.5,
        layout.gridW + layout.markW + 2, Math.max(1, layout.cellH - 1));
    }
    this.drawLegend(ctx, layout, view, w);
  }

  /**
   * @param {CanvasRenderingContext2D} ctx
   * @param {import("./step_map_logic.js").Layout} layout
   * @param {StepMapView} view
   * @param {number} w
   */
  drawLegend(ctx, layout, view, w) {
    let x = 4;
    const y = layout.legendTop;
    for (const [code, name] of Object.entries(ROLE_LEGEND)) {
      ctx.fillStyle = roleColor(Number(code));
      ctx.fillRect(x, y + 2, 9, 9);
      ctx.fillStyle = TEXT;
      ctx.fillText(name, x + 12, y + 1);
      x += 12 + ctx.measureText(name).width + 7;
    }
    ctx.fillStyle = KEYFRAME_MARK_COLOR;
    ctx.fillRect(x, y + 2, 4, 9);
    ctx.fillStyle = TEXT;
    ctx.fillText("key", x + 7, y + 1);
    let hint = this.flash || view.note;
    if (this.hoverFrame >= 0) {
      const step = this.hoverStep >= 0 ? `, step ${this.hoverStep}: ${ROLE_LEGEND[/** @type {0|1|2|3} */ (view.roles[this.hoverFrame][this.hoverStep])]}` : "";
      hint = `frame ${this.hoverFrame}${step} · click to toggle it as a manual keyframe`;
    }
    ctx.fillStyle = this.flash ? ERROR : MUTED;
    ctx.fillText(hint, 4, y + 15, w - 8);
  }

  /**
   * @param {CanvasRenderingContext2D} ctx
   * @param {string} text
   * @param {number} x
   * @param {number} y
   * @param {number} maxW
   * @param {number} lineH
   * @param {string} color
   */
  wrapText(ctx, text, x, y, maxW, lineH, color) {
    ctx.fillStyle = color;
    let line = "";
    for (const word of text.split(/\s+/)) {
      const next = line ? `${line} ${word}` : word;
      if (line && ctx.measureText(next).width > maxW) {
        ctx.fillText(line, x, y);
        y += lineH;
        line = word;
      } else line = next;
    }
    if (line) ctx.fillText(line, x, y);
  }

  dispose() {
    clearTimeout(this.timer);
    this.resizeObserver.disconnect();
    live.delete(this);
  }
}

/** @type {WeakMap<LGraphNode, StepMapWidget>} */
const byNode = new WeakMap();

/**
 * Give stats to the sampler widget they belong to: by node id, else the only sampler in ``graph``.
 * @param {any} stats
 * @param {unknown} [graph]
 */
function deliverStats(stats, graph) {
  if (!stats || typeof stats !== "object") return;
  const all = [...live];
  let targets = all.filter((w) => matchesNode(stats.node, w.node.id));
  if (!targets.length && (stats.node === undefined || stats.node === null)) {
    const same = graph ? all.filter((w) => w.node.graph === graph) : all;
    if (same.length === 1) targets = same;
  }
  for (const w of targets) w.setRealised(stats);
}

/** @type {ComfyExtension} */
const extension = {
  name: "RhymeFlow.StepMap",
  async setup() {
    /** @type {EventTarget} */ (api).addEventListener(STATS_EVENT, (event) => {
      deliverStats(/** @type {CustomEvent} */ (event).detail);
    });
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (WIDGET_NODES.includes(nodeData.name)) {
      const proto = nodeType.prototype;
      chain(proto, "onNodeCreated", function () {
        byNode.set(this, new StepMapWidget(this));
        this.setSize?.([Math.max(this.size[0], 340), this.computeSize()[1]]);
      });
      chain(proto, "onConfigure", function () {
        const w = byNode.get(this);
        if (w) {
          w.syncInputs();
          w.refresh();
        }
      });
      chain(proto, "onDrawForeground", function () {
        byNode.get(this)?.refresh();
      });
      chain(proto, "onRemoved", function () {
        byNode.get(this)?.dispose();
        byNode.delete(this);
      });
    } else if (nodeData.name === STATS) {
      chain(nodeType.prototype, "onExecuted", function (/** @type {Record<string, unknown>} */ output) {
        const list = output?.rhymeflow_stats;
        if (Array.isArray(list) && list.length) deliverStats(list[0], this.graph);
      });
    }
  },
};

app.registerExtension(extension);
