"""The step-map widget in a real browser: ComfyUI headless, the try-it-now workflow queued from the page.

What it checks, in headless Chromium against a real ComfyUI server with this pack in ``custom_nodes``:
  * the extension loads and draws the PLANNED map on the RhymeFlow Async Sampler node as soon as the
    workflow is loaded (the map comes from ``GET /rhymeflow/step_map``);
  * after queueing the workflow from the page, the widget shows the REALISED map, and the canvas pixels of
    each role colour are in the proportions of the run's own ``roles`` (from ``/history``);
  * clicking a frame row writes the frame into the Keyframes node's ``manual`` text and sets "manual";
  * queueing the RhymeFlow + AsymRnR workflow from the page shows the AsymRnR Stats node's ``ui.text`` on
    that node (web/rhymeflow_text_output.js), equal to the text in ``/history``.
  * hovering a cell shows a tooltip naming its frame, step, sigma (the run's own) and what happens there;
  * a two-expert map (the run's, sent as if a second expert took over half-way) draws the switch line;
  * the node definitions the frontend loads carry each node's category and search aliases;
  * after the run RhymeFlow Stats shows its summary on the node, speed-ups first, and RhymeFlow Compare its PSNR.
Screenshots are left in ``out/browser/`` (or ``$RHYMEFLOW_ARTIFACTS/browser``); with
``RHYMEFLOW_UPDATE_SCREENSHOTS=1`` the step map before and after the run also goes to ``docs/screenshots/``.

Skips cleanly without ComfyUI (``COMFYUI_PATH``, default /opt/comfyui), without Chromium
(``CHROMIUM_PATH``, default /usr/bin/chromium; Debian: ``apt-get install -y chromium``), without the
Playwright Python client (``pip install playwright``; its own browser download is not used), or
without the example workflow. When the trained test-bed checkpoint is absent, a seeded random-weight
checkpoint of the same architecture stands in: the widget test does not depend on image quality.

Run: ``python -m pytest tests/comfyui/test_browser.py`` with any Python that has pytest and playwright
(the server runs under ComfyUI's own interpreter: ``$COMFYUI_PATH/.venv/bin/python`` when present).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tools"))
from browser_session import (CHROMIUM, CHROMIUM_ARGS, COMFYUI_ROOT, EXTENSIONS, PACK_NAME, RUN_TIMEOUT_S,  # noqa: E402
                             comfyui_server, get_json, runs_here)

WORKFLOW = REPO_ROOT / "example_workflows" / "RhymeFlow try it now, bundled test bed, no download (Async Sampler).json"
COMBO_WORKFLOW = REPO_ROOT / "example_workflows" / "RhymeFlow and AsymRnR combined, bundled test bed, no download.json"
ARTIFACTS = Path(os.environ.get("RHYMEFLOW_ARTIFACTS", REPO_ROOT / "out")) / "browser"
SAMPLER, KEYFRAMES, STATS, COMPARE = "RhymeFlowAsyncSampler", "RhymeFlowKeyframes", "RhymeFlowStats", "RhymeFlowCompare"
ASYMRNR_STATS = "RhymeFlowAsymRnRStats"
# web/step_map_logic.js ROLE_COLORS as RGB, by colour: warm-up and sync (both full passes) share one
COLOR_RGB = {"full pass": (0xFD, 0xE6, 0x8A), "keyframes only": (0x22, 0xC5, 0x5E), "skipped, projected": (0x41, 0x69, 0xA8)}
COLOR_ROLES = {"full pass": (0, 1), "keyframes only": (2,), "skipped, projected": (3,)}
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"  # written when RHYMEFLOW_UPDATE_SCREENSHOTS=1
ZOOM = 0.8  # the graph zoom the widget is tested (and photographed) at: its text must read there


def _skip_reason() -> str | None:
    if not (COMFYUI_ROOT / "main.py").is_file():
        return f"ComfyUI not found: no main.py in {COMFYUI_ROOT} (set COMFYUI_PATH)"
    if not CHROMIUM.is_file():
        return f"Chromium not found at {CHROMIUM} (Debian: apt-get install -y chromium; or set CHROMIUM_PATH)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright Python client missing: pip install playwright (uses the system Chromium)"
    if not WORKFLOW.is_file():
        return f"example workflow {WORKFLOW.name} not found"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def _comfy_python() -> str:
    venv = COMFYUI_ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.is_file() else sys.executable


def _stand_in_checkpoint(folder: Path) -> None:
    """A seeded random Wan 2.1 T2V test-bed checkpoint, written with ComfyUI's interpreter (it has torch)."""
    code = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]);"
        "from safetensors.torch import save_file;"
        "from rhymeflow_core.testbed.wan_dit import WanConfig, WanModel;"
        "torch.manual_seed(0); m = WanModel(WanConfig(dim=128, ffn_dim=512, num_layers=4));"
        "save_file({k: v.detach().contiguous() for k, v in m.state_dict().items()}, sys.argv[2])"
    )
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([_comfy_python(), "-c", code, str(REPO_ROOT), str(folder / "testbed_wan.safetensors")],
                   check=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def server():
    """ComfyUI on 127.0.0.1:<free port> (``tools/browser_session.comfyui_server``), log in ``ARTIFACTS``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def prepare(base: Path) -> None:
        if not (REPO_ROOT / "rhymeflow_core" / "testbed" / "weights" / "testbed_wan.safetensors").is_file():
            _stand_in_checkpoint(base / "models" / "diffusion_models")

    log_path = ARTIFACTS / "comfyui.log"
    try:
        with comfyui_server(log_path, prepare) as url:
            assert SAMPLER in get_json(f"{url}/object_info/{SAMPLER}"), f"the pack did not load; log:\n{log_path.read_text()[-4000:]}"
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))


CANVAS = "canvas.rhymeflow-step-map-canvas"

COUNT_PIXELS_JS = """
([sel, roleRgb]) => {
  const c = document.querySelector(sel);
  const img = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const counts = {};
  for (const k of Object.keys(roleRgb)) counts[k] = 0;
  for (let i = 0; i < img.length; i += 4) {
    for (const [k, [r, g, b]] of Object.entries(roleRgb)) {
      if (img[i] === r && img[i + 1] === g && img[i + 2] === b && img[i + 3] === 255) { counts[k]++; break; }
    }
  }
  return counts;
}
"""


def _finished_run(url: str, prompt_id: str) -> dict:
    """The history entry of ``prompt_id`` once it has finished, successfully or not (widgets update mid-prompt;
    the module's server keeps every test's prompts, so it is looked up by id)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = get_json(f"{url}/history/{prompt_id}").get(prompt_id)
        if run and run.get("status", {}).get("status_str"):
            return run
        time.sleep(1)
    pytest.fail(f"the queued workflow did not finish in {RUN_TIMEOUT_S}s")


def _open_page(page, url: str) -> None:
    """Open ComfyUI and wait until this pack's extensions are registered (fails naming the ones that are)."""
    page.goto(url, wait_until="domcontentloaded", timeout=120_000)
    try:
        page.wait_for_function(
            "(names) => names.every(n => window.comfyAPI?.app?.app?.extensions?.some(e => e.name === n))",
            arg=list(EXTENSIONS), timeout=120_000,
        )
    except Exception as exc:  # noqa: BLE001 - playwright's TimeoutError; re-raised with context
        loaded = page.evaluate("() => (window.comfyAPI?.app?.app?.extensions ?? []).map(e => e.name)")
        pytest.fail(f"extensions {EXTENSIONS} not all registered ({exc.__class__.__name__}); registered: {loaded}")


def _queue(page) -> str:
    """Queue the page's graph as the Run button does (its client id gets the "executed" messages); the prompt id."""
    with page.expect_response(lambda r: r.url.endswith("/prompt") and r.request.method == "POST") as queued:
        page.evaluate("() => window.comfyAPI.app.app.queuePrompt(0)")
    body = queued.value.json()
    assert queued.value.ok and "prompt_id" in body, body
    return body["prompt_id"]


def _wait(page, selector: str, timeout_ms: int) -> None:
    """``wait_for_selector``; on timeout, fail with what the step-map canvases show instead."""
    try:
        page.wait_for_selector(selector, timeout=timeout_ms, state="attached")
    except Exception as exc:  # noqa: BLE001 - playwright's TimeoutError; re-raised with context
        seen = page.evaluate(f"() => [...document.querySelectorAll('{CANVAS}')].map(c => ({{...c.dataset}}))")
        page.screenshot(path=str(ARTIFACTS / "timeout.png"))
        pytest.fail(f"waiting for {selector}: {exc.__class__.__name__}; step-map canvases: {seen}")


def _load_workflow(page, workflow: dict, node_id: int, node_type: str, attempts: int = 3) -> None:
    """Load ``workflow`` into the page's graph. The frontend may still be restoring its own start-up graph,
    which can replace one loaded too early; so the load is retried until ``node_id`` has ``node_type``."""
    for attempt in range(attempts):
        page.evaluate("async (wf) => { await window.comfyAPI.app.app.loadGraphData(wf); }", workflow)
        try:
            page.wait_for_function(
                "([id, type]) => window.comfyAPI.app.app.graph?.getNodeById(id)?.type === type",
                arg=[node_id, node_type], timeout=30_000,
            )
            return
        except Exception:  # noqa: BLE001 - playwright's TimeoutError; retried, then re-raised
            if attempt == attempts - 1:
                raise


@contextlib.contextmanager
def _browser_page(server, log_name: str):
    """Headless Chromium on the served frontend with the pack's extensions loaded: yields ``(page, console)``;
    the console (page errors included) is written to ``ARTIFACTS / log_name`` however the test ends."""
    from playwright.sync_api import sync_playwright

    console: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        # twice the pixels of the CSS size, so the committed screenshots read like a laptop screen
        page = browser.new_page(viewport={"width": 1600, "height": 1000}, device_scale_factor=2)
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        try:
            _open_page(page, server)
            yield page, console
        finally:
            (ARTIFACTS / log_name).write_text("\n".join(console))
            browser.close()


def test_step_map_widget_planned_realised_and_click(server):
    workflow = json.loads(WORKFLOW.read_text())
    sampler_id = next(n["id"] for n in workflow["nodes"] if n["type"] == SAMPLER)
    keyframes_id = next(n["id"] for n in workflow["nodes"] if n["type"] == KEYFRAMES)
    stats_id = next((n["id"] for n in workflow["nodes"] if n["type"] == STATS), None)
    compare_id = next((n["id"] for n in workflow["nodes"] if n["type"] == COMPARE), None)
    with _browser_page(server, "console.log") as (page, console):
        _load_workflow(page, workflow, sampler_id, SAMPLER)
        # Bring the sampler into view so its DOM widget is laid out and drawn.
        page.evaluate(
            """([id, zoom]) => { const app = window.comfyAPI.app.app; const n = app.graph.getNodeById(id);
                         app.canvas.ds.scale = zoom; app.canvas.centerOnNode(n); app.canvas.setDirty(true, true); }""",
            [sampler_id, ZOOM],
        )
        page.keyboard.press("Escape")  # close the "missing nodes"/template dialogs the load may open
        sel = f'{CANVAS}[data-node-id="{sampler_id}"]'
        # planned on the graph: the test-bed latent's 16 frames and BasicScheduler's 30 steps (the boxes say 21 / 30)
        _wait(page, f'{sel}[data-view="planned"][data-frames="16"][data-steps="30"]', 120_000)
        planned = page.eval_on_selector(sel, "c => ({...c.dataset})")
        assert planned["error"] == "", planned
        page.wait_for_timeout(300)  # the DOM widget follows the canvas on its next frame
        page.screenshot(path=str(ARTIFACTS / "planned.png"))
        _node_shot(page, sampler_id, "step_map_planned.png")

        page.evaluate(RECORD_STATS_EVENTS_JS)
        prompt_id = _queue(page)
        _wait(page, f'{sel}[data-view="realised"]', RUN_TIMEOUT_S * 1000)
        page.wait_for_timeout(500)
        page.evaluate(
            """(id) => { const app = window.comfyAPI.app.app; app.canvas.centerOnNode(app.graph.getNodeById(id));
                         app.canvas.setDirty(true, true); }""",
            sampler_id,
        )
        page.wait_for_timeout(500)
        realised = page.eval_on_selector(sel, "c => ({...c.dataset})")
        page.screenshot(path=str(ARTIFACTS / "realised.png"))
        _node_shot(page, sampler_id, "step_map_last_run.png")
        page.eval_on_selector(sel, "c => c.toDataURL('image/png')")  # the canvas is readable (not tainted)
        counts = page.evaluate(COUNT_PIXELS_JS, [sel, {k: list(v) for k, v in COLOR_RGB.items()}])

        run = _finished_run(server, prompt_id)
        assert run["status"]["completed"], run["status"]
        stats = run["outputs"][str(stats_id)]["rhymeflow_stats"][0] if stats_id is not None else None
        events = page.evaluate("() => window.__rhymeflowStatsEvents")  # what reached the widget: its one channel

        # Hover a skipped cell of a frame that is not a keyframe: the tooltip explains it.
        keys = [int(k) for k in realised["keyframes"].split(",") if k]
        roles = stats["roles"] if stats is not None else None
        hover_frame = next(f for f in range(int(realised["frames"])) if f not in keys)
        hover_step = roles[hover_frame].index(3) if roles else int(realised["steps"]) - 2
        point = page.evaluate(CELL_CENTRE_JS % PACK_NAME, [sel, hover_frame, hover_step])
        page.mouse.move(point["x"] - 20, point["y"])
        page.mouse.move(point["x"], point["y"], steps=4)
        tip_sel = f'.rhymeflow-step-map-tooltip[data-node-id="{sampler_id}"]'
        _wait(page, f'{tip_sel}[data-frame="{hover_frame}"][data-step="{hover_step}"]', 10_000)
        tooltip = page.eval_on_selector(tip_sel, "t => ({text: t.innerText, visible: t.getBoundingClientRect().width > 50})")
        page.screenshot(path=str(ARTIFACTS / "tooltip.png"))
        _node_shot(page, sampler_id, "step_map_hover.png", tooltip=tip_sel)
        page.mouse.move(5, 5)
        page.wait_for_timeout(200)
        tooltip_after_leave = page.evaluate(f"() => !!document.querySelector('{tip_sel}')")
        shown_text = {}  # what RhymeFlow Stats and Compare show on the node after the run
        for node_id, shot in ((stats_id, "stats_on_node.png"), (compare_id, "compare_on_node.png")):
            if node_id is not None:
                shown_text[node_id] = page.evaluate(
                    "(id) => window.comfyAPI.app.app.graph.getNodeById(id).rhymeflowText ?? null", node_id)
                _node_shot(page, node_id, shot)

        page.evaluate("(id) => { const app = window.comfyAPI.app.app; app.canvas.centerOnNode(app.graph.getNodeById(id));"
                      " app.canvas.setDirty(true, true); }", sampler_id)  # the node shots may have moved it away
        page.wait_for_timeout(500)
        # Click the row of a frame that is not a keyframe: it becomes a manual keyframe.
        frame = hover_frame
        point = page.evaluate(CELL_CENTRE_JS % PACK_NAME, [sel, frame, int(realised["steps"]) // 2])
        page.mouse.click(point["x"], point["y"])
        page.wait_for_timeout(300)
        widgets = page.evaluate(
            """(id) => Object.fromEntries(window.comfyAPI.app.app.graph.getNodeById(id).widgets.map(w => [w.name, w.value]))""",
            keyframes_id,
        )
        _wait(page, f'{sel}[data-view="planned"]', 60_000)
        page.wait_for_function(
            "([sel, f]) => document.querySelector(sel).dataset.keyframes.split(',').includes(String(f))",
            arg=[sel, frame], timeout=30_000,
        )
        page.screenshot(path=str(ARTIFACTS / "after_click.png"))

        # Two experts (Wan 2.2 A14B; no such checkpoint here): this run's map, as if a second expert took over
        # half-way, sent as the sampler's stats event. The switch line is drawn through the grid.
        switch_pixel = None
        if stats is not None:
            half = len(roles[0]) // 2
            two = {"node": str(sampler_id), "roles": roles, "keyframes": stats["keyframes"],
                   "segments": [{"label": "high-noise expert", "start": 0, "steps": half, "keyframes": stats["keyframes"]},
                                {"label": "low-noise expert", "start": half, "steps": len(roles[0]) - half,
                                 "keyframes": stats["keyframes"]}]}
            page.evaluate("(d) => window.comfyAPI.api.api.dispatchEvent(new CustomEvent('rhymeflow.stats', {detail: d}))", two)
            _wait(page, f'{sel}[data-view="realised"]', 10_000)
            switch_pixel = page.evaluate(SWITCH_PIXEL_JS % PACK_NAME, [sel, half])
            page.screenshot(path=str(ARTIFACTS / "two_experts_synthetic.png"))

    (ARTIFACTS / "result.json").write_text(json.dumps(
        {"planned": planned, "realised": realised, "pixel_counts": counts, "clicked_frame": frame,
         "keyframes_widgets": widgets, "tooltip": tooltip}, indent=1))
    assert realised["error"] == "" and int(realised["frames"]) >= 2
    assert all(counts[k] > 0 for k in COLOR_RGB), counts
    assert tooltip["visible"] and not tooltip_after_leave, tooltip
    lines = tooltip["text"].split("\n")
    assert lines[0] == f"frame {hover_frame} · step {hover_step + 1} of {realised['steps']}", lines
    assert lines[2] == "skipped, projected" and lines[3].startswith("Not computed"), lines
    if stats is not None:
        assert [len(roles), len(roles[0])] == [int(realised["frames"]), int(realised["steps"])]
        cells = {k: sum(row.count(r) for row in roles for r in COLOR_ROLES[k]) for k in COLOR_RGB}
        n_cells, n_px = sum(cells.values()), sum(counts.values())
        for k in COLOR_RGB:  # cell interiors only (edges are anti-aliased): shares agree within a few percent
            assert abs(counts[k] / n_px - cells[k] / n_cells) < 0.06, (k, counts, cells)
        assert keys == stats["keyframes"]
        # one shape: the run's event is exactly the Stats record ComfyUI keeps (and replays for a cached re-run)
        assert [e for e in events if e.get("node") == str(sampler_id)] == [stats], (events, stats)
        assert lines[1] == f"noise level (sigma) {stats['sigmas'][hover_step]:.3f}", lines  # the run's own sigmas
        # RhymeFlow Stats shows its summary on the node, the numbers an artist looks for first
        stats_text = shown_text[stats_id]
        assert stats_text is not None and stats_text.startswith(
            f"speed-up {stats['estimated_speedup']:.2f}x measured"), stats_text
        assert stats_text.endswith(stats["summary"]), stats_text
    if compare_id is not None:
        compare = run["outputs"][str(compare_id)]["rhymeflow_compare"][0]
        assert shown_text[compare_id] == compare["summary"] and compare["summary"].startswith("PSNR vs dense: mean "), shown_text
    if switch_pixel is not None:  # web/step_map_logic.js SWITCH_COLOR
        assert switch_pixel[:3] == [255, 255, 255], switch_pixel
    assert widgets["strategy"] == "manual"
    assert frame in [int(x) for x in _expand(widgets["manual"])]
    assert not [m for m in console if m.startswith("pageerror")], console


CELL_CENTRE_JS = """async ([sel, frame, step]) => {
  const logic = await import('/extensions/%s/step_map_logic.js');
  const c = document.querySelector(sel);
  const L = logic.gridLayout(c.clientWidth, c.clientHeight, Number(c.dataset.frames), Number(c.dataset.steps),
                             { legendRows: Number(c.dataset.legendRows) });
  const cell = logic.cellRect(L, frame, step);
  const r = c.getBoundingClientRect();
  return { x: r.left + (cell.x + cell.w / 2) * r.width / c.clientWidth,
           y: r.top + (cell.y + cell.h / 2) * r.height / c.clientHeight };
}"""

# The canvas pixel just left of the start of step ``start``, half-way down the grid: under the switch line.
SWITCH_PIXEL_JS = """async ([sel, start]) => {
  const logic = await import('/extensions/%s/step_map_logic.js');
  const c = document.querySelector(sel);
  const L = logic.gridLayout(c.clientWidth, c.clientHeight, Number(c.dataset.frames), Number(c.dataset.steps),
                             { legendRows: Number(c.dataset.legendRows) });
  const dpr = c.width / c.clientWidth;
  const x = Math.round(logic.cellRect(L, 0, start).x) - 0.5;
  return [...c.getContext('2d').getImageData(Math.floor(x * dpr), Math.round((L.top + L.gridH / 2) * dpr), 1, 1).data];
}"""

# The node's rectangle on the page (title bar included), in CSS pixels of the page.
NODE_RECT_JS = """(id) => {
  const app = window.comfyAPI.app.app;
  const [x, y, w, h] = app.graph.getNodeById(id).boundingRect;
  const ds = app.canvas.ds;
  const r = app.canvas.canvas.getBoundingClientRect();
  return { x: r.left + (x + ds.offset[0]) * ds.scale, y: r.top + (y + ds.offset[1]) * ds.scale,
           width: w * ds.scale, height: h * ds.scale };
}"""


def _node_shot(page, node_id: int, name: str, tooltip: str | None = None) -> None:
    """A screenshot of one node (and the tooltip, when given) into ARTIFACTS, and into docs/screenshots when
    RHYMEFLOW_UPDATE_SCREENSHOTS=1; a node outside the window is centred first."""
    box = page.evaluate(NODE_RECT_JS, node_id)
    view = page.viewport_size
    if box["x"] < 0 or box["y"] < 0 or box["x"] + box["width"] > view["width"] or box["y"] + box["height"] > view["height"]:
        page.evaluate("(id) => { const app = window.comfyAPI.app.app; app.canvas.centerOnNode(app.graph.getNodeById(id));"
                      " app.canvas.setDirty(true, true); }", node_id)
        page.wait_for_timeout(400)
        box = page.evaluate(NODE_RECT_JS, node_id)
    if tooltip:
        t = page.eval_on_selector(tooltip, "t => { const r = t.getBoundingClientRect(); return [r.right, r.bottom]; }")
        box["width"] = max(box["width"], t[0] - box["x"])
        box["height"] = max(box["height"], t[1] - box["y"])
    clip = {"x": max(0, box["x"] - 8), "y": max(0, box["y"] - 8), "width": box["width"] + 16, "height": box["height"] + 16}
    page.screenshot(path=str(ARTIFACTS / name), clip=clip)
    if os.environ.get("RHYMEFLOW_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name), clip=clip)


def _expand(text: str) -> list[int]:
    from rhymeflow_core.keyframes import parse_frame_list

    return parse_frame_list(text)


RECORD_STATS_EVENTS_JS = """() => {
  window.__rhymeflowStatsEvents = [];
  window.comfyAPI.api.api.addEventListener('rhymeflow.stats', ({ detail }) => window.__rhymeflowStatsEvents.push(detail));
}"""

RECORD_EXECUTED_JS = """() => {
  window.__rhymeflowExecuted = [];
  window.comfyAPI.api.api.addEventListener('executed', ({ detail }) => window.__rhymeflowExecuted.push(
    { node: detail.node, display_node: detail.display_node, keys: Object.keys(detail.output ?? {}) }));
}"""

TEXT_STATE_JS = """(id) => {
  const app = window.comfyAPI.app.app;
  const node = app.graph.getNodeById(id);
  const box = document.querySelector(`textarea.rhymeflow-text-output[data-node-id="${id}"]`);
  return {
    extensions: app.extensions.map(e => e.name).filter(n => n.toLowerCase().includes('rhymeflow')),
    node: node ? { type: node.type, hasOnExecuted: typeof node.onExecuted === 'function', text: node.rhymeflowText ?? null }
               : null,
    graphIds: app.graph.nodes.map(n => String(n.id)),
    executed: window.__rhymeflowExecuted,
    box: box ? { value: box.value, readOnly: box.readOnly, font: getComputedStyle(box).fontFamily,
                 scrollHeight: box.scrollHeight, clientHeight: box.clientHeight } : null,
  };
}"""

# Where the box is and what the user sees at its centre (a dialog or another node may cover it).
BOX_PLACE_JS = """(id) => {
  const box = document.querySelector(`textarea.rhymeflow-text-output[data-node-id="${id}"]`);
  if (!box) return null;
  const r = box.getBoundingClientRect();
  const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return { rect: [r.left, r.top, r.width, r.height], viewport: [innerWidth, innerHeight], onTop: top === box,
           atCentre: top ? `${top.tagName}.${top.className}` : null };
}"""
BOX_SHOWN_JS = """(place) => !!place && place.onTop && place.rect[2] > 50 && place.rect[3] > 20 && place.rect[0] >= 0
  && place.rect[1] >= 0 && place.rect[0] + place.rect[2] <= place.viewport[0] && place.rect[1] + place.rect[3] <= place.viewport[1]"""


def test_asymrnr_stats_text_shows_on_the_node(server):
    """AsymRnR Stats returns its summary as ``ui.text``; after a run queued from the page the node shows it."""
    if not COMBO_WORKFLOW.is_file():
        pytest.skip(f"example workflow {COMBO_WORKFLOW.name} not found")
    workflow = json.loads(COMBO_WORKFLOW.read_text())
    stats_id = next(n["id"] for n in workflow["nodes"] if n["type"] == ASYMRNR_STATS)
    with _browser_page(server, "asymrnr_console.log") as (page, console):
        _load_workflow(page, workflow, stats_id, ASYMRNR_STATS)
        page.keyboard.press("Escape")  # close the "missing nodes"/template dialogs the load may open
        before = page.evaluate(TEXT_STATE_JS, stats_id)
        assert before["node"]["hasOnExecuted"] and before["box"] is None, before  # the box waits for a run

        page.evaluate(RECORD_EXECUTED_JS)
        run = _finished_run(server, _queue(page))
        assert run["status"]["completed"], run["status"]  # an error here would never reach the node
        text = run["outputs"][str(stats_id)]["text"]
        try:  # the "executed" message was sent before the run finished; the page may still be handling it
            page.wait_for_function("(id) => window.comfyAPI.app.app.graph.getNodeById(id)?.rhymeflowText !== undefined",
                                   arg=stats_id, timeout=30_000)
        except Exception as exc:  # noqa: BLE001 - playwright's TimeoutError; re-raised with what the page saw
            pytest.fail(f"the node never showed its text ({exc.__class__.__name__}); page state: "
                        f"{page.evaluate(TEXT_STATE_JS, stats_id)}")

        page.evaluate(
            """(id) => { const app = window.comfyAPI.app.app; app.canvas.ds.scale = 1;
                         app.canvas.centerOnNode(app.graph.getNodeById(id)); app.canvas.setDirty(true, true); }""",
            stats_id,
        )
        page.keyboard.press("Escape")
        try:  # DOM widgets follow the canvas on its next frame
            page.wait_for_function(f"(id) => ({BOX_SHOWN_JS})(({BOX_PLACE_JS})(id))", arg=stats_id, timeout=10_000)
        except Exception as exc:  # noqa: BLE001 - playwright's TimeoutError; re-raised with what is on screen
            page.screenshot(path=str(ARTIFACTS / "asymrnr_text.png"))
            pytest.fail(f"the text box is not fully on screen and on top ({exc.__class__.__name__}): "
                        f"{page.evaluate(BOX_PLACE_JS, stats_id)}")
        visible = page.locator(f'textarea.rhymeflow-text-output[data-node-id="{stats_id}"]').is_visible()
        after = page.evaluate(TEXT_STATE_JS, stats_id)
        saved = page.evaluate("() => JSON.stringify(window.comfyAPI.app.app.graph.serialize())")
        api_inputs = page.evaluate(
            "async (id) => Object.keys((await window.comfyAPI.app.app.graphToPrompt()).output[String(id)].inputs)", stats_id)
        page.screenshot(path=str(ARTIFACTS / "asymrnr_text.png"))

    assert len(text) == 1 and "tokens kept: q " in text[0] and "FLOPs saved" in text[0], text
    assert after["node"]["text"] == text[0], after
    assert after["box"]["value"] == text[0] and after["box"]["readOnly"], after
    assert "monospace" in after["box"]["font"], after
    assert [sorted(e["keys"]) for e in after["executed"] if e["display_node"] == str(stats_id)] == [["asymrnr_stats", "text"]], after
    assert visible, after
    assert after["box"]["scrollHeight"] <= after["box"]["clientHeight"], after  # the node grew to fit the text
    assert text[0] not in saved and sorted(api_inputs) == ["latent", "model"], api_inputs  # display only
    assert not [m for m in console if m.startswith("pageerror")], console


SEARCH_WORDS = ("speed", "fast", "accelerate", "cache", "keyframe")


def test_frontend_gets_categories_and_search_aliases(server):
    """The node definitions the page loads (the frontend's own ``getNodeDefs``, i.e. /object_info) list our nodes
    in three categories and carry search aliases for what an artist types. ComfyUI 0.8.2's frontend (1.36)
    searches names and display names only; frontends from Comfy-Org/ComfyUI_frontend#8223 on search these."""
    with _browser_page(server, "listing_console.log") as (page, console):
        defs = page.evaluate("""async () => Object.fromEntries(Object.entries(await window.comfyAPI.api.api.getNodeDefs())
            .filter(([k]) => k.startsWith('RhymeFlow')).map(([k, d]) => [k, {category: d.category, aliases: d.search_aliases}]))""")
        registered = page.evaluate("""() => Object.fromEntries(Object.entries(window.LiteGraph?.registered_node_types ?? {})
            .filter(([k]) => k.startsWith('RhymeFlow')).map(([k, t]) => [k, t.category]))""")
    assert {d["category"] for d in defs.values()} == {"RhymeFlow", "RhymeFlow/AsymRnR", "RhymeFlow/test bed"}, defs
    assert defs[SAMPLER]["category"] == "RhymeFlow" and defs[ASYMRNR_STATS]["category"] == "RhymeFlow/AsymRnR", defs
    assert all(d["aliases"] for d in defs.values()), defs
    for word in SEARCH_WORDS:
        assert [k for k, d in defs.items() if any(word in a for a in d["aliases"])], word
    if registered:  # the graph's node types use the same categories (the "Add Node" menu)
        assert registered == {k: d["category"] for k, d in defs.items()}, registered
    assert not [m for m in console if m.startswith("pageerror")], console


# ------------------------------------------------------------------------------------ every template, as opened

ALL_WORKFLOWS = sorted((REPO_ROOT / "example_workflows").glob("*.json"))
STEP_MAP_NODES = ("RhymeFlowAccelerate", SAMPLER)
NODE_RECTS_JS = """() => window.comfyAPI.app.app.graph.nodes.map(n => {
  const [x, y, w, h] = n.boundingRect; return [n.id, n.type, x, y, w, h]; })"""
# ComfyUI's latent nodes: latent frames from their widgets (written here from ComfyUI's node code, independently
# of web/graph_settings.js): length -> (length - 1) // t + 1
LATENT_T = {"EmptyHunyuanLatentVideo": 4, "WanImageToVideo": 4, "Wan22ImageToVideoLatent": 4, "EmptyMochiLatentVideo": 6,
            "EmptyLTXVLatentVideo": 8}


def _overlaps(rects: list) -> list:
    """Pairs of node rectangles (title bars included) that intersect."""
    out = []
    for i, (a, ta, ax, ay, aw, ah) in enumerate(rects):
        for b, tb, bx, by, bw, bh in rects[i + 1:]:
            if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah:
                out.append((f"{ta} #{a}", f"{tb} #{b}"))
    return out


def _expected_frames(wf: dict) -> int:
    for n in wf["nodes"]:
        if n["type"] == "RhymeFlowTestbedEmptyLatent":
            return int(n["widgets_values"][0])
        if n["type"] in LATENT_T:
            return (int(n["widgets_values"][2]) - 1) // LATENT_T[n["type"]] + 1
    raise AssertionError("no latent node")


def _expected_steps(wf: dict) -> list[int]:
    """Steps of the sampler(s) the step-map nodes drive: KSampler/BasicScheduler steps, a KSamplerAdvanced's slice."""
    out = []
    for n in wf["nodes"]:
        v = n.get("widgets_values", [])
        if n["type"] == "KSampler" and "dense" not in n.get("title", ""):
            out.append(int(v[2]))
        elif n["type"] == "KSamplerAdvanced":
            out.append(min(int(v[8]), int(v[3])) - int(v[7]))
        elif n["type"] == "BasicScheduler":
            out.append(int(v[1]))
    return out


def _canvases(page) -> list[dict]:
    return page.evaluate(f"() => [...document.querySelectorAll('{CANVAS}')].map(c => ({{...c.dataset}}))")


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=lambda p: p.stem)
def test_template_opens_without_overlap_and_plans_on_its_graph(server, path):
    """Each shipped template as opened: no two nodes overlap (after load, and after a run for the ones that run here);
    each step map is planned on the graph (the latent's frames, the sampler's steps, the shift) and says so; and a
    run's realised map has the planned passes step by step, at the planned speed-up once the plan knows the run's
    text length."""
    wf = json.loads(path.read_text())
    n_maps = sum(n["type"] in STEP_MAP_NODES for n in wf["nodes"])
    with _browser_page(server, f"template_{path.stem}.log") as (page, console):
        _load_workflow(page, wf, wf["nodes"][0]["id"], wf["nodes"][0]["type"])
        page.keyboard.press("Escape")
        page.evaluate("() => { const app = window.comfyAPI.app.app; app.canvas.ds.scale = 0.5; app.canvas.ds.offset = [20, 40];"
                      " app.canvas.setDirty(true, true); }")
        if n_maps:
            page.wait_for_function(f"""(n) => {{ const cs = [...document.querySelectorAll('{CANVAS}')];
                return cs.length === n && cs.every(c => c.dataset.view === 'planned' && (c.dataset.basis || c.dataset.error)); }}""",
                                   arg=n_maps, timeout=60_000)
        page.wait_for_timeout(500)
        alerts = page.evaluate("() => [...document.querySelectorAll('.p-toast-message')].map(t => t.innerText)")
        loaded = page.evaluate(NODE_RECTS_JS)
        planned = {c["nodeId"]: c for c in _canvases(page)}
        page.screenshot(path=str(ARTIFACTS / f"template_{path.stem}.png"))
        run = after = realised = replanned = None
        if runs_here(wf):
            page.evaluate(RECORD_STATS_EVENTS_JS)
            run = _finished_run(server, _queue(page))
            page.wait_for_timeout(1500)
            after = page.evaluate(NODE_RECTS_JS)
            realised = {c["nodeId"]: c for c in _canvases(page)}
            for node_id in planned:  # back to the plan ("show planned"), now priced with the run's text length
                page.evaluate(f"() => document.querySelector('{CANVAS}[data-node-id=\"{node_id}\"]').parentElement"
                              ".querySelector('button').click()")
                page.wait_for_selector(f'{CANVAS}[data-node-id="{node_id}"][data-view="planned"]', timeout=10_000, state="attached")
            page.wait_for_timeout(800)
            replanned = {c["nodeId"]: c for c in _canvases(page)}
            page.screenshot(path=str(ARTIFACTS / f"template_{path.stem}_after_run.png"))

    assert not [a for a in alerts if "Invalid workflow" in a], alerts  # e.g. an id that is not a UUID
    assert not _overlaps(loaded), _overlaps(loaded)
    frames, steps = _expected_frames(wf), _expected_steps(wf)
    shift_node = any(n["type"] == "ModelSamplingSD3" for n in wf["nodes"])
    ltxv_scheduler = any(n["type"] == "LTXVScheduler" for n in wf["nodes"])
    assert len(planned) == n_maps
    for c in planned.values():
        assert c["error"] == "" and int(c["frames"]) == frames, c
        graph, _, boxes = c["basis"].split(" · cost on ")[0].partition("; ")
        # LTXVScheduler's sigmas are not read (its steps come from the box); without ModelSamplingSD3 the model's own
        # shift applies, which the graph does not show (the box stands in): the map says so either way
        from_boxes = (["steps"] if ltxv_scheduler else []) + ([] if shift_node else ["shift"])
        expected = ", ".join(k for k in ("frames", "steps", "shift") if k not in from_boxes) + ", model from the graph"
        assert graph == expected and boxes == (", ".join(from_boxes) + " from the boxes" if from_boxes else ""), c
        assert c["basis"].endswith("cost on this model's size" if runs_here(wf) else "cost on an assumed Wan 1.3B size"), c
    if not ltxv_scheduler:
        assert {int(c["steps"]) for c in planned.values()} <= set(steps), (planned, steps)
    if sum(n["type"] == "KSamplerAdvanced" for n in wf["nodes"]) > 1:  # two experts: each node plans its own slice
        assert sorted(int(c["steps"]) for c in planned.values()) == sorted(steps), (planned, steps)
    if run is not None:
        assert run["status"]["completed"], run["status"]
        assert not _overlaps(after), _overlaps(after)
        for node_id, c in planned.items():
            r = realised[node_id]
            assert r["view"] == "realised" and r["passes"] == c["passes"], (c, r)
            assert replanned[node_id]["passes"] == c["passes"]
            assert float(replanned[node_id]["speedup"]) == pytest.approx(float(r["speedup"]), abs=0.01), (replanned[node_id], r)
    assert not [m for m in console if m.startswith("pageerror")], console


WIDGETS_SHOWN_JS = """(id) => { const n = window.comfyAPI.app.app.graph.getNodeById(id);
  return { hidden: n.widgets.filter(w => w.hidden).map(w => w.name).sort(), height: n.size[1] }; }"""
SET_WIDGET_JS = """([id, name, value]) => { const app = window.comfyAPI.app.app; const n = app.graph.getNodeById(id);
  const w = n.widgets.find(w => w.name === name); w.value = value; w.callback?.(value, app.canvas, n); app.canvas.setDirty(true, true); }"""


def test_inputs_a_choice_ignores_are_hidden_while_it_ignores_them(server):
    """RhymeFlow Accelerate shows warmup/n_small/n_large only under preset custom and target_speedup only under
    target, hides strategy and budget while a Keyframes node is connected; the Keyframes node shows manual only for
    strategy manual and budget/threshold only for the strategies that read them. Hidden widgets are still in the
    prompt (the schema is unchanged) and the step map's query carries only what the preset reads."""
    wf = json.loads((REPO_ROOT / "example_workflows" / "Wan 2.1 T2V 1.3B with RhymeFlow Accelerate (KSampler).json").read_text())
    acc = next(n["id"] for n in wf["nodes"] if n["type"] == "RhymeFlowAccelerate")
    seen = {}
    with _browser_page(server, "inputs_console.log") as (page, console):
        _load_workflow(page, wf, acc, "RhymeFlowAccelerate")
        page.keyboard.press("Escape")
        page.evaluate("(id) => { const app = window.comfyAPI.app.app; app.canvas.centerOnNode(app.graph.getNodeById(id)); }", acc)

        def state(key):
            page.wait_for_timeout(700)  # a redraw applies the rules; the step map re-asks after its debounce
            seen[key] = {**page.evaluate(WIDGETS_SHOWN_JS, acc),
                         "query": page.eval_on_selector(f'{CANVAS}[data-node-id="{acc}"]', "c => c.dataset.query")}

        state("paper")
        page.evaluate(SET_WIDGET_JS, [acc, "preset", "custom"])
        state("custom")
        page.evaluate(SET_WIDGET_JS, [acc, "preset", "target"])
        state("target")
        prompt_inputs = page.evaluate(
            "async (id) => Object.keys((await window.comfyAPI.app.app.graphToPrompt()).output[String(id)].inputs)", acc)
        kf = page.evaluate("""(id) => { const app = window.comfyAPI.app.app; const acc = app.graph.getNodeById(id);
            const kf = window.LiteGraph.createNode('RhymeFlowKeyframes'); kf.pos = [acc.pos[0], acc.pos[1] + 900]; app.graph.add(kf);
            kf.connect(0, acc, acc.inputs.findIndex(i => i.name === 'keyframes')); app.canvas.setDirty(true, true); return kf.id; }""", acc)
        state("keyframes connected")
        kf_states = {}
        for strategy in ("semantic", "uniform", "manual"):
            page.evaluate(SET_WIDGET_JS, [kf, "strategy", strategy])
            page.wait_for_timeout(400)
            kf_states[strategy] = page.evaluate(WIDGETS_SHOWN_JS, kf)["hidden"]

    assert seen["paper"]["hidden"] == ["n_large", "n_small", "target_speedup", "warmup"], seen
    assert seen["custom"]["hidden"] == ["target_speedup"] and seen["custom"]["height"] > seen["paper"]["height"], seen
    assert seen["target"]["hidden"] == ["n_large", "n_small", "warmup"], seen
    assert seen["keyframes connected"]["hidden"] == ["budget", "n_large", "n_small", "strategy", "warmup"], seen
    assert "warmup=" not in seen["paper"]["query"] and "warmup=5" in seen["custom"]["query"], seen
    assert "target_speedup=" in seen["target"]["query"] and "target_speedup=" not in seen["custom"]["query"], seen
    assert {"warmup", "n_small", "n_large", "target_speedup"} <= set(prompt_inputs), prompt_inputs  # still sent, as before
    assert kf_states == {"semantic": ["manual"], "uniform": ["manual", "threshold"], "manual": ["budget", "threshold"]}, kf_states
    assert not [m for m in console if m.startswith("pageerror")], console


def test_a_cached_rerun_shows_its_realised_map_through_stats(server):
    """Re-queued unchanged in a fresh page, the prompt comes from ComfyUI's cache: no run, so no event; ComfyUI replays
    RhymeFlow Stats' ui output, and the widget draws the realised map from it (the same dict as the event)."""
    workflow = json.loads(WORKFLOW.read_text())
    sampler_id = next(n["id"] for n in workflow["nodes"] if n["type"] == SAMPLER)
    sel = f'{CANVAS}[data-node-id="{sampler_id}"]'
    with _browser_page(server, "cached_console.log") as (page, console):
        _load_workflow(page, workflow, sampler_id, SAMPLER)
        first = _finished_run(server, _queue(page))  # a run, or already a cache hit after the tests above
        page.reload(wait_until="domcontentloaded")
        page.wait_for_function("(names) => names.every(n => window.comfyAPI?.app?.app?.extensions?.some(e => e.name === n))",
                               arg=list(EXTENSIONS), timeout=120_000)
        _load_workflow(page, workflow, sampler_id, SAMPLER)
        page.keyboard.press("Escape")
        page.evaluate(RECORD_STATS_EVENTS_JS)
        second = _finished_run(server, _queue(page))
        _wait(page, f'{sel}[data-view="realised"]', 60_000)
        events = page.evaluate("() => window.__rhymeflowStatsEvents")
        shown = page.eval_on_selector(sel, "c => ({...c.dataset})")
    assert first["status"]["completed"] and second["status"]["completed"]
    cached = [m for m in second["status"]["messages"] if m[0] == "execution_cached"]
    assert cached and str(sampler_id) in cached[0][1]["nodes"], second["status"]["messages"]
    assert events == [], events
    record = second["outputs"][str(next(n["id"] for n in workflow["nodes"] if n["type"] == STATS))]["rhymeflow_stats"][0]
    assert shown["keyframes"] == ",".join(map(str, record["keyframes"])) and int(shown["steps"]) == len(record["roles"][0])
    assert not [m for m in console if m.startswith("pageerror")], console


# The cards of the open template dialog that have their thumbnail element, then its card list scrolled one screen
# down (the grid creates thumbnails for the cards in view only); returns [[title, thumbnail loaded], ...] and
# whether the list could still scroll.
TEMPLATE_CARDS_JS = """() => {
  const dialog = document.querySelector('[role=dialog]');
  const cards = [...dialog.querySelectorAll('img')].map(i => [i.alt, i.complete && i.naturalWidth > 0]);
  const list = [...dialog.querySelectorAll('*')].find(e => e.scrollHeight > e.clientHeight + 10 && ['auto', 'scroll'].includes(getComputedStyle(e).overflowY));
  const more = !!list && list.scrollTop + list.clientHeight < list.scrollHeight - 2;
  if (list) list.scrollTop += list.clientHeight;
  return { cards, more };
}"""


def test_template_browser_shows_every_template_titled_with_its_thumbnail(server):
    """Templates -> Extensions -> rhymeflow, as an artist opens it: one card per example workflow, titled by its file
    name (ComfyUI 0.8.2 reads nothing else for a pack's template), each thumbnail loaded, no request answered 4xx/5xx."""
    failed: list[tuple[int, str]] = []
    seen: dict[str, bool] = {}
    with _browser_page(server, "template_browser.log") as (page, console):
        page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)
        page.evaluate("async () => { await window.comfyAPI.app.app.extensionManager.command.execute('Comfy.BrowseTemplates'); }")
        page.get_by_text(PACK_NAME, exact=True).click()
        page.wait_for_timeout(3000)
        page.screenshot(path=str(ARTIFACTS / "template_browser.png"))
        for _ in range(10):
            got = page.evaluate(TEMPLATE_CARDS_JS)
            seen.update({title: seen.get(title, False) or loaded for title, loaded in got["cards"]})
            if not got["more"]:
                break
            page.wait_for_timeout(1500)
        seen.update({title: seen[title] or loaded for title, loaded in page.evaluate(TEMPLATE_CARDS_JS)["cards"]})
    assert sorted(seen) == sorted(p.stem for p in ALL_WORKFLOWS), sorted(seen)
    assert all(seen.values()), seen
    assert not failed, failed
