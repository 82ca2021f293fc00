// Unit tests of web/step_map_logic.js (node:test; no browser, no ComfyUI).
// Run: node --test tests/web/   (the fixture is written by tests/test_step_map_query.py from the Python core)
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  ROLE_COLORS,
  ROLE_KEY,
  ROLE_LEGEND,
  ROLE_SKIP,
  ROLE_SYNC,
  ROLE_WARMUP,
  UNKNOWN_COLOR,
  cellRect,
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

test("every role has its own colour; unknown roles are flagged", () => {
  const colours = [0, 1, 2, 3].map(roleColor);
  assert.equal(new Set(colours).size, 4);
  for (const c of colours) assert.match(c, /^#[0-9a-f]{6}$/);
  assert.equal(roleColor(7), UNKNOWN_COLOR);
  assert.deepEqual(Object.keys(ROLE_COLORS), Object.keys(ROLE_LEGEND));
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
  assert.match(summaryLine(v), /^PLANNED · 6 frames × 12 steps · \d+ full \+ \d+ keyframe passes · FLOP-ideal speed-up ×\d+\.\d\d$/);
  assert.deepEqual(summaryLines(v).length, 2);
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
  assert.deepEqual(summaryLines(v), ["REALISED · 3 frames × 4 steps · 3 full + 1 keyframe passes", "estimated ×1.23"]);
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
  assert.match(v.note, /2 experts \(switch at step 4\): keyframes 0 \| 1/);
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
