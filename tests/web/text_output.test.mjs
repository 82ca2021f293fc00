// Unit tests of the text formatting behind web/rhymeflow_text_output.js (node:test; no browser, no ComfyUI).
// Run: node --test tests/web/
import assert from "node:assert/strict";
import { test } from "node:test";

import { outputText, wrappedRows } from "../../web/step_map_logic.js";

test("outputText shows the one summary a node returns unchanged", () => {
  const summary = "AsymRnR: 9 of 12 (block, step) cells reduced\ntokens kept: q 71.0%, k/v 79.2%";
  assert.equal(outputText([summary]), summary);
  assert.equal(outputText(summary), summary);
});

test("outputText separates the entries of a list-mapped run by a blank line and flattens nested lists", () => {
  assert.equal(outputText(["a\nb", ["c", ["d"]]]), "a\nb\n\nc\n\nd");
  assert.equal(outputText([1, "x"]), "1\n\nx");
});

test("outputText drops missing and empty entries", () => {
  for (const empty of [undefined, null, "", [], [null, "", []]]) assert.equal(outputText(empty), "");
  assert.equal(outputText(["", "a", null]), "a");
});

test("wrappedRows wraps at spaces like a textarea", () => {
  assert.equal(wrappedRows("", 40), 1);
  assert.equal(wrappedRows("abc\n\ndef", 40), 3);
  assert.equal(wrappedRows("aaaa bbbb", 9), 1); // exactly full
  assert.equal(wrappedRows("aaaa bbbbb", 9), 2); // the second word moves down whole
  assert.equal(wrappedRows("aa bb cc dd ee", 5), 3); // "aa bb" / "cc dd" / "ee"
  assert.equal(wrappedRows("aaaa bbbbb", 9.9), 2); // a fractional width counts whole characters only
});

test("wrappedRows breaks words longer than a row", () => {
  assert.equal(wrappedRows("x".repeat(10), 10), 1);
  assert.equal(wrappedRows("x".repeat(25), 10), 3);
  assert.equal(wrappedRows(`ab ${"x".repeat(25)} cd`, 10), 4); // "ab" / 10 / 10 / "xxxxx cd"
  assert.equal(wrappedRows("abc", 0), 3); // a degenerate width still gives a finite count
});
