"""RhymeFlow Accelerate next to other MODEL patches, each composed or refused with a message (README: order).

On the trained test-bed checkpoint, KSampler uni_pc (the Wan templates' sampler). What is checked per patch:
- LoRA (what LoraLoaderModelOnly calls, on a small random LoRA): before or after the node, keyframe-only
  passes run on the LoRA weights (the output differs from the LoRA-free run, and equals it at strength 0);
- TorchCompileModel (its ``set_torch_compile_wrapper``; the eager backend and one compiled module keep it
  cheap on a CPU): either order gives the uncompiled result;
- an attention override set by another pack (a SageAttention-style ``optimized_attention_override``): it is
  called on keyframe-only passes too, and a pass-through override changes nothing;
- AsymRnR Token Reduction: either order runs, keyframe-only passes included;
- EasyCache and context windows (WanContextWindowsManual): refused with the node's name (test_dropin.py has
  EasyCache; context windows here).
"""
from __future__ import annotations

import pytest
import torch

from rhymeflow_core.testbed import compositions  # the same patches the drop-in benchmark measures

STEPS = 14
FRAMES = 7
CFG = 4.0


@pytest.fixture(scope="module")
def conds(pack):
    return pack.tb.RhymeFlowTestbedConditioning.execute("astronaut").args


def _accelerate(pack, model):
    return pack.dropin_node.execute(model, preset="paper", target_speedup=1.6, strategy="uniform", budget=3, context_mode="kv", warmup=5,
                                    n_small=2, n_large=3, placement="device", cache_dtype="auto").args[0]


@torch.inference_mode()  # as ComfyUI executes nodes
def _ksampler(model, conds):
    import nodes as comfy_nodes

    latent = {"samples": torch.zeros(1, 16, FRAMES, 16, 16)}
    return comfy_nodes.common_ksampler(model, 0, STEPS, CFG, "uni_pc", "simple", conds[0], conds[1], latent)[0]["samples"]


def _result(pack, model):
    result = pack.glue.holder_of(model).last_result
    assert result is not None and result.keyframe_passes > 0 and result.calls["keyframe"] > 0
    return result


@pytest.mark.parametrize("order", ["lora_then_accelerate", "accelerate_then_lora"])
def test_lora(pack, testbed, conds, order):
    plain = _ksampler(_accelerate(pack, testbed), conds)

    def build(strength):
        return _accelerate(pack, compositions.random_lora(testbed, strength)) if order == "lora_then_accelerate" else \
            compositions.random_lora(_accelerate(pack, testbed), strength)

    zero = build(0.0)
    assert torch.equal(_ksampler(zero, conds), plain)
    model = build(1.0)
    out = _ksampler(model, conds)
    _result(pack, model)  # the holder on the MODEL that went into the sampler has the run
    assert torch.isfinite(out).all() and not torch.equal(out, plain)


@pytest.mark.parametrize("order", ["accelerate_then_compile", "compile_then_accelerate"])
def test_torch_compile_model(pack, testbed, conds, order):
    compiled = compositions.torch_compiled
    reference = _ksampler(_accelerate(pack, testbed), conds)
    model = compiled(_accelerate(pack, testbed)) if order == "accelerate_then_compile" else _accelerate(pack, compiled(testbed))
    torch.testing.assert_close(_ksampler(model, conds), reference)
    _result(pack, model)


def test_attention_override_of_another_pack(pack, testbed, conds):
    seen: list[int] = []
    reference = _ksampler(_accelerate(pack, testbed), conds)
    model = _accelerate(pack, compositions.with_attention_override(testbed, seen))
    out = _ksampler(model, conds)
    assert torch.equal(out, reference)
    result = _result(pack, model)
    per_frame = result.dims.tokens_per_frame  # full passes and keyframe-only passes both went through the override
    assert FRAMES * per_frame in seen and len(result.keyframes) * per_frame in seen


@pytest.mark.parametrize("order", ["asymrnr_then_accelerate", "accelerate_then_asymrnr"])
def test_asymrnr(pack, testbed, conds, order):
    def asym(model, rate):
        return pack.asym.RhymeFlowAsymRnR.execute(model, "uniform", rate, rate, 1.0, "", 0.2, 0, 0).args[0]

    def build(rate):
        return _accelerate(pack, asym(testbed, rate)) if order == "asymrnr_then_accelerate" else asym(_accelerate(pack, testbed), rate)

    plain = _ksampler(_accelerate(pack, testbed), conds)
    assert torch.equal(_ksampler(build(0.0), conds), plain)
    model = build(0.5)
    out = _ksampler(model, conds)
    assert torch.isfinite(out).all() and not torch.equal(out, plain)
    _result(pack, model)


def test_context_windows_are_refused(pack, testbed, conds):
    from comfy_extras.nodes_context_windows import WanContextWindowsManualNode

    windows = WanContextWindowsManualNode.execute(testbed, 4, 1, "standard_static", 1, False, "pyramid", False).args[0]
    with pytest.raises(ValueError, match=r"RhymeFlow Accelerate: the MODEL also has context windows"):
        _ksampler(_accelerate(pack, windows), conds)
