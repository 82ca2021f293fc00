// @ts-check
/**
 * Pure logic of the RhymeFlow frontend (the step-map widget and the text shown on nodes): no DOM, no
 * ComfyUI imports, so node's test runner can load it (tests/web/*.test.mjs). The schedule itself is never
 * computed here: the planned map comes from the Python core through GET /rhymeflow/step_map, the realised
 * one from the sampler's stats. This module only colours, lays out, hit-tests, edits frame lists and
 * formats node text.
 *
 * ComfyUI imports every .js under web/ as an extension; importing this module has no side effects.
 */

/** Role codes of a step-map cell, as in rhymeflow_core/schedule.py. */
export const ROLE_WARMUP = 0;
export const ROLE_SYNC = 1;
export const ROLE_KEY = 2;
export const ROLE_SKIP = 3;

/** Names of the roles; must equal rhymeflow_core.schedule.ROLE_LEGEND (checked by tests/test_step_map_query.py). */
export const ROLE_LEGEND = Object.freeze({ 0: "warm-up", 1: "sync", 2: "keyframe", 3: "projected" });

/** Cell colours per role: full passes warm, keyframe passes green, projected cells dark. */
export const ROLE_COLORS = Object.freeze({ 0: "#8b5cf6", 1: "#f59e0b", 2: "#22c55e", 3: "#1e3a5f" });

/** Colour of the marker beside a keyframe row, and of a cell whose role is unknown. */
export const KEYFRAME_MARK_COLOR = "#facc15";
export const UNKNOWN_COLOR = "#ff00ff";

export const DEFAULT_FRAMES = 21;
export const DEFAULT_STEPS = 30;
/** The scheduler shift the plan assumes until the user sets the model's (presets end warm-up at a noise level). */
export const DEFAULT_SHIFT = 3.0;
export const MIN_SHIFT = 0.1;
export const MAX_SHIFT = 100;
export const MAX_FRAMES = 512;
export const MAX_STEPS = 1000;

/**
 * @typedef {object} StepMapView
 * What the widget draws; both the route's answer and the sampler's stats are normalised to it.
 * @property {"planned" | "realised"} kind
 * @property {number} frames
 * @property {number} steps
 * @property {number[][]} roles [frames][steps] role codes
 * @property {number[]} keyframes
 * @property {number | null} flopIdeal FLOP-ideal speed-up (dense FLOPs / RhymeFlow FLOPs), when known
 * @property {number | null} measuredSpeedup the run's own estimate of its wall-clock gain (realised only)
 * @property {number | null} fullPasses
 * @property {number | null} keyframePasses
 * @property {string} note
 * @property {number[]} switches steps where a second model takes over (Wan 2.2 A14B experts); empty otherwise
 * @property {string | null} error
 */

/**
 * @typedef {object} Layout
 * Geometry of the grid in CSS pixels of the canvas.
 * @property {number} left x of the first step column
 * @property {number} top y of the first frame row
 * @property {number} cellW
 * @property {number} cellH
 * @property {number} frames
 * @property {number} steps
 * @property {number} gridW
 * @property {number} gridH
 * @property {number} legendTop y where the legend line starts
 * @property {number} markW width of the keyframe marker column left of the grid
 */

/** @param {number} role @returns {string} */
export function roleColor(role) {
  return /** @type {Record<number, string>} */ (ROLE_COLORS)[role] ?? UNKNOWN_COLOR;
}

/**
 * ``"0, 6, 12-14"`` -> ``[0, 6, 12, 13, 14]`` (sorted, unique); blank -> ``[]``. Same rules as
 * rhymeflow_core.keyframes.parse_frame_list: inclusive ascending ranges, empty items ignored.
 * @param {string} text
 * @returns {number[]}
 */
export function parseFrameList(text) {
  /** @type {Set<number>} */
  const out = new Set();
  for (const raw of String(text).split(",")) {
    const item = raw.trim();
    if (!item) continue;
    const m = /^(\d+)(?:\s*-\s*(\d+))?$/.exec(item);
    const first = m ? Number(m[1]) : NaN;
    const last = m && m[2] !== undefined ? Number(m[2]) : first;
    if (!m || last < first) {
      throw new Error(
        `cannot read frame list '${text}': '${item}' is not a frame index or an ascending range; ` +
          "expected non-negative integers and inclusive ranges separated by commas, e.g. '0, 6, 12-14'",
      );
    }
    if (last >= MAX_FRAMES) throw new Error(`frame ${last} is beyond the ${MAX_FRAMES}-frame limit`);
    for (let i = first; i <= last; i++) out.add(i);
  }
  return [...out].sort((a, b) => a - b);
}

/**
 * ``[0, 6, 12, 13, 14]`` -> ``"0, 6, 12-14"``: runs of three or more become ranges.
 * @param {Iterable<number>} frames
 * @returns {string}
 */
export function formatFrameList(frames) {
  const sorted = [...new Set(frames)].sort((a, b) => a - b);
  /** @type {string[]} */
  const parts = [];
  let i = 0;
  while (i < sorted.length) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    if (j - i >= 2) parts.push(`${sorted[i]}-${sorted[j]}`);
    else for (let k = i; k <= j; k++) parts.push(String(sorted[k]));
    i = j + 1;
  }
  return parts.join(", ");
}

/**
 * Add ``frame`` to the list, or remove it when present.
 * @param {Iterable<number>} frames
 * @param {number} frame
 * @returns {number[]}
 */
export function toggleFrame(frames, frame) {
  const set = new Set(frames);
  if (set.has(frame)) set.delete(frame);
  else set.add(frame);
  return [...set].sort((a, b) => a - b);
}

/**
 * The new ``manual`` text of the Keyframes node after clicking ``frame``.
 *
 * With strategy "manual" the click toggles the frame in the current text. With another strategy the
 * click starts from the keyframes on screen (so switching to manual keeps what the user sees) and toggles
 * the frame there. Unreadable text is replaced by the shown keyframes plus the click.
 * @param {{strategy: string, manualText: string, shownKeyframes: number[], frame: number}} args
 * @returns {string}
 */
export function manualTextAfterClick({ strategy, manualText, shownKeyframes, frame }) {
  let base = shownKeyframes;
  if (strategy === "manual") {
    try {
      base = parseFrameList(manualText);
    } catch {
      base = shownKeyframes;
    }
  }
  return formatFrameList(toggleFrame(base, frame));
}

/**
 * Grid geometry: a marker column, then ``steps`` columns; ``frames`` rows; a legend line below.
 * Cells are at least 1 px; rows are capped at 16 px so a short video does not make huge rows.
 * @param {number} width canvas width (CSS px)
 * @param {number} height canvas height (CSS px)
 * @param {number} frames
 * @param {number} steps
 * @param {{header?: number, legend?: number, pad?: number, markW?: number}} [opts]
 * @returns {Layout}
 */
export function gridLayout(width, height, frames, steps, opts = {}) {
  const header = opts.header ?? 30;
  const legend = opts.legend ?? 32;
  const pad = opts.pad ?? 4;
  const markW = opts.markW ?? 8;
  const f = Math.max(1, frames);
  const s = Math.max(1, steps);
  const left = pad + markW + 2;
  const top = header;
  const cellW = Math.max(1, (width - left - pad) / s);
  const cellH = Math.max(1, Math.min(16, (height - header - legend - pad) / f));
  const gridW = cellW * s;
  const gridH = cellH * f;
  return { left, top, cellW, cellH, frames: f, steps: s, gridW, gridH, legendTop: top + gridH + 3, markW };
}

/**
 * The frame row under a point, or -1 outside the rows. The marker column counts as the row (it is
 * where a user clicks to toggle a keyframe), the rest of the width too.
 * @param {Layout} layout
 * @param {number} x
 * @param {number} y
 * @returns {number}
 */
export function frameAtPoint(layout, x, y) {
  if (y < layout.top || y >= layout.top + layout.gridH) return -1;
  if (x < 0 || x >= layout.left + layout.gridW) return -1;
  const row = Math.floor((y - layout.top) / layout.cellH);
  return row >= 0 && row < layout.frames ? row : -1;
}

/**
 * The step column under a point, or -1.
 * @param {Layout} layout
 * @param {number} x
 * @param {number} y
 * @returns {number}
 */
export function stepAtPoint(layout, x, y) {
  if (frameAtPoint(layout, x, y) < 0 || x < layout.left) return -1;
  const col = Math.floor((x - layout.left) / layout.cellW);
  return col >= 0 && col < layout.steps ? col : -1;
}

/**
 * Rectangle of cell (frame, step).
 * @param {Layout} layout
 * @param {number} frame
 * @param {number} step
 * @returns {{x: number, y: number, w: number, h: number}}
 */
export function cellRect(layout, frame, step) {
  return { x: layout.left + step * layout.cellW, y: layout.top + frame * layout.cellH, w: layout.cellW, h: layout.cellH };
}

/**
 * Query string for GET /rhymeflow/step_map, keys in a fixed order (equal settings give equal strings,
 * which is how the widget notices a change). Undefined values are left out: the route's defaults apply.
 * @param {Record<string, string | number | boolean | null | undefined>} params
 * @returns {string}
 */
export function stepMapQuery(params) {
  const order = ["frames", "steps", "shift", "preset", "warmup", "n_small", "n_large",
    "strategy", "budget", "threshold", "manual", "force_first", "force_last"];
  const keys = [...order.filter((k) => k in params), ...Object.keys(params).filter((k) => !order.includes(k)).sort()];
  const q = new URLSearchParams();
  for (const k of keys) {
    const v = params[k];
    if (v === undefined || v === null) continue;
    q.set(k, String(v));
  }
  return q.toString();
}

/**
 * Clamp a user-typed frame or step count to an integer in [lo, hi]; ``fallback`` when unreadable.
 * @param {unknown} value
 * @param {number} lo
 * @param {number} hi
 * @param {number} fallback
 * @returns {number}
 */
export function clampInt(value, lo, hi, fallback) {
  const n = typeof value === "number" ? value : Number.parseInt(String(value), 10);
  if (!Number.isFinite(n)) return fallback;
  return Math.min(hi, Math.max(lo, Math.round(n)));
}

/**
 * Clamp a user-typed shift to [lo, hi], rounded to 0.01; ``fallback`` when unreadable.
 * @param {unknown} value
 * @param {number} lo
 * @param {number} hi
 * @param {number} fallback
 * @returns {number}
 */
export function clampFloat(value, lo, hi, fallback) {
  const n = typeof value === "number" ? value : Number.parseFloat(String(value));
  if (!Number.isFinite(n)) return fallback;
  return Math.min(hi, Math.max(lo, Math.round(n * 100) / 100));
}

/** @param {unknown} v @returns {number | null} */
function num(v) {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/**
 * A roles matrix is valid when it is a non-empty rectangle of role codes.
 * @param {unknown} roles
 * @returns {roles is number[][]}
 */
export function isRoleMatrix(roles) {
  if (!Array.isArray(roles) || roles.length === 0 || !Array.isArray(roles[0]) || roles[0].length === 0) return false;
  const t = roles[0].length;
  return roles.every((r) => Array.isArray(r) && r.length === t && r.every((c) => Number.isInteger(c) && c >= 0 && c <= 3));
}

/**
 * Normalise the answer of GET /rhymeflow/step_map.
 * @param {any} body
 * @returns {StepMapView}
 */
export function viewFromPlanned(body) {
  const ok = body && !body.error && isRoleMatrix(body.roles);
  return {
    kind: "planned",
    frames: ok ? body.roles.length : num(body?.frames) ?? 0,
    steps: ok ? body.roles[0].length : num(body?.steps) ?? 0,
    roles: ok ? body.roles : [],
    keyframes: ok && Array.isArray(body.keyframes) ? body.keyframes : [],
    flopIdeal: ok ? num(body.flop_ideal) : null,
    measuredSpeedup: null,
    fullPasses: ok ? num(body.full_passes) : null,
    keyframePasses: ok ? num(body.keyframe_passes) : null,
    note: typeof body?.note === "string" ? body.note : "planned map",
    switches: [],
    error: body?.error ? String(body.error) : ok ? null : "the step-map route sent no map",
  };
}

/**
 * Normalise the sampler's stats (the "rhymeflow.stats" event or RhymeFlowStats's ui) to a view.
 * @param {any} stats
 * @returns {StepMapView | null} null when the stats hold no readable map
 */
export function viewFromStats(stats) {
  if (!stats || !isRoleMatrix(stats.roles)) return null;
  const keys = Array.isArray(stats.keyframes) ? stats.keyframes : [];
  // RhymeFlowStats joining two experts' runs lists them as segments; the map marks where the second starts.
  /** @type {any[]} */
  const segments = Array.isArray(stats.segments) ? stats.segments : [];
  const steps = stats.roles[0].length;
  const switches = /** @type {number[]} */ (segments.map((s) => num(s?.start)).filter((s) => s !== null && s > 0 && s < steps));
  return {
    kind: "realised",
    frames: stats.roles.length,
    steps: stats.roles[0].length,
    roles: stats.roles,
    keyframes: keys,
    // RhymeFlowStats adds flop_speedup (FLOP model of the actual model); the websocket event has neither.
    flopIdeal: num(stats.flop_ideal) ?? num(stats.flop_speedup),
    measuredSpeedup: num(stats.estimated_speedup),
    fullPasses: num(stats.full_passes),
    keyframePasses: num(stats.keyframe_passes),
    note: switches.length
      ? `realised map over ${segments.length} experts (switch at step ${switches.join(", ")}): keyframes ` +
        segments.map((/** @type {any} */ s) => formatFrameList(Array.isArray(s?.keyframes) ? s.keyframes : [])).join(" | ")
      : `realised map: keyframes ${formatFrameList(keys)}`,
    switches,
    error: null,
  };
}

/**
 * The two header lines: what is shown (kind, size, passes), then the speed-ups.
 * @param {StepMapView} view
 * @returns {[string, string]}
 */
export function summaryLines(view) {
  if (view.error) return [`error: ${view.error}`, ""];
  const first = [view.kind === "planned" ? "PLANNED" : "REALISED", `${view.frames} frames × ${view.steps} steps`];
  if (view.fullPasses !== null && view.keyframePasses !== null) {
    first.push(`${view.fullPasses} full + ${view.keyframePasses} keyframe passes`);
  }
  const second = [];
  if (view.flopIdeal !== null) second.push(`FLOP-ideal speed-up ×${view.flopIdeal.toFixed(2)}`);
  if (view.measuredSpeedup !== null) second.push(`estimated ×${view.measuredSpeedup.toFixed(2)}`);
  return [first.join(" · "), second.join(" · ")];
}

/**
 * The header as one line (logs, tooltips, tests).
 * @param {StepMapView} view
 * @returns {string}
 */
export function summaryLine(view) {
  return summaryLines(view).filter(Boolean).join(" · ");
}

/**
 * Does an executed-node id from the server (possibly a subgraph path "12:5") name this node?
 * @param {unknown} eventNode
 * @param {string | number} nodeId
 * @returns {boolean}
 */
export function matchesNode(eventNode, nodeId) {
  if (eventNode === undefined || eventNode === null) return false;
  const ev = String(eventNode);
  const id = String(nodeId);
  return ev === id || ev.endsWith(`:${id}`);
}

/**
 * Count of cells per role, e.g. for a caption or a test.
 * @param {number[][]} roles
 * @returns {Record<number, number>}
 */
export function roleCounts(roles) {
  /** @type {Record<number, number>} */
  const out = { 0: 0, 1: 0, 2: 0, 3: 0 };
  for (const row of roles) for (const c of row) out[c] = (out[c] ?? 0) + 1;
  return out;
}

/**
 * The text a node returned as ``ui.text``, as shown on the node. ComfyUI sends a list with one entry per
 * execution (several when the node runs over a list input); entries may be lists themselves, or absent.
 * Entries are flattened and separated by a blank line, since each is a multi-line summary.
 * @param {unknown} value
 * @returns {string}
 */
export function outputText(value) {
  /** @type {string[]} */
  const parts = [];
  /** @param {unknown} v */
  const walk = (v) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v !== undefined && v !== null && v !== "") parts.push(String(v));
  };
  walk(value);
  return parts.join("\n\n");
}

/**
 * Rows ``text`` takes in a box ``columns`` characters wide that wraps like a textarea: at spaces, and inside
 * words longer than a row (sizes the node's text box before the browser lays it out).
 * @param {string} text
 * @param {number} columns
 * @returns {number}
 */
export function wrappedRows(text, columns) {
  const cols = Math.max(1, Math.floor(columns));
  let rows = 0;
  for (const line of text.split("\n")) {
    rows += 1;
    let used = 0;
    for (const word of line.split(" ")) {
      const need = used === 0 ? word.length : used + 1 + word.length;
      if (need <= cols) {
        used = need;
        continue;
      }
      if (used > 0) rows += 1; // the word starts a new row
      rows += Math.max(0, Math.ceil(word.length / cols) - 1);
      used = word.length % cols || Math.min(word.length, cols);
    }
  }
  return rows;
}
