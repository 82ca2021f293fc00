"""The planned step map on ComfyUI's own sigmas and the model file's own dims (nodes/plan_inputs.py), against a run.

The widget's planned map is only worth reading if it is the map the run will make, priced as the run prices
itself: here the route's functions are called as the route calls them, and a KSampler run of RhymeFlow
Accelerate on the test-bed checkpoint is compared with the plan for the same graph settings.
"""
from __future__ import annotations

import pytest
import torch

from rhymeflow_core.testbed.model_io import SAMPLE_SHIFT as SHIFT  # the testbed fixture's ModelSamplingSD3

FRAMES, STEPS = 16, 30


def test_sigmas_are_comfyuis_for_the_scheduler_and_shift(pack_import, testbed):
    import comfy.samplers

    plan_inputs = pack_import("nodes.plan_inputs")
    sampling = testbed.get_model_object("model_sampling")  # ModelSamplingSD3 at SHIFT on the test bed
    for scheduler in ("simple", "beta", "normal"):
        expected = comfy.samplers.calculate_sigmas(sampling, scheduler, STEPS).tolist()
        assert plan_inputs.comfy_sigmas(scheduler, STEPS, SHIFT) == pytest.approx(expected, abs=1e-6), scheduler
    with pytest.raises(ValueError, match=r"scheduler='nope' is not known; accepted: simple, "):
        plan_inputs.comfy_sigmas("nope", STEPS, SHIFT)


def test_model_file_dims_are_the_dims_a_run_reads(pack_import, testbed):
    """The header-only read on the meta device gives the dims the adapter reads off the loaded model."""
    plan_inputs = pack_import("nodes.plan_inputs")
    adapters = pack_import("rhymeflow_core.adapters")
    dims, family, label = plan_inputs.model_file_dims("UNETLoader", "testbed_wan.safetensors", (FRAMES, 16, 16), 8)
    dit = testbed.model.diffusion_model
    expected = adapters.comfyui_adapter(dit).model_dims(dit, torch.zeros(1, 16, FRAMES, 16, 16), 8)
    assert (dims, family) == (expected, "wan") and label == "WanModel read from testbed_wan.safetensors"
    import os

    import folder_paths

    path = folder_paths.get_full_path("diffusion_models", "testbed_wan.safetensors")
    st = os.stat(path)
    assert all(p.device.type == "meta" for p in plan_inputs._meta_model(path, st.st_mtime_ns, st.st_size).parameters())
    with pytest.raises(ValueError, match=r"'\.\./x\.safetensors' is not in ComfyUI's diffusion_models folder"):
        plan_inputs.model_file_dims("UNETLoader", "../x.safetensors", (FRAMES, 16, 16), 8)
    with pytest.raises(ValueError, match=r"the model comes from UnetLoaderGGUF, whose file is not read here"):
        plan_inputs.model_file_dims("UnetLoaderGGUF", "testbed_wan.safetensors", (FRAMES, 16, 16), 8)


@pytest.mark.parametrize("preset,context_mode", [("paper", "kv"), ("target", "hidden")])
@torch.inference_mode()
def test_planned_map_and_flop_ideal_equal_the_runs(pack_import, pack, testbed, preset, context_mode):
    """KSampler (euler, simple, 30 steps) on RhymeFlow Accelerate: the route's plan for these graph settings has the
    run's step map, schedule and FLOP-ideal (counted calls at the real dims and context mode)."""
    import nodes as comfy_nodes

    query_mod = pack_import("rhymeflow_core.step_map_query")
    plan_inputs = pack_import("nodes.plan_inputs")
    pos, neg = pack.tb.RhymeFlowTestbedConditioning.execute("astronaut").args
    model = pack.dropin_node.execute(testbed, preset=preset, target_speedup=1.5, strategy="uniform", budget=4,
                                     context_mode=context_mode, warmup=5, n_small=2, n_large=3, placement="device",
                                     cache_dtype="auto").args[0]
    comfy_nodes.common_ksampler(model, 0, STEPS, 3.0, "euler", "simple", pos, neg,
                                {"samples": torch.zeros(1, 16, FRAMES, 16, 16)})
    result = pack.glue.holder_of(model).last_result
    query = {"frames": FRAMES, "steps": STEPS, "scheduler": "simple", "shift": SHIFT, "preset": preset, "target_speedup": 1.5,
             "strategy": "uniform", "budget": 4, "context_mode": context_mode, "model_loader": "UNETLoader",
             "model_file": "testbed_wan.safetensors", "latent_h": 16, "latent_w": 16, "text_tokens": result.dims.text_tokens}
    planned = query_mod.planned_step_map(query, sigmas_fn=plan_inputs.comfy_sigmas, dims_fn=plan_inputs.model_file_dims)
    assert planned["error"] is None and planned["flop_dims_real"] is True, planned
    assert planned["roles"] == result.roles and planned["keyframes"] == result.keyframes
    assert planned["schedule"] == result.schedule.to_dict()
    assert planned["sigmas"] == [round(float(s), 4) for s in result.sigmas]
    assert planned["flop_ideal"] == pytest.approx(result.flop_speedup, abs=1e-3)
