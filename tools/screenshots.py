"""Real-browser screenshots of every example workflow and of its step maps before and after a run, and the template
browser's thumbnails, regenerated from the code so they stay true.

What it writes (ComfyUI headless on the CPU, Chromium through ``browser_session``):
  * ``docs/screenshots/templates/<name>.png``: the template as it opens, fitted to the window;
  * for templates that need no download (the test bed's): ``<name>_after_run.png`` after queueing it from the page,
    and each step-map node before and after the run, ``<name>_step_map_planned.png`` / ``<name>_step_map_last_run.png``;
  * ``example_workflows/<name>.jpg``: the thumbnail the template browser shows (ComfyUI 0.8.2's frontend looks for
    ``<name>.jpg`` beside a custom node pack's template and shows a placeholder without it).

Run: ``/opt/comfyui/.venv/bin/python tools/screenshots.py [names...]`` (default: every file in example_workflows/;
a few minutes, most of it the test-bed runs). README's *What it looks like* shows some of them.
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

from browser_session import REPO_ROOT, WORKFLOWS, browser_page, comfyui_server, load_workflow, queue_and_wait, runs_here

OUT = REPO_ROOT / "docs" / "screenshots" / "templates"
CANVAS = "canvas.rhymeflow-step-map-canvas"
THUMB_SIZE = (640, 400)  # the template browser's cards are ~16:10
LEFT_UI, TOP_UI = 70, 130  # the side bar, the tab and Run bars and the "job completed" toast cover the canvas edges
STEP_MAP_ZOOM = 0.9

# Fit every node into the part of the window the frontend's own bars leave free; returns the scale.
FIT_JS = """([left, top]) => {
  const app = window.comfyAPI.app.app; const ds = app.canvas.ds; const el = app.canvas.canvas;
  const rects = app.graph.nodes.map(n => n.boundingRect);
  const x0 = Math.min(...rects.map(r => r[0])), y0 = Math.min(...rects.map(r => r[1]));
  const x1 = Math.max(...rects.map(r => r[0] + r[2])), y1 = Math.max(...rects.map(r => r[1] + r[3]));
  const w = el.clientWidth - left - 30, h = el.clientHeight - top - 30;
  const scale = Math.min(1, w / (x1 - x0), h / (y1 - y0));
  ds.scale = scale; ds.offset = [left / scale - x0, top / scale - y0]; app.canvas.setDirty(true, true);
  const r = el.getBoundingClientRect();
  return { x: r.left + left - 10, y: r.top + top - 10, width: (x1 - x0) * scale + 20, height: (y1 - y0) * scale + 20 };
}"""

# The rectangle of node ``id`` on the page (title bar included), in CSS pixels.
NODE_BOX_JS = """(id) => {
  const app = window.comfyAPI.app.app; const [x, y, w, h] = app.graph.getNodeById(id).boundingRect;
  const ds = app.canvas.ds; const r = app.canvas.canvas.getBoundingClientRect();
  return { x: r.left + (x + ds.offset[0]) * ds.scale - 8, y: r.top + (y + ds.offset[1]) * ds.scale - 8,
           width: w * ds.scale + 16, height: h * ds.scale + 16 };
}"""

CENTRE_JS = """([id, zoom]) => { const app = window.comfyAPI.app.app; app.canvas.ds.scale = zoom;
  app.canvas.centerOnNode(app.graph.getNodeById(id)); app.canvas.setDirty(true, true); }"""


def _wait_maps(page, view: str) -> None:
    """Until every step map shows ``view`` (planned: the route has answered; realised: the run's event arrived)."""
    page.wait_for_function(f"""(view) => [...document.querySelectorAll('{CANVAS}')]
        .every(c => c.dataset.view === view && (c.dataset.speedup || c.dataset.error))""", arg=view, timeout=120_000)


def _fit(page) -> dict:
    """Fit the graph into the window; the page rectangle it then covers (the screenshots' clip)."""
    page.keyboard.press("Escape")
    clip = page.evaluate(FIT_JS, [LEFT_UI, TOP_UI])
    page.mouse.move(2, 500)  # no hover highlight or tooltip in the picture
    page.wait_for_timeout(800)  # DOM widgets follow the canvas on its next frame
    return clip


def _thumbnail(png: bytes, path: Path) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.thumbnail(THUMB_SIZE, Image.LANCZOS)  # the whole graph, letterboxed on the canvas colour to the card's shape
    card = Image.new("RGB", THUMB_SIZE, image.getpixel((0, 0)))
    card.paste(image, ((THUMB_SIZE[0] - image.width) // 2, (THUMB_SIZE[1] - image.height) // 2))
    card.save(path, "JPEG", quality=85)


def _step_map_shots(page, wf: dict, name: str, suffix: str) -> list[Path]:
    out = []
    maps = [n["id"] for n in wf["nodes"] if n["type"] in ("RhymeFlowAccelerate", "RhymeFlowAsyncSampler")]
    for i, node_id in enumerate(maps):
        page.evaluate(CENTRE_JS, [node_id, STEP_MAP_ZOOM])
        page.mouse.move(2, 500)
        page.wait_for_timeout(600)
        path = OUT / f"{name}_step_map{'' if len(maps) == 1 else f'_{i + 1}'}_{suffix}.png"
        page.screenshot(path=str(path), clip=page.evaluate(NODE_BOX_JS, node_id))
        out.append(path)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help="workflow file names (default: all in example_workflows/)")
    args = ap.parse_args()
    paths = [WORKFLOWS / n for n in args.names] if args.names else sorted(WORKFLOWS.glob("*.json"))
    OUT.mkdir(parents=True, exist_ok=True)
    with comfyui_server() as url, browser_page(url) as page:
        page.evaluate("async () => { await window.comfyAPI.app.app.extensionManager?.setting?.set?.('Comfy.Minimap.Visible', false); }")  # noqa: E501 - the minimap would cover the graph's corner
        for path in paths:
            wf, name = json.loads(path.read_text()), path.stem
            load_workflow(page, wf, settle_ms=2500)
            clip = _fit(page)
            _wait_maps(page, "planned")
            shot = page.screenshot(path=str(OUT / f"{name}.png"), clip=clip)
            _thumbnail(shot, WORKFLOWS / f"{name}.jpg")
            written = [OUT / f"{name}.png", WORKFLOWS / f"{name}.jpg"]
            if runs_here(wf):
                written += _step_map_shots(page, wf, name, "planned")
                run = queue_and_wait(page, url)
                if not run["status"].get("completed"):
                    raise RuntimeError(f"{name} did not complete: {run['status']}")
                _wait_maps(page, "realised")
                page.screenshot(path=str(OUT / f"{name}_after_run.png"), clip=_fit(page))
                written.append(OUT / f"{name}_after_run.png")
                written += _step_map_shots(page, wf, name, "last_run")
            print("\n".join(str(p.relative_to(REPO_ROOT)) for p in written))


if __name__ == "__main__":
    main()
