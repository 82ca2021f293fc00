"""Lay out the example workflows so no node overlaps another, with room for what grows after a run.

Why a tool: node sizes are the frontend's (widgets, the step map's canvas, hidden inputs), so they are measured in
a real browser (``browser_session``), not guessed. Nodes go into columns by their depth in the graph (a node sits
right of everything that feeds it), in their previous top-to-bottom order; each node's slot is its measured
rectangle (title bar included) plus the growth a run brings: samplers show latent previews, image and video
outputs show the result, RhymeFlow text nodes show their summary. ``tests/comfyui/test_browser.py`` checks the
result after load and after a run.

Run: ``/opt/comfyui/.venv/bin/python tools/layout_workflows.py [names...]`` (default: every file in
example_workflows/); it rewrites ``pos`` and ``size`` and nothing else.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from browser_session import WORKFLOWS, browser_page, comfyui_server, load_workflow

COLUMN_GAP, ROW_GAP = 70, 50
SAMPLERS = {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"}
OUTPUTS = {"PreviewImage", "SaveAnimatedWEBP", "SaveVideo", "SaveImage"}
TEXT_NODES = {"RhymeFlowStats", "RhymeFlowCompare", "RhymeFlowAsymRnRStats", "RhymeFlowAsymRnRSchedule"}
PREVIEW_ROOM = 320  # a latent preview under a sampler (ComfyUI grows the node to show it)
OUTPUT_SIZE = (420, 440)  # image/video outputs get this size in the file: the result shows at a readable size
TEXT_ROOM = (380, 330)  # web/rhymeflow_text_output.js grows a text node to at most 16 rows, 340+ px wide

MEASURE_JS = """() => window.comfyAPI.app.app.graph.nodes.map(n => {
  const min = n.computeSize(); const [x, y, w, h] = n.boundingRect;
  return { id: n.id, w: Math.max(n.size[0], min[0]), h: Math.max(n.size[1], min[1]), title: h - n.size[1] };
})"""


def depths(wf: dict) -> dict[int, int]:
    """Longest path from a node without inputs, by links."""
    preds: dict[int, set[int]] = {n["id"]: set() for n in wf["nodes"]}
    for _, src, _, dst, _, _ in wf["links"]:
        preds[dst].add(src)
    memo: dict[int, int] = {}

    def depth(i: int, seen: frozenset = frozenset()) -> int:
        if i not in memo:
            memo[i] = 0 if not preds[i] or i in seen else 1 + max(depth(p, seen | {i}) for p in preds[i])
        return memo[i]

    return {i: depth(i) for i in preds}


def layout(wf: dict, measured: dict[int, dict]) -> None:
    """Set ``pos`` and ``size`` of every node of ``wf`` in place from the browser's measurements."""
    nodes = {n["id"]: n for n in wf["nodes"]}
    depth = depths(wf)
    columns: dict[int, list[int]] = {}
    for i in sorted(nodes, key=lambda i: (nodes[i]["pos"][1], nodes[i]["pos"][0])):
        columns.setdefault(depth[i], []).append(i)
    x = 0.0
    for col in sorted(columns):
        y, width = 0.0, 0.0
        for i in columns[col]:
            n, m = nodes[i], measured[i]
            w, h = m["w"], m["h"]
            if n["type"] in OUTPUTS:
                w, h = max(w, OUTPUT_SIZE[0]), max(h, OUTPUT_SIZE[1])
            n["size"] = [int(round(w)), int(round(h))]
            slot_w, slot_h = w, h + m["title"]
            if n["type"] in SAMPLERS:
                slot_h += PREVIEW_ROOM
            if n["type"] in TEXT_NODES:
                slot_w, slot_h = max(slot_w, TEXT_ROOM[0]), max(slot_h, TEXT_ROOM[1])
            n["pos"] = [int(round(x)), int(round(y + m["title"]))]
            y += slot_h + ROW_GAP
            width = max(width, slot_w)
        x += width + COLUMN_GAP


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help="workflow file names (default: all in example_workflows/)")
    args = ap.parse_args()
    paths = [WORKFLOWS / n for n in args.names] if args.names else sorted(WORKFLOWS.glob("*.json"))
    with comfyui_server() as url, browser_page(url, scale=1) as page:
        for path in paths:
            text = path.read_text()
            wf = json.loads(text)
            load_workflow(page, wf)
            measured = {m["id"]: m for m in page.evaluate(MEASURE_JS)}
            layout(wf, measured)
            second = text.split("\n", 2)[1]
            indent = len(second) - len(second.lstrip(" "))  # keep each file's own format: the diff shows only the layout
            path.write_text(json.dumps(wf, indent=indent, ensure_ascii=False) + ("\n" if text.endswith("\n") else ""))
            print(f"laid out {Path(path).name}: {len(wf['nodes'])} nodes")


if __name__ == "__main__":
    main()
