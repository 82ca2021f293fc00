"""The frontend extension (web/): TypeScript check against @comfyorg/comfyui-frontend-types and node unit tests.

Both need the pinned dev dependencies in tests/web/node_modules (``npm ci --prefix tests/web``); without
them, or without node, these tests skip with that instruction. Nothing here lives under web/: ComfyUI
imports every .js there as an extension.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WEB_TESTS = REPO / "tests" / "web"
TSC = WEB_TESTS / "node_modules" / "typescript" / "bin" / "tsc"
NODE = shutil.which("node")

needs_node_modules = pytest.mark.skipif(
    NODE is None or not TSC.is_file(),
    reason="JS dev dependencies missing: run `npm ci --prefix tests/web` (needs node >= 20)",
)


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_web_folder_holds_only_extension_modules():
    """ComfyUI serves and imports every .js under web/; tests, configs and node_modules belong elsewhere."""
    files = sorted(p.relative_to(REPO / "web").as_posix() for p in (REPO / "web").rglob("*") if p.is_file())
    assert {"rhymeflow_step_map.js", "rhymeflow_text_output.js", "step_map_logic.js"} <= set(files), files
    stray = [f for f in files if not f.endswith(".js") or "node_modules" in f or ".test." in f or "/" in f]
    assert not stray, f"only extension modules belong in web/: {stray}"


def test_text_output_extension_lists_every_node_returning_ui_text():
    """ComfyUI's frontend draws no ``ui.text`` for custom nodes: a node missing from the extension's list shows nothing."""
    returning = set()
    for path in (REPO / "nodes").glob("*.py"):
        for block in re.split(r"\nclass ", path.read_text())[1:]:
            node_id = re.search(r'node_id="(\w+)"', block)
            if node_id and re.search(r'ui=\{"text"', block):
                returning.add(node_id.group(1))
    js = (REPO / "web" / "rhymeflow_text_output.js").read_text()
    listed = set(re.findall(r'"(\w+)"', re.search(r"TEXT_NODES = new Set\(\[(.*?)\]\)", js).group(1)))
    assert returning, "no node in nodes/ returns ui={\"text\": ...}: update this test's pattern"
    assert listed == returning


@needs_node_modules
def test_typescript_check():
    r = _run([NODE, str(TSC), "-p", str(WEB_TESTS)])
    assert r.returncode == 0, f"tsc failed:\n{r.stdout}\n{r.stderr}"


@needs_node_modules
def test_node_unit_tests():
    r = _run([NODE, "--test", str(WEB_TESTS) + "/"])
    assert r.returncode == 0, f"node --test failed:\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}"
    assert "# fail 0" in r.stdout
