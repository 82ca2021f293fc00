"""The pack in a real, headless ComfyUI server: node registration, the shipped workflows, end-to-end runs.

A ComfyUI server is started on 127.0.0.1 (free port, ``--cpu``) with a temporary ``--base-directory`` whose
``custom_nodes/rhymeflow`` is a symlink to this repo, and stopped afterwards (``server_harness.py``, fixtures in
``conftest.py``). Tests talk to it over HTTP and the websocket only, as the frontend does. The UI-format example
workflows are converted to API prompts with ``/object_info``'s ``input_order`` (``server_harness.ui_to_api``).

Run-time tests need the trained test-bed checkpoint (``rhymeflow_core/testbed/weights``) or another checkpoint
folder with its model card in ``RHYMEFLOW_TESTBED_DIR`` (linked into the server's ``models/diffusion_models``);
without one they skip. Reference results come from ``rhymeflow_core.testbed.runner`` in this process, with the
same seed: ComfyUI's RandomNoise is ``torch.manual_seed(seed)`` + ``randn(latent shape)`` and the runner's noise is
``Generator().manual_seed(seed)`` + ``randn`` of the same shape, i.e. the same numbers.
Sizes are small (9 latent frames, 20 steps) to keep the tier within a few minutes on 2 CPU cores.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from .server_harness import find_node, ui_to_api, upstream

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO_ROOT / "example_workflows").glob("*.json"))
OUR_NODES = ("RhymeFlowKeyframes", "RhymeFlowAsyncSampler", "RhymeFlowProjectionPatch", "RhymeFlowStats", "RhymeFlowCompare",
             "RhymeFlowTestbedConditioning", "RhymeFlowTestbedEmptyLatent", "RhymeFlowTestbedDecode")
FRAMES, STEPS, SEED, CLASS = 9, 20, 1234, "cat"
DROPIN_TESTBED = REPO_ROOT / "example_workflows" / "RhymeFlow in a KSampler graph, bundled test bed, no download.json"
FILE_INPUTS = ("unet_name", "clip_name", "clip_name1", "clip_name2", "vae_name", "ckpt_name", "lora_name",
               "image")  # combos listing model (or input image) files


# ----------------------------------------------------------------------------------------------- UI -> API

def _check_value(node_type: str, name: str, spec: list, value) -> None:
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    where = f"{node_type}.{name} = {value!r}"
    options = kind if isinstance(kind, list) else opts.get("options")
    if options is not None:
        if name not in FILE_INPUTS:
            assert value in options, f"{where} not in {options}"
        return
    if kind == "INT":
        assert isinstance(value, int) and not isinstance(value, bool), where
    elif kind == "FLOAT":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), where
    elif kind == "STRING":
        assert isinstance(value, str), where
    if kind in ("INT", "FLOAT"):
        assert opts.get("min", value) <= value <= opts.get("max", value), f"{where} outside [{opts.get('min')}, {opts.get('max')}]"


def _variant(base: dict, which: str, tag: str, frames=FRAMES, steps=STEPS, seed=SEED, easycache=False) -> tuple[dict, str, str]:
    """(prompt, sampler node id, SaveLatent node id) for the ``rhymeflow`` or ``dense`` branch of the try-it-now graph."""
    p = json.loads(json.dumps(base))
    sampler_type = "RhymeFlowAsyncSampler" if which == "rhymeflow" else "KSamplerSelect"
    sca = find_node(p, "SamplerCustomAdvanced", sampler=sampler_type)
    p[find_node(p, "RhymeFlowTestbedEmptyLatent")]["inputs"]["frames"] = frames
    p[find_node(p, "BasicScheduler")]["inputs"]["steps"] = steps
    p[find_node(p, "RandomNoise")]["inputs"]["noise_seed"] = seed
    p[find_node(p, "RhymeFlowTestbedConditioning")]["inputs"]["video_class"] = CLASS
    outputs = ["900"]
    p["900"] = {"class_type": "SaveLatent", "inputs": {"samples": [sca, 0], "filename_prefix": f"latents/{tag}"}}
    if which == "rhymeflow":
        stats = find_node(p, "RhymeFlowStats")
        p[stats]["inputs"]["latent"] = [sca, 0]
        outputs.append(stats)
    if easycache:
        guider = p[p[sca]["inputs"]["guider"][0]]
        p["901"] = {"class_type": "EasyCache", "inputs": {"model": guider["inputs"]["model"], "reuse_threshold": 0.2,
                                                          "start_percent": 0.15, "end_percent": 0.95, "verbose": False}}
        guider["inputs"]["model"] = ["901", 0]
    return upstream(p, outputs), sca, "900"


# ----------------------------------------------------------------------------------------------- registration

def test_object_info_lists_our_nodes(object_info, server):
    missing = [n for n in OUR_NODES if n not in object_info]
    assert not missing, f"missing {missing}; server log:\n{server.log()[-3000:]}"
    for n in OUR_NODES:
        assert object_info[n]["category"].startswith("RhymeFlow"), n
        assert object_info[n]["python_module"].startswith("custom_nodes"), object_info[n]["python_module"]
        for name, spec in object_info[n]["input"]["required"].items():
            assert (spec[1] if len(spec) > 1 else {}).get("tooltip"), f"{n}.{name} has no tooltip"
    assert object_info["RhymeFlowStats"]["output_node"] and object_info["RhymeFlowCompare"]["output_node"]
    # the custom-schedule inputs show exactly while preset custom reads them (presets.PRESET_INPUTS, web/input_rules.js)
    sampler = object_info["RhymeFlowAsyncSampler"]["input"]["required"]
    assert sampler["preset"][1]["rhymeflow_uses"]["custom"] == ["warmup", "n_small", "n_large"]
    assert sampler["preset"][1]["rhymeflow_uses"]["paper"] == [] and not sampler["warmup"][1].get("advanced")
    accelerate = object_info["RhymeFlowAccelerate"]["input"]
    assert accelerate["required"]["preset"][1]["rhymeflow_uses"]["target"] == ["target_speedup"]
    assert accelerate["optional"]["keyframes"][1]["rhymeflow_overrides"] == ["strategy", "budget"]
    assert "IMPORT FAILED" not in "\n".join(l for l in server.log().splitlines() if "rhymeflow" in l)


def test_unet_loader_lists_testbed_checkpoint(object_info, checkpoint):
    assert "testbed_wan.safetensors" in object_info["UNETLoader"]["input"]["required"]["unet_name"][0]


def test_workflow_templates_served(server):
    templates = server.get("/api/workflow_templates")
    assert sorted(templates.get("rhymeflow", [])) == sorted(p.stem for p in WORKFLOWS)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_validates_against_object_info(object_info, path):
    workflow = json.loads(path.read_text())
    unknown = sorted({n["type"] for n in workflow["nodes"]} - set(object_info))
    assert not unknown, f"{path.name}: node types unknown to ComfyUI: {unknown}"
    prompt = ui_to_api(workflow, object_info)
    for node in workflow["nodes"]:
        info = object_info[node["type"]]
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        api = prompt[str(node["id"])]["inputs"]
        for name in info["input"].get("required", {}):
            assert name in api, f"{path.name}: node {node['id']} {node['type']} lacks required input {name!r}"
        for name, value in api.items():
            if isinstance(value, list):  # a link: the source output type must match the input type
                src = next(n for n in workflow["nodes"] if n["id"] == int(value[0]))
                out_type = object_info[src["type"]]["output"][value[1]]
                assert out_type == specs[name][0], f"{path.name}: {node['type']}.{name} <- {src['type']} ({out_type})"
            else:
                _check_value(node["type"], name, specs[name], value)


# ----------------------------------------------------------------------------------------------- runs

def test_dropin_workflow_runs(server, object_info, checkpoint):
    """The test-bed drop-in graph as queued from the UI: plain KSampler (uni_pc) behind RhymeFlow Accelerate, beside
    the dense KSampler; the realised step map reaches the Stats node's UI output with keyframe-only passes."""
    prompt = ui_to_api(json.loads(DROPIN_TESTBED.read_text()), object_info)
    run = server.run(prompt)
    assert run.ok(), run.error()
    stats = run.outputs[find_node(prompt, "RhymeFlowStats")]["rhymeflow_stats"][0]
    accelerate = prompt[find_node(prompt, "RhymeFlowAccelerate")]["inputs"]
    ksampler = prompt[find_node(prompt, "KSampler", model="RhymeFlowAccelerate")]["inputs"]
    frames = prompt[find_node(prompt, "RhymeFlowTestbedEmptyLatent")]["inputs"]["frames"]
    assert stats["entry"] == "dropin" and stats["sampler"] == ksampler["sampler_name"] == "uni_pc"
    assert stats["frames"] == frames and stats["steps"] == ksampler["steps"] and len(stats["keyframes"]) == accelerate["budget"]
    assert stats["keyframe_passes"] > 0 and stats["calls"]["keyframe"] > 0 and stats["flop_speedup"] > 1
    compare = run.outputs[find_node(prompt, "RhymeFlowCompare")]["rhymeflow_compare"][0]
    assert len(compare["psnr_frames"]) == frames and compare["psnr_mean"] > 15, compare


def test_try_it_now_runs(server, object_info, checkpoint, testbed_prompt):
    run = server.run(testbed_prompt)
    assert run.ok(), run.error()
    stats_id = find_node(testbed_prompt, "RhymeFlowStats")
    stats = run.outputs[stats_id]["rhymeflow_stats"][0]
    assert stats["frames"] == 16 and stats["steps"] == 30 and len(stats["roles"]) == 16 and len(stats["roles"][0]) == 30
    assert len(stats["keyframes"]) == 4 and stats["keyframe_passes"] > 0 and stats["flop_speedup"] > 1
    assert "16 latent frames x 30 steps" in stats["summary"]
    compare = run.outputs[find_node(testbed_prompt, "RhymeFlowCompare")]["rhymeflow_compare"][0]
    assert len(compare["psnr_frames"]) == 16 and compare["psnr_mean"] > 15, compare
    assert run.outputs[find_node(testbed_prompt, "SaveAnimatedWEBP")]["images"]
    ws_stats = [m["data"] for m in run.messages if m["type"] == "rhymeflow.stats"]
    assert len(ws_stats) == 1 and ws_stats[0]["node"] == stats["node"] == find_node(testbed_prompt, "RhymeFlowAsyncSampler")
    assert ws_stats[0]["keyframes"] == stats["keyframes"]
    print(f"\ntry-it-now: {stats['summary']}\n{compare['summary']}")


@pytest.fixture(scope="module")
def reference(checkpoint, testbed_prompt):
    """The core's test-bed results for the same job: (dense latent, RhymeFlow latent, RhymeFlow keyframes)."""
    from rhymeflow_core.keyframes import KeyframePlan
    from rhymeflow_core.patch import PatchConfig
    from rhymeflow_core.flow import simple_sigmas
    from rhymeflow_core.presets import preset_schedule
    from rhymeflow_core.sampler import sample_dense, sample_rhymeflow
    from rhymeflow_core.testbed import model_io, runner
    from rhymeflow_core.testbed.conditioning import CLASSES

    model = model_io.load_model(checkpoint)
    cfg = float(testbed_prompt[find_node(testbed_prompt, "CFGGuider")]["inputs"]["cfg"])  # the workflow's own CFG and shift
    shift = float(testbed_prompt[find_node(testbed_prompt, "ModelSamplingSD3")]["inputs"]["shift"])
    job = runner.Job(cls=CLASSES.index(CLASS), seed=SEED, frames=FRAMES, steps=STEPS, cfg=cfg, shift=shift)
    dense, _, _ = runner.run_sampler(sample_dense, model, job)
    sampler = testbed_prompt[find_node(testbed_prompt, "RhymeFlowAsyncSampler")]["inputs"]  # the workflow's own settings
    rf, _, holder = runner.run_sampler(sample_rhymeflow, model, job, config=PatchConfig(), plan=KeyframePlan(),
                                       schedule=preset_schedule(sampler["preset"], simple_sigmas(STEPS, shift)), projection=sampler["projection"],
                                       keyframe_solver=sampler["keyframe_solver"])
    return dense, rf, holder.last_result.keyframes


def _model_space(latent: torch.Tensor) -> torch.Tensor:
    import comfy.latent_formats

    return comfy.latent_formats.Wan21().process_in(latent.float())


def _assert_close(got: torch.Tensor, want: torch.Tensor, what: str, rtol: float = 2e-3) -> float:
    err = (got - want).abs().max().item()
    scale = max(1.0, want.abs().max().item())
    assert err <= rtol * scale, f"{what}: max |comfyui - core| = {err:.3g} > {rtol} * {scale:.3g}"
    return err


@pytest.fixture(scope="module")
def runs(server, testbed_prompt, checkpoint):
    """Clean dense, then RhymeFlow, then dense again on the same (cached) patched MODEL."""
    out = {}
    for key, which in (("dense_clean", "dense"), ("rhymeflow", "rhymeflow"), ("dense_after", "dense")):
        prompt, sampler_id, save_id = _variant(testbed_prompt, which, key)
        run = server.run(prompt)
        assert run.ok(), f"{key}: {run.error()}"
        assert sampler_id not in run.cached(), f"{key}: the sampler was served from the cache"
        out[key] = (run, run.latent(save_id), prompt)
    return out


def test_dense_matches_core(runs, reference):
    err = _assert_close(_model_space(runs["dense_clean"][1]), reference[0], "dense")
    print(f"\ndense: max |comfyui - core| = {err:.3g}")


def test_rhymeflow_matches_core(runs, reference):
    run, latent, prompt = runs["rhymeflow"]
    stats = run.outputs[find_node(prompt, "RhymeFlowStats")]["rhymeflow_stats"][0]
    assert stats["keyframes"] == reference[2]
    err = _assert_close(_model_space(latent), reference[1], "rhymeflow")
    print(f"\nrhymeflow: keyframes {stats['keyframes']}, max |comfyui - core| = {err:.3g}")


def test_dense_after_rhymeflow_is_bit_identical(runs):
    """Same patched MODEL (cached patch node), dense sampler re-executed after a RhymeFlow run."""
    assert torch.equal(runs["dense_after"][1], runs["dense_clean"][1])


def test_interrupt_leaves_no_state(server, runs, testbed_prompt):
    prompt, sampler_id, save_id = _variant(testbed_prompt, "rhymeflow", "interrupted")
    run = server.run(prompt, interrupt_at=STEPS // 2)  # inside the keyframe groups: run state and cache are live
    assert run.status["status_str"] == "error", run.status
    assert any(t == "execution_interrupted" for t, _ in run.status["messages"]), run.error()
    prompt, sampler_id, save_id = _variant(testbed_prompt, "rhymeflow", "after_interrupt")
    again = server.run(prompt)
    assert again.ok(), again.error()
    assert sampler_id not in again.cached()
    assert torch.equal(again.latent(save_id), runs["rhymeflow"][1])


def test_easycache_on_the_same_graph(server, runs, testbed_prompt):
    prompt, sampler_id, save_id = _variant(testbed_prompt, "dense", "easycache", easycache=True)
    run = server.run(prompt)
    assert run.ok(), run.error()
    lines = [l for l in server.log().splitlines() if "EasyCache - skipped" in l]
    assert lines, server.log()[-3000:]
    latent = _model_space(run.latent(save_id))
    dense = _model_space(runs["dense_clean"][1])
    assert torch.isfinite(latent).all()
    print(f"\n{lines[-1].strip()}; max |easycache - dense| = {(latent - dense).abs().max().item():.3g}")
    # EasyCache under RhymeFlow's keyframe-only passes is refused with a message, not a shape error
    prompt, _, _ = _variant(testbed_prompt, "rhymeflow", "easycache_rf", easycache=True)
    run = server.run(prompt)
    assert not run.ok() and "cannot be combined with RhymeFlow" in run.error(), run.error()


def test_asymrnr_combo_workflow_runs(server, object_info, checkpoint):
    """The shipped RhymeFlow + AsymRnR graph runs end to end and reports both patches' stats."""
    workflow = json.loads((REPO_ROOT / "example_workflows" / "RhymeFlow and AsymRnR combined, bundled test bed, no download.json").read_text())
    prompt = ui_to_api(workflow, object_info)
    run = server.run(prompt)
    assert run.ok(), run.error()
    asym = run.outputs[find_node(prompt, "RhymeFlowAsymRnRStats")]
    assert "FLOPs saved" in asym["text"][0] and asym["asymrnr_stats"][0]["flops_saved_fraction"] > 0, asym
    assert run.outputs[find_node(prompt, "RhymeFlowStats")]["rhymeflow_stats"][0]["keyframe_passes"] > 0
