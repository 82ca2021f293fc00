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
export const ROLE_REUSE = 4;

/** Names of the roles; must equal rhymeflow_core.schedule.ROLE_LEGEND (checked by tests/test_step_map_query.py). */
export const ROLE_LEGEND = Object.freeze({ 0: "warm-up", 1: "sync", 2: "keyframe", 3: "projected", 4: "reused" });

/**
 * What each role means, in the words the map shows (ROLE_LEGEND above is the data's vocabulary). Warm-up
 * and sync steps cost the same, a pass over every frame, so they share a colour; the warm-up is marked
 * over its columns instead.
 */
export const ROLE_WORDS = Object.freeze({
  0: "full pass (warm-up)", 1: "full pass", 2: "keyframes only", 3: "skipped, projected", 4: "no pass (step reused)",
});

/** What happens to a frame in a cell of each role (the hover tooltip). */
export const ROLE_EXPLAINED = Object.freeze({
  0: "Every frame is computed. Keyframes are chosen from the prediction at the end of the warm-up.",
  1: "Every frame is computed; the skipped frames are put back on their computed trajectory here and the cache "
    + "the keyframe-only passes read is refreshed.",
  2: "This keyframe is computed, in a pass over the keyframes only; it sees the other frames through what the "
    + "last full pass cached.",
  3: "Not computed: this frame is moved along its trajectory from the last full pass (projected) and is computed "
    + "again at the next full pass.",
  4: "No pass at this step: every frame keeps the last pass's prediction (step caching), so the solver's step "
    + "spans this one.",
});

/**
 * The map paints its own dark panel, so its colours keep their contrast whatever the node's colour and
 * the theme (the dark theme's node body, #353535, is too light for a dark "skipped" colour to show).
 */
export const PANEL_COLOR = "#18181b";


/**
 * Cell colours per role, three lightness levels (full > keyframes only > skipped) so they also stand
 * apart without colour vision: each is at least 3:1 against the panel (WCAG 2.1 non-text contrast), and
 * the pairs that meet in a map at least MIN_ROLE_CONTRAST (tests/web/step_map_logic.test.mjs checks both).
 * A reused step (4) computes nothing, so its column is drawn almost as the empty panel: a gap in the map is
 * what "no pass" looks like, and it stands apart from every computed role, each 3:1 above the panel.
 */
export const ROLE_COLORS = Object.freeze({ 0: "#fde68a", 1: "#fde68a", 2: "#22c55e", 3: "#4169a8", 4: "#27272a" });
/**
 * Between role colours. 3:1 is out of reach: three colours each 3:1 above a dark panel and 3:1 apart
 * would need a luminance above 1. 1.75:1 still separates them in greyscale.
 */
export const MIN_ROLE_CONTRAST = 1.75;

/** Colour of the marker beside a keyframe row, of the expert switch, and of a cell whose role is unknown. */
export const KEYFRAME_MARK_COLOR = "#f4f4f5";
export const SWITCH_COLOR = "#ffffff"; // drawn over a PANEL_COLOR outline: it crosses cells of every colour
export const UNKNOWN_COLOR = "#ff00ff";

/** Text on the panel: main, secondary and error (at least 4.5:1 against it, WCAG AA for text). */
export const TEXT_COLOR = "#e4e4e7";
export const MUTED_COLOR = "#a1a1aa";
export const ERROR_COLOR = "#f87171";

/**
 * Font sizes in CSS px of the widget, which ComfyUI scales with the graph's zoom: at 80% the legend is
 * 10.4 px on screen, tick numbers 9.6 px.
 */
export const LEGEND_PX = 13;
/** Height of one legend row, and the gap between legend entries on a row. */
export const LEGEND_ROW_PX = LEGEND_PX + 4;
export const LEGEND_GAP_PX = 12;
export const TICK_PX = 12;
export const HEADER_PX = 12;

/**
 * WCAG 2.1 relative luminance of a ``#rrggbb`` colour.
 * @param {string} hex
 * @returns {number}
 */
export function relativeLuminance(hex) {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!m) throw new Error(`not a #rrggbb colour: ${hex}`);
  const [r, g, b] = m.slice(1).map((h) => {
    const c = Number.parseInt(h, 16) / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/**
 * WCAG 2.1 contrast ratio of two ``#rrggbb`` colours, 1 (same) to 21 (black on white).
 * @param {string} a
 * @param {string} b
 * @returns {number}
 */
export function contrastRatio(a, b) {
  const [hi, lo] = [relativeLuminance(a), relativeLuminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

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
 * @property {{label: string, start: number}[]} experts which model samples from which step; empty for one model
 * @property {number[] | null} sigmas noise level at the start of each step, when the source sends them
 * @property {boolean} ownSize the speed-up is priced on the model's own dims (read from its file, or the run's)
 * @property {string} pricedOn what priced the speed-up (the route's flop_model), for the hover of the header
 * @property {string | null} error
 */

/**
 * @typedef {object} LegendItem
 * @property {"cell" | "mark" | "switch"} kind a cell colour, the keyframe marker or the expert switch line
 * @property {string} color
 * @property {string} label
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
 * @property {number} legendTop y where the legend starts (below the step axis)
 * @property {number} markW width of the keyframe marker column left of the grid
 * @property {number} markX x of the keyframe marker column
 * @property {number} stepAxisY y of the step tick numbers
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
 * Grid geometry: the frame axis (title, tick numbers) and a keyframe marker column on the left, then
 * ``steps`` columns; ``frames`` rows below the header and a row for the warm-up and expert marks; the step
 * axis below the grid, then the legend. Cells are at least 1 px; rows are capped at 16 px so a short video
 * does not make huge rows.
 * @param {number} width canvas width (CSS px)
 * @param {number} height canvas height (CSS px)
 * @param {number} frames
 * @param {number} steps
 * @param {{header?: number, legendRows?: number, pad?: number, markW?: number, axisW?: number}} [opts]
 *   ``header``: height above the grid (summary lines and the marks row); ``legendRows``: rows of legend
 *   (see legendRowCount) kept below the step axis, plus one for the note; ``axisW``: width of the frame
 *   axis (title and tick numbers)
 * @returns {Layout}
 */
export function gridLayout(width, height, frames, steps, opts = {}) {
  const header = opts.header ?? 3 * (HEADER_PX + 3) + TICK_PX + 4;
  const legend = ((opts.legendRows ?? 2) + 1) * LEGEND_ROW_PX;
  const pad = opts.pad ?? 4;
  const markW = opts.markW ?? 6;
  const axisW = opts.axisW ?? LEGEND_PX + 3 * TICK_PX * 0.62 + 4;
  const stepAxis = TICK_PX + 4;
  const f = Math.max(1, frames);
  const s = Math.max(1, steps);
  const markX = pad + axisW;
  const left = markX + markW + 2;
  const top = header;
  const cellW = Math.max(1, (width - left - pad) / s);
  const cellH = Math.max(1, Math.min(16, (height - header - stepAxis - legend - pad) / f));
  const gridW = cellW * s;
  const gridH = cellH * f;
  const stepAxisY = top + gridH + 2;
  return { left, top, cellW, cellH, frames: f, steps: s, gridW, gridH, legendTop: stepAxisY + stepAxis, markW, markX, stepAxisY };
}

/**
 * Which indices of an axis get a tick number: every ``k``-th, ``k`` the smallest of 1, 2, 5, 10, 20, 50, ...
 * that leaves ``minGapPx`` between numbers, counted from the first label ``base`` (0 for frames, 1 for
 * steps, as the map numbers them); the first and the last index always get one, and a regular tick too
 * close to the last is dropped.
 * @param {number} count number of rows or columns
 * @param {number} cellPx size of one along the axis
 * @param {number} minGapPx
 * @param {number} [base] the label of index 0
 * @returns {number[]} indices (0-based), ascending
 */
export function axisTicks(count, cellPx, minGapPx, base = 0) {
  if (count <= 0) return [];
  const px = Math.max(cellPx, 1e-6);
  let k = 1;
  for (let m = 1; ; m *= 10) {
    const nice = [1, 2, 5].map((x) => x * m).find((x) => x * px >= minGapPx);
    if (nice !== undefined) {
      k = nice;
      break;
    }
  }
  const last = count - 1;
  /** @type {number[]} */
  const out = [0];
  for (let i = 1; i < last; i++) {
    const roomBefore = (i - out[out.length - 1]) * px >= minGapPx;
    if ((i + base) % k === 0 && roomBefore && (last - i) * px >= minGapPx) out.push(i);
  }
  if (last > 0) out.push(last);
  return out;
}

/**
 * Columns at the start of the map where every frame is in warm-up.
 * @param {number[][]} roles
 * @returns {number}
 */
export function warmupColumns(roles) {
  const steps = roles[0]?.length ?? 0;
  let n = 0;
  while (n < steps && roles.every((row) => row[n] === ROLE_WARMUP)) n++;
  return n;
}

/**
 * What each step's pass is, one letter per step: W warm-up (every frame), S sync (every frame), K keyframes only.
 * Planned and realised maps of one run have the same string even where the keyframes differ (semantic/dynamic
 * keyframes are chosen during the run).
 * @param {number[][]} roles
 * @returns {string}
 */
export function passKinds(roles) {
  const steps = roles[0]?.length ?? 0;
  let out = "";
  for (let s = 0; s < steps; s++) {
    const col = roles.map((row) => row[s]);
    out += col.every((r) => r === ROLE_WARMUP) ? "W" : col.every((r) => r === ROLE_SYNC) ? "S" : "K";
  }
  return out;
}

/**
 * Rows the legend takes when entries of these widths flow left to right and wrap at ``maxW``.
 * @param {number[]} widths
 * @param {number} maxW
 * @returns {number}
 */
export function legendRowCount(widths, maxW) {
  let rows = 1;
  let x = 0;
  for (const w of widths) {
    if (x > 0 && x + w > maxW) {
      rows += 1;
      x = 0;
    }
    x += w + LEGEND_GAP_PX;
  }
  return rows;
}

/**
 * Legend entries in drawing order: each role colour once (warm-up and sync share "full pass"), then the
 * keyframe marker, then the expert switch when the map has one.
 * @param {StepMapView} view
 * @returns {LegendItem[]}
 */
export function legendItems(view) {
  /** @type {LegendItem[]} */
  const out = [
    { kind: "cell", color: roleColor(ROLE_SYNC), label: "full pass" },
    { kind: "cell", color: roleColor(ROLE_KEY), label: "keyframes only" },
    { kind: "cell", color: roleColor(ROLE_SKIP), label: "skipped, projected" },
    { kind: "mark", color: KEYFRAME_MARK_COLOR, label: "keyframe" },
  ];
  if (view.roles.some((row) => row.includes(ROLE_REUSE))) {
    out.splice(3, 0, { kind: "cell", color: roleColor(ROLE_REUSE), label: "no pass (reused)" });
  }
  if (view.switches.length) out.push({ kind: "switch", color: SWITCH_COLOR, label: "expert switch" });
  return out;
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
 * Per-step noise levels when they fit a map of ``steps`` columns, else null.
 * @param {unknown} sigmas
 * @param {number} steps
 * @returns {number[] | null}
 */
function sigmasFor(sigmas, steps) {
  return Array.isArray(sigmas) && sigmas.length === steps && sigmas.every((x) => num(x) !== null) ? sigmas : null;
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
    experts: [],
    sigmas: ok ? sigmasFor(body.sigmas, body.roles[0].length) : null,
    ownSize: ok && body.flop_dims_real === true,
    pricedOn: ok && typeof body.flop_model === "string" ? body.flop_model : "",
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
    // the run's FLOP-ideal at the model's real dims and context mode (stats.py flop_speedup)
    flopIdeal: num(stats.flop_ideal) ?? num(stats.flop_speedup),
    measuredSpeedup: num(stats.estimated_speedup),
    fullPasses: num(stats.full_passes),
    keyframePasses: num(stats.keyframe_passes),
    note: switches.length
      ? `last run, ${segments.length} experts (the second from step ${switches.map((s) => s + 1).join(", ")}): keyframes ` +
        segments.map((/** @type {any} */ s) => formatFrameList(Array.isArray(s?.keyframes) ? s.keyframes : [])).join(" | ")
      : `last run: keyframes ${formatFrameList(keys)}`,
    switches,
    experts: switches.length
      ? segments.map((/** @type {any} */ s, /** @type {number} */ i) => ({ label: String(s?.label ?? `expert ${i + 1}`), start: num(s?.start) ?? 0 }))
      : [],
    sigmas: sigmasFor(stats.sigmas, steps),
    ownSize: stats.flop_dims !== null && stats.flop_dims !== undefined,
    pricedOn: "this run's model",
    error: null,
  };
}

/**
 * The three header lines, in plain words: what is shown, the passes it takes, then the speed-ups.
 * @param {StepMapView} view
 * @returns {[string, string, string]}
 */
export function summaryLines(view) {
  if (view.error) return [`error: ${view.error}`, "", ""];
  const first = `${view.kind === "planned" ? "Planned" : "Last run"} · ${view.frames} frames × ${view.steps} steps`;
  const passes = view.fullPasses !== null && view.keyframePasses !== null
    ? `${view.fullPasses} full + ${view.keyframePasses} keyframe-only passes`
    : "";
  const speed = [];
  if (view.measuredSpeedup !== null) speed.push(`measured speed-up ×${view.measuredSpeedup.toFixed(2)}`);
  if (view.flopIdeal !== null) {
    speed.push(`${speed.length ? "estimated" : "estimated speed-up"} (compute) ×${view.flopIdeal.toFixed(2)}`);
  }
  return [first, passes, speed.join(" · ")];
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
 * What the hover tooltip says about cell (frame, step): where it is, the noise level, the role in plain
 * words and what happens to the frame there. Steps are numbered from 1 as in ComfyUI's progress bar;
 * frames from 0 as in the Keyframes node's frame lists.
 * @param {StepMapView} view
 * @param {number} frame
 * @param {number} step
 * @returns {string[]} lines, the first a title
 */
export function cellInfo(view, frame, step) {
  const role = view.roles[frame]?.[step];
  if (role === undefined) return [];
  const isKey = view.keyframes.includes(frame);
  const where = [`frame ${frame}${isKey ? " (keyframe)" : ""}`, `step ${step + 1} of ${view.steps}`];
  const expert = [...view.experts].reverse().find((e) => step >= e.start);
  if (expert) where.push(expert.label);
  const sigma = view.sigmas?.[step];
  const words = /** @type {Record<number, string>} */ (ROLE_WORDS)[role] ?? `role ${role}`;
  return [
    where.join(" · "),
    sigma !== undefined ? `noise level (sigma) ${sigma.toFixed(3)}` : "noise level: not known for this map",
    words,
    /** @type {Record<number, string>} */ (ROLE_EXPLAINED)[role] ?? "",
    "Click to toggle this frame as a manual keyframe.",
  ].filter(Boolean);
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
