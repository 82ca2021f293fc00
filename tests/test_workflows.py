"""Structure of the shipped example workflows (UI format, version 0.4), checked without ComfyUI.

Every link must join existing nodes and slots with matching types; every node type must be one of ours
(declared in ``nodes/``, read from the V3 schemas with ``ast`` since ComfyUI is not importable here) or a
core node listed below; ``widgets_values`` must have as many values as the node has widgets. The real-ComfyUI
tier (``tests/comfyui/test_nodes_server.py``) validates the same files against a live ``/object_info``.
"""
from __future__ import annotations

import ast
import json
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / "example_workflows").glob("*.json"))

# core nodes the workflows may use: socket inputs (name -> type), output types, widget values (incl. control_after_generate)
CORE = {
    "UNETLoader": ({}, ["MODEL"], 2),
    "CLIPLoader": ({}, ["CLIP"], (2, 3)),
    "VAELoader": ({}, ["VAE"], 1),
    "ModelSamplingSD3": ({"model": "MODEL"}, ["MODEL"], 1),
    "CLIPTextEncode": ({"clip": "CLIP"}, ["CONDITIONING"], 1),
    "CFGGuider": ({"model": "MODEL", "positive": "CONDITIONING", "negative": "CONDITIONING"}, ["GUIDER"], 1),
    "BasicScheduler": ({"model": "MODEL"}, ["SIGMAS"], 3),
    "RandomNoise": ({}, ["NOISE"], 2),
    "KSamplerSelect": ({}, ["SAMPLER"], 1),
    "SamplerCustomAdvanced": ({"noise": "NOISE", "guider": "GUIDER", "sampler": "SAMPLER", "sigmas": "SIGMAS",
                               "latent_image": "LATENT"}, ["LATENT", "LATENT"], 0),
    "EmptyHunyuanLatentVideo": ({}, ["LATENT"], 4),
    "VAEDecode": ({"samples": "LATENT", "vae": "VAE"}, ["IMAGE"], 0),
    "SaveAnimatedWEBP": ({"images": "IMAGE"}, [], 5),
    "PreviewImage": ({"images": "IMAGE"}, [], 0),
    "EasyCache": ({"model": "MODEL"}, ["MODEL"], 4),
    "DualCLIPLoader": ({}, ["CLIP"], (3, 4)),
    "CheckpointLoaderSimple": ({}, ["MODEL", "CLIP", "VAE"], 1),
    "FluxGuidance": ({"conditioning": "CONDITIONING"}, ["CONDITIONING"], 1),
    "BasicGuider": ({"model": "MODEL", "conditioning": "CONDITIONING"}, ["GUIDER"], 0),
    "LTXVConditioning": ({"positive": "CONDITIONING", "negative": "CONDITIONING"}, ["CONDITIONING", "CONDITIONING"], 1),
    "LTXVScheduler": ({"latent": "LATENT"}, ["SIGMAS"], 5),
    "EmptyLTXVLatentVideo": ({}, ["LATENT"], 4),
    "EmptyMochiLatentVideo": ({}, ["LATENT"], 4),
    "SplitSigmas": ({"sigmas": "SIGMAS"}, ["SIGMAS", "SIGMAS"], 1),
    "DisableNoise": ({}, ["NOISE"], 0),
    "KSampler": ({"model": "MODEL", "positive": "CONDITIONING", "negative": "CONDITIONING", "latent_image": "LATENT"},
                 ["LATENT"], 7),
    "KSamplerAdvanced": ({"model": "MODEL", "positive": "CONDITIONING", "negative": "CONDITIONING", "latent_image": "LATENT"},
                         ["LATENT"], 10),
    "SamplerCustom": ({"model": "MODEL", "positive": "CONDITIONING", "negative": "CONDITIONING", "sampler": "SAMPLER",
                       "sigmas": "SIGMAS", "latent_image": "LATENT"}, ["LATENT", "LATENT"], 4),
    "CreateVideo": ({"images": "IMAGE", "audio": "AUDIO"}, ["VIDEO"], 1),
    "SaveVideo": ({"video": "VIDEO"}, [], 3),
    "CLIPVisionLoader": ({}, ["CLIP_VISION"], 1),
    "CLIPVisionEncode": ({"clip_vision": "CLIP_VISION", "image": "IMAGE"}, ["CLIP_VISION_OUTPUT"], 1),
    "LoadImage": ({}, ["IMAGE", "MASK"], 2),
    "WanImageToVideo": ({"positive": "CONDITIONING", "negative": "CONDITIONING", "vae": "VAE",
                         "clip_vision_output": "CLIP_VISION_OUTPUT", "start_image": "IMAGE"},
                        ["CONDITIONING", "CONDITIONING", "LATENT"], 4),
    "Wan22ImageToVideoLatent": ({"vae": "VAE", "start_image": "IMAGE"}, ["LATENT"], 4),
    "VAEDecodeTiled": ({"samples": "LATENT", "vae": "VAE"}, ["IMAGE"], 4),
}
# optional sockets of those core nodes (they may stay unconnected)
CORE_OPTIONAL = {"CreateVideo": {"audio"}, "WanImageToVideo": {"clip_vision_output", "start_image"},
                 "Wan22ImageToVideoLatent": {"start_image"}}

_IO_TYPES = {"Model": "MODEL", "Latent": "LATENT", "Sampler": "SAMPLER", "Conditioning": "CONDITIONING", "Image": "IMAGE",
             "String": "STRING", "Sigmas": "SIGMAS", "Noise": "NOISE", "Guider": "GUIDER", "Int": "INT", "Float": "FLOAT",
             "Boolean": "BOOLEAN", "Combo": "COMBO", "Vae": "VAE"}
_WIDGETS = {"Int", "Float", "String", "Boolean", "Combo"}


def _custom_types() -> dict[str, str]:
    """``Name = io.Custom("TYPE")`` assignments in nodes/*.py."""
    out = {}
    for path in (ROOT / "nodes").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute)
                    and node.value.func.attr == "Custom"):
                out[node.targets[0].id] = node.value.args[0].value
    return out


def _io_call(call: ast.Call, custom: dict[str, str]) -> tuple[str, str, str, bool] | None:
    """``io.X.Input(...)`` / ``Custom.Output(...)`` -> (kind Input|Output, type, id, control_after_generate)."""
    f = call.func
    if not (isinstance(f, ast.Attribute) and f.attr in ("Input", "Output")):
        return None
    base = f.value
    if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "io":
        kind = base.attr
    elif isinstance(base, ast.Name) and base.id in custom:
        kind = base.id
    else:
        return None
    ident = call.args[0].value if call.args and isinstance(call.args[0], ast.Constant) else None
    cag = any(k.arg == "control_after_generate" and getattr(k.value, "value", False) for k in call.keywords)
    return f.attr, kind, ident, cag


def _shared_blocks() -> dict[str, list[ast.expr]]:
    """Functions in nodes/*.py that return a list literal of inputs (a block several schemas share): name -> items."""
    out = {}
    for path in (ROOT / "nodes").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                ret = [r.value for r in ast.walk(node) if isinstance(r, ast.Return) and isinstance(r.value, ast.List)]
                if len(ret) == 1:
                    out[node.name] = ret[0].elts
    return out


def _input_items(inputs: ast.expr | None) -> list[ast.expr]:
    """The items of a schema's ``inputs=[...]``, with ``*shared_block()`` expanded in place (in order)."""
    shared = _shared_blocks()
    items = []
    for item in getattr(inputs, "elts", []):
        if isinstance(item, ast.Starred):
            call = item.value
            name = getattr(getattr(call, "func", None), "id", None) or getattr(getattr(call, "func", None), "attr", None)
            assert name in shared, f"inputs=[*{ast.unparse(call)}]: no function {name} returning a list literal in nodes/"
            items.extend(shared[name])
        else:
            items.append(item)
    return items


def our_nodes() -> dict[str, tuple[dict[str, str], list[str], int]]:
    """node_id -> (socket inputs, output types, widget value count) from the V3 schemas in nodes/*.py."""
    custom = _custom_types()
    out = {}
    for path in (ROOT / "nodes").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not _is_schema_call(node):
                continue
            kw = {k.arg: k.value for k in node.keywords}
            node_id = kw["node_id"].value
            sockets, outputs, widgets = {}, [], 0
            for item in _input_items(kw.get("inputs")):
                kind_io, kind, ident, cag = _io_call(item, custom)
                if kind in _WIDGETS:
                    widgets += 1 + int(cag)
                else:
                    sockets[ident] = custom.get(kind) or _IO_TYPES[kind]
            for item in getattr(kw.get("outputs"), "elts", []):
                _, kind, _, _ = _io_call(item, custom)
                outputs.append(custom.get(kind) or _IO_TYPES[kind])
            out[node_id] = (sockets, outputs, widgets)
    return out


def _is_schema_call(node: ast.AST) -> bool:
    """``io.Schema(...)``, or ``Schema(...)``: nodes/common.py's subclass that adds the category and search aliases."""
    return isinstance(node, ast.Call) and "Schema" in (getattr(node.func, "attr", None), getattr(node.func, "id", None))


def optional_sockets() -> dict[str, set[str]]:
    """node_id -> ids of the sockets declared with ``optional=True`` (they may stay unconnected)."""
    out = {}
    for path in (ROOT / "nodes").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if _is_schema_call(node):
                kw = {k.arg: k.value for k in node.keywords}
                out[kw["node_id"].value] = {item.args[0].value for item in _input_items(kw.get("inputs"))
                                            if any(k.arg == "optional" and getattr(k.value, "value", False) for k in item.keywords)}
    return out


def test_our_schemas_are_found():
    ours = our_nodes()
    assert {"RhymeFlowKeyframes", "RhymeFlowAsyncSampler", "RhymeFlowProjectionPatch", "RhymeFlowStats", "RhymeFlowCompare",
            "RhymeFlowTestbedConditioning", "RhymeFlowTestbedEmptyLatent", "RhymeFlowTestbedDecode"} <= set(ours)
    assert all(k.startswith("RhymeFlow") for k in ours)
    assert ours["RhymeFlowAsyncSampler"] == ({"keyframes": "RHYMEFLOW_KEYFRAMES"}, ["SAMPLER"], 8)
    assert ours["RhymeFlowAccelerate"] == ({"model": "MODEL", "keyframes": "RHYMEFLOW_KEYFRAMES"}, ["MODEL"], 12)
    assert ours["RhymeFlowStats"] == ({"model": "MODEL", "latent": "LATENT", "second_model": "MODEL"}, ["LATENT", "STRING"], 0)


def test_there_are_workflows():
    names = {p.stem for p in WORKFLOWS}
    assert {"RhymeFlow try it now, bundled test bed, no download (Async Sampler)",
            "RhymeFlow in a KSampler graph, bundled test bed, no download",
            "Wan 2.1 T2V 1.3B with RhymeFlow Accelerate (KSampler)", "Wan 2.1 T2V 1.3B with the RhymeFlow Async Sampler",
            "Wan 2.1 I2V 480p with RhymeFlow Accelerate (KSampler)", "Wan 2.2 TI2V 5B with RhymeFlow Accelerate (KSampler)",
            "Wan 2.2 T2V A14B, two experts, with RhymeFlow Accelerate (KSamplerAdvanced)",
            "HunyuanVideo T2V with RhymeFlow Accelerate", "LTX Video T2V with RhymeFlow Accelerate (SamplerCustom)",
            "Mochi T2V with RhymeFlow Accelerate (KSampler)"} <= names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_template_name_reads_as_its_title(path):
    """ComfyUI 0.8.2's template browser titles a custom node pack's template by its file name and describes it by the
    same name with ``-`` and ``_`` turned into spaces (it reads no index or metadata for packs), so the file name is
    the title: words, no underscores or hyphens, and "no download" exactly when every model it loads ships here."""
    sys.path.insert(0, str(ROOT / "tools"))
    from browser_session import runs_here

    assert not set(path.stem) & set("_-"), path.name
    assert ("no download" in path.stem) == runs_here(json.loads(path.read_text())), path.name


# The drop-in workflows are ComfyUI's own template graphs with RhymeFlow Accelerate added before the sampler.
DROPIN = {"Wan 2.1 T2V 1.3B with RhymeFlow Accelerate (KSampler)": "KSampler", "Wan 2.1 I2V 480p with RhymeFlow Accelerate (KSampler)": "KSampler", "Wan 2.2 TI2V 5B with RhymeFlow Accelerate (KSampler)": "KSampler",
          "Wan 2.2 T2V A14B, two experts, with RhymeFlow Accelerate (KSamplerAdvanced)": "KSamplerAdvanced", "HunyuanVideo T2V with RhymeFlow Accelerate": "BasicGuider",
          "LTX Video T2V with RhymeFlow Accelerate (SamplerCustom)": "SamplerCustom", "Mochi T2V with RhymeFlow Accelerate (KSampler)": "KSampler", "RhymeFlow in a KSampler graph, bundled test bed, no download": "KSampler"}


@pytest.mark.parametrize("name", sorted(DROPIN))
def test_dropin_workflows_feed_the_sampler_from_the_accelerate_node(name):
    """Every sampler (or guider) MODEL input comes from RhymeFlow Accelerate, except a dense reference's, and every
    Accelerate node feeds one; no Async Sampler or Projection Patch is left in these graphs."""
    wf = json.loads((ROOT / "example_workflows" / f"{name}.json").read_text())
    nodes = {n["id"]: n for n in wf["nodes"]}
    links = {l[0]: l for l in wf["links"]}
    assert not {"RhymeFlowAsyncSampler", "RhymeFlowProjectionPatch"} & {n["type"] for n in nodes.values()}
    fed = []
    for n in nodes.values():
        if n["type"] == DROPIN[name] and "dense" not in n.get("title", ""):
            src = nodes[links[next(i["link"] for i in n["inputs"] if i["name"] == "model")][1]]
            assert src["type"] == "RhymeFlowAccelerate", f"{name}: {n['type']} {n['id']} gets its MODEL from {src['type']}"
            fed.append(src["id"])
    accelerate = [n["id"] for n in nodes.values() if n["type"] == "RhymeFlowAccelerate"]
    assert fed and sorted(fed) == sorted(accelerate)



TESTBED = [p for p in WORKFLOWS if "bundled test bed" in p.stem]
CFG_WIDGET = {"CFGGuider": 0, "KSampler": 3, "KSamplerAdvanced": 4}  # where each sampler or guider keeps its CFG


@pytest.mark.parametrize("path", TESTBED, ids=lambda p: p.stem)
def test_testbed_workflows_sample_as_the_benchmarks_do(path):
    """A test-bed workflow's ModelSamplingSD3 shift and CFG are the ones every figure in the README is measured at
    (``model_io.SAMPLE_SHIFT``, ``SAMPLE_CFG``): an artist who queues it sees what the tables describe, and changing
    the test bed's sampling settings cannot leave a workflow behind."""
    from rhymeflow_core.testbed.model_io import SAMPLE_CFG, SAMPLE_SHIFT

    nodes = json.loads(path.read_text())["nodes"]
    shifts = [n["widgets_values"][0] for n in nodes if n["type"] == "ModelSamplingSD3"]
    cfgs = [n["widgets_values"][CFG_WIDGET[n["type"]]] for n in nodes if n["type"] in CFG_WIDGET]
    assert shifts and set(shifts) == {SAMPLE_SHIFT}, (path.name, shifts)
    assert cfgs and set(cfgs) == {SAMPLE_CFG}, (path.name, cfgs)

@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_structure(path):
    wf = json.loads(path.read_text())
    assert wf["version"] == 0.4
    uuid.UUID(wf["id"])  # the frontend's workflow schema: any other id opens with an "Invalid uuid" alert
    known = {**CORE, **our_nodes()}
    optional = optional_sockets() | CORE_OPTIONAL
    nodes = {n["id"]: n for n in wf["nodes"]}
    assert len(nodes) == len(wf["nodes"]), "duplicate node ids"
    assert wf["last_node_id"] >= max(nodes)
    links = {l[0]: l for l in wf["links"]}
    assert len(links) == len(wf["links"]), "duplicate link ids"
    assert wf["last_link_id"] >= max(links)
    assert any(n["type"].startswith("RhymeFlow") for n in nodes.values())
    for n in nodes.values():
        assert n["type"] in known, f"{path.name}: node {n['id']} has unknown type {n['type']}"
        sockets, outputs, widgets = known[n["type"]]
        got = len(n.get("widgets_values", []))
        assert got in (widgets if isinstance(widgets, tuple) else (widgets,)), \
            f"{path.name}: node {n['id']} {n['type']} has {got} widget values, expected {widgets}"
        assert [o["type"] for o in n.get("outputs", [])] == outputs, f"{path.name}: node {n['id']} outputs"
        for inp in n.get("inputs", []):
            if "widget" in inp:
                continue
            assert sockets.get(inp["name"]) == inp["type"], f"{path.name}: node {n['id']} input {inp['name']}"
        missing = set(sockets) - {i["name"] for i in n.get("inputs", []) if i.get("link") is not None} - optional.get(n["type"], set())
        assert not missing, f"{path.name}: node {n['id']} {n['type']} has unconnected inputs {missing}"
        for slot, out in enumerate(n.get("outputs", [])):
            for lid in out.get("links") or []:
                assert links[lid][1] == n["id"] and links[lid][2] == slot, f"{path.name}: output link {lid}"
        for slot, inp in enumerate(n.get("inputs", [])):
            if inp.get("link") is not None:
                assert links[inp["link"]][3] == n["id"] and links[inp["link"]][4] == slot, f"{path.name}: input link {inp['link']}"
    for lid, src, sslot, dst, dslot, typ in wf["links"]:
        assert src in nodes and dst in nodes, f"{path.name}: link {lid} joins missing nodes"
        s_out, d_in = nodes[src]["outputs"], nodes[dst]["inputs"]
        assert sslot < len(s_out) and dslot < len(d_in), f"{path.name}: link {lid} slot out of range"
        assert s_out[sslot]["type"] == typ == d_in[dslot]["type"], f"{path.name}: link {lid} type {typ}"
        assert lid in (s_out[sslot].get("links") or []) and d_in[dslot]["link"] == lid, f"{path.name}: link {lid} not mirrored"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_every_template_has_its_thumbnail(path):
    """ComfyUI's template browser shows ``<name>.jpg`` beside a pack's template (a placeholder and a 404 without it);
    ``tools/screenshots.py`` writes them from the real frontend."""
    thumb = path.with_suffix(".jpg")
    assert thumb.is_file(), f"{thumb.name} missing: run /opt/comfyui/.venv/bin/python tools/screenshots.py {path.name}"
    assert thumb.read_bytes()[:3] == b"\xff\xd8\xff", f"{thumb.name} is not a JPEG"
