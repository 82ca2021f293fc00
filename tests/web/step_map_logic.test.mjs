// Unit tests of web/step_map_logic.js (node:test; no browser, no ComfyUI).
// Run: node --test tests/web/   (the fixture is written by tests/test_step_map_query.py from the Python core)
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  ERROR_COLOR,
  KEYFRAME_MARK_COLOR,
  LEGEND_PX,
  LEGEND_ROW_PX,
  MIN_ROLE_CONTRAST,
  MUTED_COLOR,
  PANEL_COLOR,
  ROLE_COLORS,
  ROLE_KEY,
  ROLE_LEGEND,
  ROLE_SKIP,
  ROLE_REUSE,
  ROLE_SYNC,
  ROLE_WARMUP,
  ROLE_WORDS,
  SWITCH_COLOR,
  TEXT_COLOR,
  TICK_PX,
  UNKNOWN_COLOR,
  axisTicks,
  cellInfo,
  cellRect,
  contrastRatio,
  legendItems,
  legendRowCount,
  relativeLuminance,
  warmupColumns,
  clampFloat,
  clampInt,
  formatFrameList,
  frameAtPoint,
  gridLayout,
  isRoleMatrix,
  manualTextAfterClick,
  matchesNode,
  parseFrameList,
  roleColor,
  roleCounts,
  stepAtPoint,
  stepMapQuery,
  summaryLine,
  summaryLines,
  toggleFrame,
  viewFromPlanned,
  viewFromStats,
} from "../../web/step_map_logic.js";

const fixture = JSON.parse(readFileSync(new URL("./fixtures/step_map_fixture.json", import.meta.url), "utf8"));

test("role codes and legend match the Python core (fixture)", () => {
  assert.deepEqual([ROLE_WARMUP, ROLE_SYNC, ROLE_KEY, ROLE_SKIP], [0, 1, 2, 3]);
  assert.deepEqual({ ...ROLE_LEGEND }, fixture.legend);
  assert.deepEqual({ ...ROLE_LEGEND }, fixture.planned.legend);
});

test("each kind of pass has its own colour (warm-up and sync are both full passes); unknown roles are flagged", () => {
  const colours = [0, 1, 2, 3].map(roleColor);
  assert.equal(roleColor(ROLE_WARMUP), roleColor(ROLE_SYNC));
  assert.equal(new Set(colours).size, 3);
  for (const c of colours) assert.match(c, /^#[0-9a-f]{6}$/);
  assert.equal(roleColor(7), UNKNOWN_COLOR);
  assert.deepEqual(Object.keys(ROLE_COLORS), Object.keys(ROLE_LEGEND));
  assert.deepEqual(Object.keys(ROLE_WORDS), Object.keys(ROLE_LEGEND));
});

test("contrastRatio is WCAG 2.1's", () => {
  assert.equal(relativeLuminance("#000000"), 0);
  assert.equal(relativeLuminance("#ffffff"), 1);
  assert.equal(contrastRatio("#000000", "#ffffff"), 21);
  assert.equal(contrastRatio("#777777", "#777777"), 1);
  assert.equal(contrastRatio("#ffffff", "#000000"), contrastRatio("#000000", "#ffffff"));
  assert.ok(Math.abs(contrastRatio("#767676", "#ffffff") - 4.54) < 0.01); // the classic AA-passing grey
  assert.throws(() => relativeLuminance("red"), /#rrggbb/);
});

/** Distinct role pairs that meet side by side or one above the other in ``roles``. */
function touchingPairs(roles) {
  const pairs = new Set();
  const add = (a, b) => a !== b && pairs.add([a, b].sort().join(","));
  roles.forEach((row, f) => row.forEach((r, s) => {
    if (s + 1 < row.length) add(r, row[s + 1]);
    if (f + 1 < roles.length) add(r, roles[f + 1][s]);
  }));
  return [...pairs].map((p) => p.split(",").map(Number));
}

test("role colours stand apart on the panel, and from each other where they touch", () => {
  for (const role of [0, 1, 2, 3]) {
    const c = contrastRatio(roleColor(role), PANEL_COLOR);
    assert.ok(c >= 3, `${ROLE_WORDS[role]} ${roleColor(role)}: ${c.toFixed(2)}:1 against the panel ${PANEL_COLOR}`);
  }
  // every pair that meets in the fixture's planned map and in a two-expert realised map
  const twoExperts = [[0, 0, 2, 1, 2, 1, 2], [0, 0, 3, 1, 3, 1, 3], [0, 0, 2, 1, 2, 1, 2]];
  const pairs = [...touchingPairs(fixture.planned.roles), ...touchingPairs(twoExperts)];
  assert.ok(pairs.length >= 4, JSON.stringify(pairs));
  for (const [a, b] of pairs) {
    if (roleColor(a) === roleColor(b)) continue; // both full passes: one colour on purpose
    const c = contrastRatio(roleColor(a), roleColor(b));
    assert.ok(c >= MIN_ROLE_CONTRAST, `${ROLE_WORDS[a]} / ${ROLE_WORDS[b]}: ${c.toFixed(2)}:1`);
  }
  // the marks drawn beside and through the grid
  assert.ok(contrastRatio(KEYFRAME_MARK_COLOR, PANEL_COLOR) >= 3);
  assert.ok(contrastRatio(SWITCH_COLOR, PANEL_COLOR) >= 3);
});

test("text on the map meets WCAG AA (4.5:1) against the panel", () => {
  for (const c of [TEXT_COLOR, MUTED_COLOR, ERROR_COLOR]) {
    assert.ok(contrastRatio(c, PANEL_COLOR) >= 4.5, `${c}: ${contrastRatio(c, PANEL_COLOR).toFixed(2)}:1`);
  }
});

test("legend and tick numbers stay at least 9.5 px on screen at 80% zoom", () => {
  assert.ok(LEGEND_PX * 0.8 >= 10, String(LEGEND_PX));
  assert.ok(TICK_PX * 0.8 >= 9.5, String(TICK_PX));
});

test("legendItems uses plain words, one entry per colour, and the switch only when there is one", () => {
  const planned = viewFromPlanned(fixture.planned);
  const items = legendItems(planned);
  assert.deepEqual(items.map((i) => i.label), ["full pass", "keyframes only", "skipped, projected", "keyframe"]);
  assert.deepEqual(items.slice(0, 3).map((i) => i.color), [roleColor(ROLE_SYNC), roleColor(ROLE_KEY), roleColor(ROLE_SKIP)]);
  const roles = [[0, 0, 1, 2, 0, 1, 2], [0, 0, 1, 3, 0, 1, 3]];
  const segments = [{ label: "high-noise expert", start: 0, keyframes: [0] }, { label: "low-noise expert", start: 4, keyframes: [0] }];
  assert.equal(legendItems(viewFromStats({ roles, keyframes: [0], segments })).at(-1).label, "expert switch");
});

test("no jargon on the canvas: header, legend, tooltip and notes", () => {
  const planned = viewFromPlanned(fixture.planned);
  const realised = viewFromStats({ roles: [[0, 1, 2], [0, 1, 3]], keyframes: [0], full_passes: 2, keyframe_passes: 1,
    estimated_speedup: 1.2, flop_speedup: 1.4 });
  const texts = [planned, realised].flatMap((v) => [
    ...summaryLines(v), v.note, ...legendItems(v).map((i) => i.label),
    ...v.roles.flatMap((row, f) => row.flatMap((_, s) => cellInfo(v, f, s))),
  ]);
  for (const t of texts) assert.doesNotMatch(t, /\bsync|FLOP|ideal|sigma ≥/i, t);
});

test("legendRowCount wraps entries like the drawn legend", () => {
  assert.equal(legendRowCount([50, 50, 50], 200), 1); // 50 + 12 + 50 + 12 + 50 = 174
  assert.equal(legendRowCount([100, 100], 200), 2); // 100 + 12 + 100 > 200
  assert.equal(legendRowCount([300, 20], 200), 2); // an entry wider than the row still gets one
  assert.equal(legendRowCount([], 200), 1);
});

test("gridLayout keeps the step axis, legend rows and note inside the canvas", () => {
  // the canvas of the widget at its minimum height (320 px, less at most 30 for the frames/steps bar)
  for (const legendRows of [1, 2, 3]) {
    const L = gridLayout(340, 290, 21, 30, { legendRows });
    assert.ok(L.stepAxisY >= L.top + L.gridH && L.legendTop > L.stepAxisY);
    assert.ok(L.legendTop + (legendRows + 1) * LEGEND_ROW_PX <= 290 + 1e-9, JSON.stringify(L));
    assert.ok(L.cellH >= 6, String(L.cellH)); // 21 frames stay readable in the widget's minimum height
  }
});

test("axisTicks labels the first and last index and evenly spaced round numbers between", () => {
  assert.deepEqual(axisTicks(21, 8, 14), [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]);
  assert.deepEqual(axisTicks(21, 5, 14), [0, 5, 10, 15, 20]);
  assert.deepEqual(axisTicks(30, 9, 24, 1), [0, 4, 9, 14, 19, 24, 29]); // labels 1, 5, 10, ..., 30
  assert.deepEqual(axisTicks(50, 5, 24, 1), [0, 9, 14, 19, 24, 29, 34, 39, 44, 49]); // 1, 10, 15, ...: 5 is too near 1
  assert.deepEqual(axisTicks(50, 5, 26, 1), [0, 9, 19, 29, 39, 49]); // labels 1, 10, 20, ..., 50
  assert.deepEqual(axisTicks(1, 10, 14), [0]);
  assert.deepEqual(axisTicks(0, 10, 14), []);
  // no two labels closer than the gap, whatever the sizes
  for (const [count, px, gap, base] of [[21, 3.3, 14, 0], [1000, 0.4, 30, 1], [7, 40, 14, 1], [13, 6, 14, 0]]) {
    const t = axisTicks(count, px, gap, base);
    assert.equal(t[0], 0);
    assert.equal(t.at(-1), count - 1);
    for (let i = 1; i < t.length; i++) assert.ok((t[i] - t[i - 1]) * px >= gap || t.length === 2, JSON.stringify([count, px, t]));
  }
});

test("warmupColumns counts the leading columns where every frame warms up", () => {
  assert.equal(warmupColumns(viewFromPlanned(fixture.planned).roles), fixture.planned.warmup);
  assert.equal(warmupColumns([[0, 0, 1], [0, 2, 1]]), 1);
  assert.equal(warmupColumns([[1, 0]]), 0);
  assert.equal(warmupColumns([[0, 0]]), 2);
});

test("cellInfo explains a cell: frame, step from 1, sigma, role in plain words, what happens", () => {
  const v = viewFromPlanned(fixture.planned);
  assert.equal(v.sigmas.length, v.steps);
  const f = v.keyframes[0];
  const skipped = v.roles.findIndex((row) => row.includes(ROLE_SKIP));
  const s = v.roles[skipped].indexOf(ROLE_SKIP);
  const lines = cellInfo(v, skipped, s);
  assert.equal(lines[0], `frame ${skipped} · step ${s + 1} of ${v.steps}`);
  assert.equal(lines[1], `noise level (sigma) ${fixture.planned.sigmas[s].toFixed(3)}`);
  assert.equal(lines[2], "skipped, projected");
  assert.match(lines[3], /Not computed/);
  assert.match(cellInfo(v, f, 0)[0], new RegExp(`^frame ${f} \\(keyframe\\) · step 1 of`));
  assert.equal(cellInfo(v, f, 0)[2], "full pass (warm-up)");
  assert.deepEqual(cellInfo(v, v.frames, 0), []); // outside the map
  // realised, two experts, no sigmas in the stats: says so and names the expert
  const roles = [[0, 0, 1, 2, 0, 1, 2]];
  const segments = [{ label: "high-noise expert", start: 0, keyframes: [0] }, { label: "low-noise expert", start: 4, keyframes: [0] }];
  const r = viewFromStats({ roles, keyframes: [0], segments });
  assert.equal(cellInfo(r, 0, 3)[0], "frame 0 (keyframe) · step 4 of 7 · high-noise expert");
  assert.equal(cellInfo(r, 0, 4)[0], "frame 0 (keyframe) · step 5 of 7 · low-noise expert");
  assert.equal(cellInfo(r, 0, 4)[1], "noise level: not known for this map");
  assert.equal(cellInfo(viewFromStats({ roles, keyframes: [0], sigmas: [1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4] }), 0, 5)[1],
    "noise level (sigma) 0.500");
  assert.equal(viewFromStats({ roles, keyframes: [0], sigmas: [1, 0.9] }).sigmas, null); // not one per step
});

test("parseFrameList agrees with rhymeflow_core.keyframes.parse_frame_list", () => {
  assert.ok(fixture.frame_lists.length >= 5);
  for (const c of fixture.frame_lists) {
    if (c.error) assert.throws(() => parseFrameList(c.text), /cannot read frame list/, JSON.stringify(c.text));
    else assert.deepEqual(parseFrameList(c.text), c.frames, JSON.stringify(c.text));
  }
  assert.throws(() => parseFrameList("0-99999999"), /limit/);
});

test("formatFrameList compresses runs of three or more and round-trips", () => {
  assert.equal(formatFrameList([0, 6, 12, 13, 14]), "0, 6, 12-14");
  assert.equal(formatFrameList([14, 12, 13, 6, 0, 6]), "0, 6, 12-14");
  assert.equal(formatFrameList([4, 5]), "4, 5");
  assert.equal(formatFrameList([]), "");
  for (const frames of [[0], [0, 1, 2, 3, 9], [1, 3, 5], [2, 3, 4, 7, 8, 9, 10, 20]]) {
    assert.deepEqual(parseFrameList(formatFrameList(frames)), frames);
  }
});

test("toggleFrame adds and removes", () => {
  assert.deepEqual(toggleFrame([0, 6], 3), [0, 3, 6]);
  assert.deepEqual(toggleFrame([0, 3, 6], 3), [0, 6]);
  assert.deepEqual(toggleFrame([], 0), [0]);
});

test("manualTextAfterClick toggles in the manual text, or starts from the shown keyframes", () => {
  assert.equal(manualTextAfterClick({ strategy: "manual", manualText: "0, 6, 12-14", shownKeyframes: [], frame: 13 }), "0, 6, 12, 14");
  assert.equal(manualTextAfterClick({ strategy: "manual", manualText: "0, 6, 12, 14", shownKeyframes: [], frame: 13 }), "0, 6, 12-14");
  assert.equal(manualTextAfterClick({ strategy: "semantic", manualText: "1", shownKeyframes: [0, 7, 13, 20], frame: 10 }), "0, 7, 10, 13, 20");
  assert.equal(manualTextAfterClick({ strategy: "uniform", manualText: "", shownKeyframes: [0, 7, 13, 20], frame: 7 }), "0, 13, 20");
  // unreadable manual text: fall back to what is on screen
  assert.equal(manualTextAfterClick({ strategy: "manual", manualText: "oops", shownKeyframes: [0, 20], frame: 5 }), "0, 5, 20");
});

test("gridLayout and hit-testing map every cell centre back to its frame and step", () => {
  const L = gridLayout(320, 200, 21, 30);
  assert.ok(L.cellW > 0 && L.cellH > 0 && L.cellH <= 16);
  assert.ok(L.left + L.gridW <= 320 + 1e-9 && L.legendTop <= 200);
  for (let f = 0; f < 21; f++) {
    for (let s = 0; s < 30; s += 7) {
      const r = cellRect(L, f, s);
      assert.equal(frameAtPoint(L, r.x + r.w / 2, r.y + r.h / 2), f);
      assert.equal(stepAtPoint(L, r.x + r.w / 2, r.y + r.h / 2), s);
    }
    // the keyframe marker column left of the grid is part of the row
    assert.equal(frameAtPoint(L, 2, L.top + (f + 0.5) * L.cellH), f);
    assert.equal(stepAtPoint(L, 2, L.top + (f + 0.5) * L.cellH), -1);
  }
  assert.equal(frameAtPoint(L, 100, L.top - 1), -1); // header
  assert.equal(frameAtPoint(L, 100, L.top + L.gridH + 1), -1); // legend
  assert.equal(frameAtPoint(L, L.left + L.gridW + 1, L.top + 1), -1); // right of the grid
});

test("gridLayout stays usable when the canvas is tiny or the map is huge", () => {
  const L = gridLayout(50, 40, 512, 1000);
  assert.equal(L.cellW, 1);
  assert.equal(L.cellH, 1);
  assert.equal(frameAtPoint(L, L.left, L.top + 3.5), 3);
});

test("stepMapQuery has a fixed key order and drops empty values", () => {
  const a = stepMapQuery({ strategy: "manual", frames: 21, steps: 30, manual: "0, 6, 12-14", budget: undefined, force_last: false });
  const b = stepMapQuery({ force_last: false, manual: "0, 6, 12-14", steps: 30, frames: 21, strategy: "manual" });
  assert.equal(a, b);
  assert.equal(a, "frames=21&steps=30&strategy=manual&manual=0%2C+6%2C+12-14&force_last=false");
  const parsed = new URLSearchParams(a);
  assert.equal(parsed.get("manual"), "0, 6, 12-14");
});

test("clampFloat keeps a shift real-valued, bounded and readable", () => {
  assert.equal(clampFloat("2.37", 0.1, 100, 3), 2.37);
  assert.equal(clampFloat("8", 0.1, 100, 3), 8);
  assert.equal(clampFloat("1e9", 0.1, 100, 3), 100);
  assert.equal(clampFloat("0", 0.1, 100, 3), 0.1);
  assert.equal(clampFloat("abc", 0.1, 100, 3), 3);
  assert.equal(clampFloat(2.3456, 0.1, 100, 3), 2.35);
});

test("clampInt", () => {
  assert.equal(clampInt("42", 2, 512, 21), 42);
  assert.equal(clampInt("9999", 2, 512, 21), 512);
  assert.equal(clampInt("", 2, 512, 21), 21);
  assert.equal(clampInt(undefined, 2, 512, 21), 21);
  assert.equal(clampInt(3.6, 2, 512, 21), 4);
});

test("viewFromPlanned reads the route's answer (fixture from the Python core)", () => {
  const v = viewFromPlanned(fixture.planned);
  assert.equal(v.error, null);
  assert.equal(v.kind, "planned");
  assert.equal(v.frames, 6);
  assert.equal(v.steps, 12);
  assert.deepEqual(v.keyframes, fixture.planned.keyframes);
  assert.ok(v.flopIdeal > 1);
  const counts = roleCounts(v.roles);
  assert.equal(counts[0], 6 * fixture.planned.warmup);
  assert.equal(counts[0] + counts[1] + counts[2] + counts[3], 6 * 12);
  assert.match(summaryLine(v), /^Planned · 6 frames × 12 steps · \d+ full \+ \d+ keyframe-only passes · estimated speed-up \(compute\) ×\d+\.\d\d$/);
  assert.deepEqual(summaryLines(v).length, 3);
});

test("viewFromPlanned carries the route's error message", () => {
  const v = viewFromPlanned(fixture.planned_error);
  assert.match(v.error, /steps=9/);
  assert.deepEqual(v.roles, []);
  assert.match(summaryLine(v), /^error: /);
  assert.match(viewFromPlanned({}).error, /no map/);
});

test("viewFromStats reads the sampler's realised stats", () => {
  const stats = {
    node: "7",
    roles: [[0, 0, 1, 2], [0, 0, 1, 3], [0, 0, 1, 2]],
    keyframes: [0, 2],
    full_passes: 3,
    keyframe_passes: 1,
    estimated_speedup: 1.234,
  };
  const v = viewFromStats(stats);
  assert.ok(v);
  assert.equal(v.kind, "realised");
  assert.equal(v.frames, 3);
  assert.equal(v.steps, 4);
  assert.equal(v.measuredSpeedup, 1.234);
  assert.equal(v.flopIdeal, null);
  assert.deepEqual(summaryLines(v), ["Last run · 3 frames × 4 steps", "3 full + 1 keyframe-only passes", "measured speed-up ×1.23"]);
  assert.equal(summaryLines(viewFromStats({ ...stats, flop_speedup: 1.5 }))[2], "measured speed-up ×1.23 · estimated (compute) ×1.50");
  assert.equal(viewFromStats({ ...stats, flop_speedup: 1.5 }).flopIdeal, 1.5);
  assert.equal(viewFromStats({ ...stats, flop_speedup: null }).flopIdeal, null);
  assert.equal(viewFromStats({ roles: [[0, 9]] }), null);
  assert.equal(viewFromStats({ roles: [[0, 1], [0]] }), null);
  assert.equal(viewFromStats(null), null);
});

test("viewFromStats marks where the second expert's run starts", () => {
  const roles = [[0, 0, 1, 2, 0, 1, 2], [0, 0, 1, 3, 0, 1, 3]];
  const segments = [
    { label: "high-noise expert", start: 0, steps: 4, keyframes: [0] },
    { label: "low-noise expert", start: 4, steps: 3, keyframes: [1] },
  ];
  const v = viewFromStats({ roles, keyframes: [0, 1], segments });
  assert.deepEqual(v.switches, [4]);
  assert.match(v.note, /2 experts \(the second from step 5\): keyframes 0 \| 1/);
  assert.deepEqual(v.experts, [{ label: "high-noise expert", start: 0 }, { label: "low-noise expert", start: 4 }]);
  assert.deepEqual(viewFromStats({ roles, keyframes: [0] }).switches, []);
  assert.deepEqual(viewFromStats({ roles, keyframes: [0], segments: [{ start: 0 }, { start: 99 }] }).switches, []);
});

test("isRoleMatrix", () => {
  assert.ok(isRoleMatrix([[0, 1], [2, 3]]));
  assert.ok(!isRoleMatrix([]));
  assert.ok(!isRoleMatrix([[]]));
  assert.ok(!isRoleMatrix([[0, 1.5]]));
});

test("matchesNode handles plain and subgraph execution ids", () => {
  assert.ok(matchesNode("7", 7));
  assert.ok(matchesNode(7, "7"));
  assert.ok(matchesNode("12:7", 7));
  assert.ok(!matchesNode("17", 7));
  assert.ok(!matchesNode(undefined, 7));
});

test("a reused step is drawn as a gap: near the panel, apart from every computed role, in the legend only when present", () => {
  assert.ok(contrastRatio(roleColor(ROLE_REUSE), PANEL_COLOR) < 1.5);
  for (const role of [0, 2, 3]) assert.ok(contrastRatio(roleColor(role), roleColor(ROLE_REUSE)) >= MIN_ROLE_CONTRAST);
  const base = { switches: [], roles: [[0, 1, 2]] };
  assert.ok(!legendItems(base).some((i) => i.label.includes("reused")));
  assert.ok(legendItems({ ...base, roles: [[0, 4, 1]] }).some((i) => i.label.includes("reused")));
});
