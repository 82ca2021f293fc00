"""A real ComfyUI frontend for the pack's tools: ComfyUI headless with this repo as ``custom_nodes/rhymeflow``, and a
headless Chromium page on it with the pack's extensions loaded.

Why a shared module: the workflow layout tool (``layout_workflows.py``) and the screenshot tool
(``screenshots.py``) must see the nodes exactly as an artist's browser draws them (sizes come from the frontend's
own layout, DOM widgets included), so both drive the real frontend the same way. Needs ComfyUI at ``COMFYUI_PATH``
(default /opt/comfyui, its ``.venv`` Python runs the server), Chromium at ``CHROMIUM_PATH`` (default
/usr/bin/chromium) and the Playwright Python client.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO_ROOT / "example_workflows"
PACK_NAME = "rhymeflow"  # the pack's folder name under custom_nodes (the template browser's category)
COMFYUI_ROOT = Path(os.environ.get("COMFYUI_PATH", "/opt/comfyui")).expanduser()
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
EXTENSIONS = ("RhymeFlow.StepMap", "rhymeflow.text_output", "RhymeFlow.InputRules")
VIEWPORT = {"width": 1600, "height": 1000}
START_TIMEOUT_S = 240
RUN_TIMEOUT_S = 900

# Every node's rectangle in graph coordinates, title bar included: [id, type, x, y, w, h].
NODE_RECTS_JS = """() => window.comfyAPI.app.app.graph.nodes.map(n => {
  const [x, y, w, h] = n.boundingRect; return [n.id, n.type, x, y, w, h]; })"""


def get_json(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - 127.0.0.1 only
        return json.loads(r.read())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def comfyui_server(log_path: Path | None = None, prepare: Callable[[Path], None] | None = None) -> Iterator[str]:
    """ComfyUI on 127.0.0.1 with a temporary base directory and this repo as its only custom node pack; yields the URL.

    ``prepare(base)`` runs before the server starts (e.g. to put a model under ``base / "models"``); start-up
    failures raise ``RuntimeError`` with the end of the server's log."""
    with tempfile.TemporaryDirectory(prefix="rhymeflow_comfy_") as tmp:
        base = Path(tmp)
        (base / "custom_nodes").mkdir()
        (base / "custom_nodes" / PACK_NAME).symlink_to(REPO_ROOT, target_is_directory=True)
        if prepare is not None:
            prepare(base)
        log_path = log_path or base / "comfyui.log"
        venv = COMFYUI_ROOT / ".venv" / "bin" / "python"
        port = _free_port()
        log = open(log_path, "w")
        cmd = [str(venv) if venv.is_file() else sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
               "--base-directory", str(base), "--disable-api-nodes", "--database-url", f"sqlite:///{base / 'comfyui.db'}",
               "--preview-method", "none"]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, cwd=COMFYUI_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"ComfyUI exited with {proc.returncode}; log:\n{log_path.read_text()[-4000:]}")
                try:
                    get_json(f"{url}/system_stats", timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"ComfyUI did not answer in {START_TIMEOUT_S}s; log:\n{log_path.read_text()[-4000:]}") from None
                    time.sleep(1)
            # a first-run user gets the template browser over the graph; this one has seen it
            request = urllib.request.Request(f"{url}/settings/Comfy.TutorialCompleted", data=b"true", method="POST",
                                             headers={"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - 127.0.0.1 only
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


@contextlib.contextmanager
def browser_page(url: str, scale: float = 2) -> Iterator[object]:
    """A Playwright page on ComfyUI at ``url`` with the pack's extensions registered (``scale``: device pixels per CSS px)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT, device_scale_factor=scale)
        try:
            page.goto(url, wait_until="domcontentloaded", timeout=120_000)
            page.wait_for_function(
                "(names) => names.every(n => window.comfyAPI?.app?.app?.extensions?.some(e => e.name === n))",
                arg=list(EXTENSIONS), timeout=120_000)
            yield page
        finally:
            browser.close()


def load_workflow(page, workflow: dict, settle_ms: int = 1500) -> None:
    """Load a UI-format workflow as the template browser does, and let DOM widgets and step maps settle."""
    first = workflow["nodes"][0]
    for attempt in range(3):  # the frontend may still be restoring its start-up graph, which replaces an early load
        page.evaluate("async (wf) => { await window.comfyAPI.app.app.loadGraphData(wf); }", workflow)
        try:
            page.wait_for_function("([id, type]) => window.comfyAPI.app.app.graph?.getNodeById(id)?.type === type",
                                   arg=[first["id"], first["type"]], timeout=30_000)
            break
        except Exception:  # noqa: BLE001 - playwright's TimeoutError; retried, then re-raised
            if attempt == 2:
                raise
    page.keyboard.press("Escape")  # the "missing models" dialog a template without its files opens
    page.wait_for_timeout(settle_ms)


def queue_and_wait(page, url: str) -> dict:
    """Queue the page's graph as the Run button does and wait for its history entry."""
    with page.expect_response(lambda r: r.url.endswith("/prompt") and r.request.method == "POST") as queued:
        page.evaluate("() => window.comfyAPI.app.app.queuePrompt(0)")
    prompt_id = queued.value.json()["prompt_id"]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = get_json(f"{url}/history/{prompt_id}").get(prompt_id)
        if run and run.get("status", {}).get("status_str"):
            page.wait_for_timeout(1500)  # the page handles the last "executed" messages
            return run
        time.sleep(1)
    raise RuntimeError(f"the queued workflow did not finish in {RUN_TIMEOUT_S}s")


def runs_here(workflow: dict) -> bool:
    """A template that needs no download: every model it loads is the pack's test bed."""
    loaders = [n for n in workflow["nodes"] if n["type"] in ("UNETLoader", "CheckpointLoaderSimple", "CLIPLoader", "VAELoader",
                                                             "DualCLIPLoader", "CLIPVisionLoader", "LoadImage")]
    return bool(loaders) and all(n["type"] == "UNETLoader" and n["widgets_values"][0] == "testbed_wan.safetensors" for n in loaders)
