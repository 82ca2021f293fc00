"""A headless ComfyUI server for the real-ComfyUI tier, and what tests need to talk to it like the frontend does.

``Server`` starts ``main.py --cpu`` on 127.0.0.1 (a free port) with a temporary ``--base-directory`` and talks to
it over HTTP and the websocket only; ``ui_to_api`` converts UI-format workflows to API prompts with
``/object_info``'s ``input_order`` (ComfyUI has no server-side converter). The ``server``, ``object_info``,
``checkpoint`` and ``testbed_prompt`` fixtures in ``conftest.py`` build on these, one server per test module.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import torch

START_TIMEOUT, RUN_TIMEOUT = 240, 240
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def testbed_dir() -> Path:
    from rhymeflow_core.testbed import model_io

    return Path(os.environ.get("RHYMEFLOW_TESTBED_DIR", model_io.DEFAULT_DIR)).resolve()


class Server:
    def __init__(self, root: Path, base: Path):
        import requests

        self.http = requests.Session()
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "server.log"
        cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port), "--base-directory", str(base),
               "--database-url", f"sqlite:///{base / 'comfyui.db'}", "--disable-api-nodes", "--preview-method", "none"]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=root, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if self.http.get(f"{self.url}/system_stats", timeout=2).ok:
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(1)
        raise RuntimeError(f"ComfyUI did not start within {START_TIMEOUT}s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    def get(self, path: str):
        r = self.http.get(f"{self.url}{path}", timeout=30)
        r.raise_for_status()
        return r.json()

    def run(self, prompt: dict, interrupt_at: int | None = None, timeout: float = RUN_TIMEOUT) -> "Run":
        """Queue ``prompt`` with a websocket listening; optionally POST /interrupt once progress reaches ``interrupt_at``."""
        return asyncio.run(self._run(prompt, interrupt_at, timeout))

    async def _run(self, prompt, interrupt_at, timeout):
        import aiohttp

        client_id = uuid.uuid4().hex
        messages = []
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(f"ws://127.0.0.1:{self.port}/ws?clientId={client_id}") as ws:
                async with s.post(f"{self.url}/prompt", json={"prompt": prompt, "client_id": client_id}) as r:
                    body = await r.json()
                    if r.status != 200:
                        raise AssertionError(f"/prompt refused the prompt: {json.dumps(body)[:3000]}")
                pid = body["prompt_id"]
                deadline = time.time() + timeout
                interrupted = False
                while time.time() < deadline:
                    try:
                        msg = await ws.receive(timeout=max(1.0, deadline - time.time()))
                    except asyncio.TimeoutError:
                        break
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                            break
                        continue
                    m = json.loads(msg.data)
                    messages.append(m)
                    data = m.get("data") or {}
                    if (interrupt_at is not None and not interrupted and m["type"] == "progress" and data.get("prompt_id") == pid
                            and data.get("value", 0) >= interrupt_at):
                        async with s.post(f"{self.url}/interrupt") as r:
                            assert r.status == 200
                        interrupted = True
                    if m["type"] in ("execution_success", "execution_error", "execution_interrupted") and data.get("prompt_id") == pid:
                        break
        for _ in range(50):  # history is written right after the final message
            hist = self.get(f"/history/{pid}")
            if pid in hist and hist[pid].get("status", {}).get("completed") is not None:
                return Run(self, pid, hist[pid], messages)
            time.sleep(0.2)
        raise AssertionError(f"prompt {pid} has no history after {timeout}s; last messages {messages[-5:]}\n{self.log()[-3000:]}")


class Run:
    def __init__(self, server: Server, pid: str, history: dict, messages: list):
        self.server, self.pid, self.history, self.messages = server, pid, history, messages
        self.status = history["status"]
        self.outputs = history["outputs"]

    def ok(self) -> bool:
        return self.status.get("status_str") == "success"

    def error(self) -> str:
        return json.dumps(self.status.get("messages", []))[:4000]

    def cached(self) -> set[str]:
        return {n for t, d in self.status.get("messages", []) if t == "execution_cached" for n in d.get("nodes", [])}

    def latent(self, node_id: str) -> torch.Tensor:
        from safetensors.torch import load_file

        item = self.outputs[node_id]["latents"][0]
        return load_file(str(self.server.base / "output" / item["subfolder"] / item["filename"]))["latent_tensor"]


# ----------------------------------------------------------------------------------------------- UI -> API

def _is_widget(spec: list) -> bool:
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not opts.get("forceInput")


def _has_control(name: str, spec: list) -> bool:
    opts = spec[1] if len(spec) > 1 else {}
    return bool(opts.get("control_after_generate")) or name in ("seed", "noise_seed")


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """API prompt of a UI-format workflow, as the frontend's graphToPrompt builds it (no groups/subgraphs/bypass).

    Widget values are assigned in ``input_order`` (required, then optional) to the inputs that are widgets and
    not linked; the value a ``control_after_generate`` widget adds right after itself is skipped.
    """
    links = {l[0]: l for l in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) in (2, 4):
            continue
        info = object_info[node["type"]]
        linked = {}
        for inp in node.get("inputs", []):
            if inp.get("link") is not None:
                _, src, slot, _, _, _ = links[inp["link"]]
                linked[inp["name"]] = [str(src), slot]
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        order = info["input_order"].get("required", []) + info["input_order"].get("optional", [])
        values = list(node.get("widgets_values", []))
        inputs = dict(linked)
        for name in order:
            spec = specs[name]
            if name in linked or not _is_widget(spec):
                continue
            if not values:
                raise ValueError(f"node {node['id']} {node['type']}: no widget value left for {name!r}")
            inputs[name] = values.pop(0)
            if _has_control(name, spec) or (len(spec) > 1 and spec[1].get("image_upload")):
                values.pop(0)  # the value the frontend stores for the control / upload widget after this one
        if values:
            raise ValueError(f"node {node['id']} {node['type']}: {len(values)} widget values left over: {values}")
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs, "_meta": {"title": node.get("title", node["type"])}}
    return prompt


def upstream(prompt: dict, outputs: list[str]) -> dict:
    """The part of ``prompt`` that ``outputs`` need."""
    keep, todo = set(), list(outputs)
    while todo:
        nid = todo.pop()
        if nid in keep:
            continue
        keep.add(nid)
        todo += [v[0] for v in prompt[nid]["inputs"].values() if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)]
    return {k: v for k, v in prompt.items() if k in keep}


def find_node(prompt: dict, class_type: str, **linked_from: str) -> str:
    """Id of the ``class_type`` node whose inputs come from nodes of the given class types."""
    hits = [nid for nid, n in prompt.items() if n["class_type"] == class_type and all(
        isinstance(n["inputs"].get(k), list) and prompt[n["inputs"][k][0]]["class_type"] == v for k, v in linked_from.items())]
    assert len(hits) == 1, (class_type, linked_from, hits)
    return hits[0]
