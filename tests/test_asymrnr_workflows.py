"""The per-family RhymeFlow + AsymRnR example workflows (``<model> with RhymeFlow and AsymRnR ....json``), checked without ComfyUI.

``tests/test_workflows.py`` checks their structure like every shipped workflow (and the real-ComfyUI tier validates
them against a live ``/object_info``); here: AsymRnR Token Reduction sits right before RhymeFlow Accelerate (so
Accelerate stays the last MODEL patch, as the README's composition order says), AsymRnR Stats reads the MODEL the
sampler gets and sits on the sampler's LATENT path, and no two node rectangles overlap.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = {"wan": "Wan 2.1 T2V 1.3B with RhymeFlow and AsymRnR (KSampler)", "hunyuan_video": "HunyuanVideo T2V with RhymeFlow and AsymRnR",
             "ltxv": "LTX Video T2V with RhymeFlow and AsymRnR (SamplerCustom)", "mochi": "Mochi T2V with RhymeFlow and AsymRnR (KSampler)"}
FAMILIES = tuple(WORKFLOWS)
SAMPLERS = {"KSampler", "SamplerCustom", "BasicGuider"}


def _load(family: str):
    wf = json.loads((ROOT / "example_workflows" / f"{WORKFLOWS[family]}.json").read_text())
    nodes = {n["id"]: n for n in wf["nodes"]}
    links = {lk[0]: lk for lk in wf["links"]}
    return wf, nodes, links


def _source(nodes, links, node, name):
    return nodes[links[next(i["link"] for i in node["inputs"] if i["name"] == name)][1]]


@pytest.mark.parametrize("family", FAMILIES)
def test_asymrnr_then_accelerate_then_the_sampler(family):
    wf, nodes, links = _load(family)
    kinds = [n["type"] for n in nodes.values()]
    assert kinds.count("RhymeFlowAsymRnR") == kinds.count("RhymeFlowAccelerate") == kinds.count("RhymeFlowAsymRnRStats") == 1
    acc = next(n for n in nodes.values() if n["type"] == "RhymeFlowAccelerate")
    assert _source(nodes, links, acc, "model")["type"] == "RhymeFlowAsymRnR"
    sampler = next(n for n in nodes.values() if n["type"] in SAMPLERS)
    assert _source(nodes, links, sampler, "model")["id"] == acc["id"]
    stats = next(n for n in nodes.values() if n["type"] == "RhymeFlowAsymRnRStats")
    assert _source(nodes, links, stats, "model")["id"] == acc["id"]  # the MODEL that is sampled carries the result
    assert _source(nodes, links, stats, "latent")["type"] in {"KSampler", "SamplerCustom", "SamplerCustomAdvanced"}
    assert links[stats["outputs"][0]["links"][0]][3] in nodes  # its latent goes on to the decoder


@pytest.mark.parametrize("family", FAMILIES)
def test_no_overlapping_nodes(family):
    wf, _, _ = _load(family)
    rects = [(n["id"], *n["pos"], *n["size"]) for n in wf["nodes"]]
    for i, (ia, ax, ay, aw, ah) in enumerate(rects):
        for ib, bx, by, bw, bh in rects[i + 1:]:
            assert not (ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah), f"{family}: nodes {ia} and {ib} overlap"
