// @ts-check
/**
 * RhymeFlow step-map widget on the "RhymeFlow Async Sampler" node.
 *
 * A canvas of latent frames (rows) x sampling steps (columns), coloured by what each step costs: full
 * passes (warm-up and sync steps, one colour; the warm-up is bracketed), keyframes-only passes, and
 * skipped (projected) cells; numbered axes, a legend in plain words, the expert switch of a two-model run,
 * and a tooltip explaining the cell under the pointer. Before a run it shows the PLANNED map for the current settings (asked from the Python core
 * through GET /rhymeflow/step_map; the schedule is never recomputed here); after a run the REALISED map
 * from the run's stats, in one shape (stats.ui_record) by two channels, each needed: the "rhymeflow.stats" websocket
 * event the run sends (a graph without RhymeFlow Stats shows its map too; Stats sends a two-expert join the same way),
 * and RhymeFlow Stats' ui output, which ComfyUI replays when a re-queued prompt is served from its cache (no run, so
 * no event). Both are addressed by the widget node's id; the same map twice is drawn once.
 * Clicking a frame row toggles it as a manual keyframe on the connected "RhymeFlow Keyframes" node.
 *
 * The plan is made on what the connected graph says (web/graph_settings.js: the latent's frames, the sampler's or
 * scheduler's steps, scheduler, denoise and step range, ModelSamplingSD3's shift, the model file, the context mode),
 * re-read on every redraw, so editing the graph redraws the map. Only what the graph does not say comes from the
 * boxes (node properties ``preview_frames``, ``preview_steps``, ``preview_shift``); a box the graph overrides is
 * disabled and names the node it follows, and the map says which values came from where.
 */
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { chain } from "./prototype_chain.js";
import {
  DEFAULT_FRAMES,
  DEFAULT_SHIFT,
  DEFAULT_STEPS,
  ERROR_COLOR,
  HEADER_PX,
  KEYFRAME_MARK_COLOR,
  LEGEND_GAP_PX,
  LEGEND_PX,
  LEGEND_ROW_PX,
  MAX_FRAMES,
  MAX_SHIFT,
  MAX_STEPS,
  MIN_SHIFT,
  MUTED_COLOR,
  PANEL_COLOR,
  SWITCH_COLOR,
  TEXT_COLOR,
  TICK_PX,
  axisTicks,
  cellInfo,
  cellRect,
  clampFloat,
  clampInt,
  frameAtPoint,
  gridLayout,
  legendItems,
  legendRowCount,
  manualTextAfterClick,
  matchesNode,
  passKinds,
  roleColor,
  stepAtPoint,
  stepMapQuery,
  summaryLines,
  viewFromPlanned,
  viewFromStats,
  warmupColumns,
} from "./step_map_logic.js";
import { basisLine, graphSettings } from "./graph_settings.js";
import { ignoredInputs } from "./input_rules.js";

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
/** Tall enough for 21 frames at 6 px a row beside the header, axes and a legend of up to three rows. */
const MIN_HEIGHT = 320;

/** Sampler widgets sent to the route, and the Keyframes widgets. */
const SAMPLER_PARAMS = ["preset", "warmup", "n_small", "n_large", "target_speedup", "adaptive"];
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
    /** @type {HTMLDivElement | null} */
    this.tooltip = null;
    /** @type {Record<string, string>} which node each planned value came from (graph_settings.js) */
    this.sources = {};
    /** @type {number | undefined} text tokens of this node's last run: the plan prices its passes with them */
    this.textTokens = undefined;

    if (node.properties[PROP_FRAMES] === undefined) node.addProperty(PROP_FRAMES, DEFAULT_FRAMES, "number");
    if (node.properties[PROP_STEPS] === undefined) node.addProperty(PROP_STEPS, DEFAULT_STEPS, "number");
    if (node.properties[PROP_SHIFT] === undefined) node.addProperty(PROP_SHIFT, DEFAULT_SHIFT, "number");

    const root = document.createElement("div");
    root.className = "rhymeflow-step-map";
    root.style.cssText = "display:flex;flex-direction:column;gap:2px;width:100%;height:100%;box-sizing:border-box;";

    const bar = document.createElement("div");
    bar.style.cssText = `display:flex;align-items:center;gap:6px;font:11px sans-serif;color:${TEXT_COLOR};`;
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

  /** The node's graph as graph_settings.js reads it (LiteGraph 1.36: links in a Map behind getLink). */
  graphLike() {
    const graph = /** @type {any} */ (this.node.graph ?? app.graph);
    return {
      node: (/** @type {number | string} */ id) => graph?.getNodeById?.(id) ?? null,
      link: (/** @type {number} */ id) => graph?.getLink?.(id) ?? graph?.links?.get?.(id) ?? graph?.links?.[id] ?? null,
    };
  }

  /** @returns {Record<string, string | number | boolean | undefined>} */
  params() {
    const p = this.node.properties;
    const graph = graphSettings(this.graphLike(), /** @type {any} */ (this.node));
    this.sources = graph.sources;
    /** @type {Record<string, string | number | boolean | undefined>} */
    const out = {
      frames: clampInt(p[PROP_FRAMES], 2, MAX_FRAMES, DEFAULT_FRAMES),
      steps: clampInt(p[PROP_STEPS], 1, MAX_STEPS, DEFAULT_STEPS),
      shift: clampFloat(p[PROP_SHIFT], MIN_SHIFT, MAX_SHIFT, DEFAULT_SHIFT),
      ...graph.values,
      text_tokens: this.textTokens,
    };
    this.followGraph(graph.values, graph.sources);
    for (const name of SAMPLER_PARAMS) out[name] = /** @type {any} */ (widgetOf(this.node, name)?.value);
    // only what the preset reads (declared once in the core, presets.PRESET_INPUTS; see input_rules.js)
    const rules = /** @type {any} */ (this.node).rhymeflowInputRules;
    if (rules) {
      const ignored = ignoredInputs(rules, { preset: out.preset }, new Set());
      for (const name of SAMPLER_PARAMS) if (ignored.has(name)) delete out[name];
    }
    // A connected Keyframes node decides; else the drop-in's own strategy/budget widgets (absent on the sampler).
    const kf = keyframesNodeOf(this.node) ?? this.node;
    for (const name of KEYFRAME_PARAMS) out[name] = /** @type {any} */ (widgetOf(kf, name)?.value);
    return out;
  }

  /**
   * Show the graph's values in the boxes they override, disabled and naming their node.
   * @param {Record<string, string | number>} values
   * @param {Record<string, string>} sources
   */
  followGraph(values, sources) {
    for (const [input, key, source] of /** @type {[HTMLInputElement, string, string][]} */ (
      [[this.framesInput, "frames", "frames"], [this.stepsInput, "steps", "steps"], [this.shiftInput, "shift", "shift"]])) {
      const from = sources[source];
      const wasDisabled = input.disabled;
      input.disabled = !!from && values[key] !== undefined;
      if (input.disabled) {
        input.value = String(values[key]);
        input.title = `from ${from} (change it there)`;
      } else if (wasDisabled) {
        input.title = "";
        this.syncInputs();
      }
    }
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
    if (typeof stats.text_tokens === "number") this.textTokens = stats.text_tokens; // the next plan prices as this run did
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
    this.showTooltip(e, frame, step);
  }

  /**
   * The tooltip explaining the cell under the pointer. It lives on document.body at a fixed size, so it
   * stays readable at any zoom of the graph and is not clipped by the node.
   * @param {PointerEvent | null} e
   * @param {number} frame
   * @param {number} step
   */
  showTooltip(e, frame, step) {
    const view = this.current();
    const lines = e && view && !view.error && frame >= 0 && step >= 0 ? cellInfo(view, frame, step) : [];
    if (!e || !lines.length) {
      this.tooltip?.remove();
      return;
    }
    if (!this.tooltip) {
      this.tooltip = document.createElement("div");
      this.tooltip.className = "rhymeflow-step-map-tooltip";
      this.tooltip.style.cssText = `position:fixed;z-index:10000;pointer-events:none;max-width:300px;padding:6px 8px;` +
        `border-radius:4px;font:12px/1.35 sans-serif;white-space:pre-line;color:${TEXT_COLOR};background:${PANEL_COLOR};` +
        `border:1px solid ${MUTED_COLOR};box-shadow:0 2px 8px rgba(0,0,0,0.5);`;
    }
    const tip = this.tooltip;
    tip.textContent = lines.join("\n");
    tip.dataset.frame = String(frame);
    tip.dataset.step = String(step);
    tip.dataset.nodeId = String(this.node.id);
    if (!tip.isConnected) document.body.append(tip);
    // Below-right of the pointer, flipped to the other side near the window's edges.
    const { width, height } = tip.getBoundingClientRect();
    const x = e.clientX + 14 + width > window.innerWidth ? e.clientX - 14 - width : e.clientX + 14;
    const y = e.clientY + 16 + height > window.innerHeight ? e.clientY - 16 - height : e.clientY + 16;
    tip.style.left = `${Math.max(0, x)}px`;
    tip.style.top = `${Math.max(0, y)}px`;
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
    canvas.dataset.passes = view ? passKinds(view.roles) : "";
    canvas.dataset.speedup = view?.flopIdeal?.toFixed(3) ?? "";
    canvas.dataset.query = this.lastQuery;
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
    ctx.fillStyle = PANEL_COLOR; // the colours' contrast is checked against this panel, whatever the theme
    ctx.beginPath();
    ctx.roundRect(0, 0, w, h, 4);
    ctx.fill();
    ctx.font = `${HEADER_PX}px sans-serif`;
    ctx.textBaseline = "top";
    if (!view) {
      ctx.fillStyle = MUTED_COLOR;
      ctx.fillText("loading the planned step map…", 4, 4);
      this.layout = null;
      return;
    }
    if (view.error) {
      this.layout = null;
      this.wrapText(ctx, `error: ${view.error}`, 4, 3, w - 8, HEADER_PX + 3, ERROR_COLOR);
      return;
    }
    const [line1, line2, line3] = summaryLines(view);
    ctx.fillStyle = TEXT_COLOR;
    ctx.fillText(line1, 4, 3, w - 8);
    ctx.fillStyle = MUTED_COLOR;
    ctx.fillText(line2, 4, HEADER_PX + 6, w - 8);
    ctx.fillStyle = TEXT_COLOR;
    ctx.fillText(line3, 4, 2 * HEADER_PX + 9, w - 8);
    ctx.font = `${LEGEND_PX}px sans-serif`;
    const items = legendItems(view);
    const widths = items.map((item) => LEGEND_PX + 2 + ctx.measureText(item.label).width);
    // one more row under the legend and note: what the plan came from (graph or boxes)
    const legendRows = legendRowCount(widths, w - 8) + 1;
    canvas.dataset.legendRows = String(legendRows); // browser tests lay the grid out as drawn
    canvas.dataset.basis = view.kind === "planned" ? basisLine(this.sources, view.ownSize) : "";
    canvas.dataset.pricedOn = view.pricedOn;
    const layout = gridLayout(w, h, view.frames, view.steps, { legendRows });
    this.layout = layout;
    this.drawCells(ctx, layout, view);
    this.drawMarks(ctx, layout, view);
    this.drawAxes(ctx, layout, view);
    if (this.hoverFrame >= 0 && this.hoverFrame < view.frames) {
      ctx.strokeStyle = TEXT_COLOR;
      ctx.lineWidth = 1;
      ctx.strokeRect(layout.markX - 0.5, layout.top + this.hoverFrame * layout.cellH + 0.5,
        layout.left + layout.gridW - layout.markX + 1, Math.max(1, layout.cellH - 1));
      if (this.hoverStep >= 0) {
        const c = cellRect(layout, this.hoverFrame, this.hoverStep);
        ctx.lineWidth = 2;
        ctx.strokeRect(c.x - 1, c.y - 1, c.w + 2, c.h + 2);
      }
    }
    this.drawLegend(ctx, layout, items, widths, view, w);
  }

  /**
   * Cells, keyframe markers and row separators.
   * @param {CanvasRenderingContext2D} ctx
   * @param {import("./step_map_logic.js").Layout} layout
   * @param {StepMapView} view
   */
  drawCells(ctx, layout, view) {
    const keys = new Set(view.keyframes);
    // One rectangle per run of equal roles in a row keeps the draw cheap for big maps.
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
        ctx.fillRect(layout.markX, layout.top + f * layout.cellH, layout.markW, Math.max(1, layout.cellH - 1));
      }
    }
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
  }

  /**
   * The row just above the grid: a bracket over the warm-up columns and, for two experts (Wan 2.2 A14B),
   * the switch line through the grid with the second expert's name.
   * @param {CanvasRenderingContext2D} ctx
   * @param {import("./step_map_logic.js").Layout} layout
   * @param {StepMapView} view
   */
  drawMarks(ctx, layout, view) {
    const y = layout.top - TICK_PX - 3;
    ctx.font = `${TICK_PX}px sans-serif`;
    ctx.textBaseline = "top";
    const warm = warmupColumns(view.roles);
    if (warm > 0) {
      const x0 = layout.left;
      const x1 = layout.left + warm * layout.cellW;
      ctx.strokeStyle = MUTED_COLOR;
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(x0 + 0.5, layout.top - 1);
      ctx.lineTo(x0 + 0.5, layout.top - 4.5);
      ctx.lineTo(x1 - 0.5, layout.top - 4.5);
      ctx.lineTo(x1 - 0.5, layout.top - 1);
      ctx.stroke();
      ctx.fillStyle = MUTED_COLOR;
      ctx.fillText("warm-up", x0, y, Math.max(layout.cellW * warm, ctx.measureText("warm-up").width));
    }
    view.switches.forEach((step, i) => {
      const x = Math.round(cellRect(layout, 0, step).x);
      ctx.lineWidth = 4;
      ctx.strokeStyle = PANEL_COLOR;
      ctx.beginPath();
      ctx.moveTo(x, layout.top - 4);
      ctx.lineTo(x, layout.top + layout.gridH + 2);
      ctx.stroke();
      ctx.lineWidth = 2;
      ctx.strokeStyle = SWITCH_COLOR;
      ctx.stroke();
      const label = `${view.experts[i + 1]?.label ?? "next expert"} →`;
      ctx.fillStyle = TEXT_COLOR;
      ctx.fillText(label, x + 3, y, Math.max(0, layout.left + layout.gridW - x - 3));
    });
  }

  /**
   * Frame numbers down the left, step numbers (from 1) along the bottom, and the axis titles.
   * @param {CanvasRenderingContext2D} ctx
   * @param {import("./step_map_logic.js").Layout} layout
   * @param {StepMapView} view
   */
  drawAxes(ctx, layout, view) {
    ctx.font = `${TICK_PX}px sans-serif`;
    ctx.fillStyle = MUTED_COLOR;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const f of axisTicks(view.frames, layout.cellH, TICK_PX + 2)) {
      ctx.fillText(String(f), layout.markX - 2, layout.top + (f + 0.5) * layout.cellH);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const digits = ctx.measureText(String(view.steps)).width;
    for (const s of axisTicks(view.steps, layout.cellW, digits + 8, 1)) {
      ctx.fillText(String(s + 1), layout.left + (s + 0.5) * layout.cellW, layout.stepAxisY);
    }
    ctx.font = `${LEGEND_PX}px sans-serif`;
    ctx.fillStyle = TEXT_COLOR;
    ctx.textAlign = "left";
    ctx.fillText("step", 4, layout.stepAxisY);
    ctx.save();
    ctx.translate(4, layout.top + layout.gridH / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText("frame", 0, 0, layout.gridH);
    ctx.restore();
    ctx.textAlign = "left";
  }

  /**
   * The legend, wrapped to the width as legendRowCount counted it, then the note (or a message after a
   * failed click).
   * @param {CanvasRenderingContext2D} ctx
   * @param {import("./step_map_logic.js").Layout} layout
   * @param {import("./step_map_logic.js").LegendItem[]} items
   * @param {number[]} widths each entry's width, swatch and label
   * @param {StepMapView} view
   * @param {number} w
   */
  drawLegend(ctx, layout, items, widths, view, w) {
    ctx.font = `${LEGEND_PX}px sans-serif`;
    ctx.textBaseline = "top";
    const box = LEGEND_PX - 2;
    let x = 4;
    let y = layout.legendTop;
    items.forEach((item, i) => {
      if (x > 4 && x + widths[i] > w - 4) {
        x = 4;
        y += LEGEND_ROW_PX;
      }
      ctx.fillStyle = item.color;
      if (item.kind === "cell") ctx.fillRect(x, y + 1, box, box);
      else if (item.kind === "mark") ctx.fillRect(x + (box - layout.markW) / 2, y + 1, layout.markW, box);
      else ctx.fillRect(x + box / 2 - 1, y, 2, box + 2);
      ctx.fillStyle = TEXT_COLOR;
      ctx.fillText(item.label, x + box + 4, y);
      x += widths[i] + LEGEND_GAP_PX;
    });
    ctx.fillStyle = this.flash ? ERROR_COLOR : MUTED_COLOR;
    ctx.fillText(this.flash || view.note, 4, y + LEGEND_ROW_PX, w - 8);
    ctx.fillStyle = MUTED_COLOR;
    ctx.fillText(this.canvas.dataset.basis ?? "", 4, y + 2 * LEGEND_ROW_PX, w - 8);
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
    this.tooltip?.remove();
    this.resizeObserver.disconnect();
    live.delete(this);
  }
}

/** @type {WeakMap<LGraphNode, StepMapWidget>} */
const byNode = new WeakMap();

/**
 * Give stats to the widget they belong to: by node id, else (no id: a script's run) the only widget there is.
 * @param {any} stats
 */
function deliverStats(stats) {
  if (!stats || typeof stats !== "object") return;
  const all = [...live];
  let targets = all.filter((w) => matchesNode(stats.node, w.node.id));
  if (!targets.length && (stats.node === undefined || stats.node === null) && all.length === 1) targets = all;
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
      // ComfyUI replays a cached node's ui output, never the run's event: this is how a cached re-run shows its map
      chain(nodeType.prototype, "onExecuted", function (/** @type {Record<string, unknown>} */ output) {
        const list = output?.rhymeflow_stats;
        if (Array.isArray(list) && list.length) deliverStats(list[0]);
      });
    }
  },
};

app.registerExtension(extension);
