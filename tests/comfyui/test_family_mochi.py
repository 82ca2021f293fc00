"""Mochi adapter on ComfyUI's own AsymmDiTJoint at tiny random sizes (and its FLOP dims at real size, on meta).

Why the model is not loaded with ``comfy.sd.load_diffusion_model_state_dict``: ComfyUI's Mochi detection
(``model_detection.detect_unet_config``, keyed on ``t5_yproj.weight``) returns the fixed Mochi 1 config
(48 blocks of width 3072) whatever the state dict's shapes, so a tiny state dict cannot load through it.
The test runs that detection on the tiny state dict (it must pick ``supported_models.GenmoMochi``), keeps
every key of the detected config but the sizes, and builds the model as the loader does after detection:
``GenmoMochi(config).get_model(sd)`` plus ``load_model_weights``. Sizes keep Mochi 1's head dim (128);
``hidden_size_x * mlp_ratio_x`` must be 12288 (ComfyUI's block asserts it), hence ``mlp_ratio_x`` 48.
The text is padded past ``num_tokens``, as T5's 256-token output is, so the crop into joint attention is
exercised; the text stream is narrower than the visual one, as in Mochi 1 (1536 vs 3072).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from collections import Counter

import pytest
import torch

from .family_harness import AttentionSpy, Inputs, block_flops, check_adapter, random_state_dict

SIZES = dict(depth=2, num_heads=2, hidden_size_x=256, hidden_size_y=128, mlp_ratio_x=48.0, t5_feat_dim=64)
FRAMES, H, W = 5, 4, 6  # latent; 2x2 patches -> 6 tokens per frame
TEXT_LEN, VALID_TEXT = 8, 5
KEYFRAMES = [0, 3]


def _tiny_state_dict(comfyui, seed: int) -> dict:
    import comfy.ldm.genmo.joint_model.asymm_models_joint as mochi
    import comfy.ops

    torch.manual_seed(seed)
    dm = mochi.AsymmDiTJoint(operations=comfy.ops.disable_weight_init, patch_size=2, in_channels=12, learn_sigma=False,
                             qk_norm=True, qkv_bias=False, out_bias=True, use_t5=True, timestep_scale=1000.0, **SIZES)
    return random_state_dict(dm)


def _load(comfyui, sd: dict):
    """Detection on the tiny state dict, then the detected config with tiny sizes (module docstring)."""
    import comfy.model_detection
    import comfy.model_patcher

    config = comfy.model_detection.model_config_from_unet(sd, "")
    assert type(config).__name__ == "GenmoMochi", type(config).__name__
    config.unet_config.update(SIZES)
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model(sd)
    model.load_model_weights(dict(sd), "")
    loaded = model.diffusion_model.state_dict()
    assert loaded.keys() == sd.keys() and all(torch.equal(loaded[k], v) for k, v in sd.items())
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


@pytest.fixture(scope="module")
def patcher(comfyui):
    return _load(comfyui, _tiny_state_dict(comfyui, 0))


def _inputs(seed: int, batch: int = 1, branches: tuple[int, ...] = (0,)) -> Inputs:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch, TEXT_LEN)
    mask[:, :VALID_TEXT] = 1.0  # T5 padding after the valid tokens; ComfyUI's num_tokens is the valid count
    kw = {"c_crossattn": torch.randn(batch, TEXT_LEN, SIZES["t5_feat_dim"], generator=g), "attention_mask": mask,
          "num_tokens": VALID_TEXT}
    x = torch.randn(batch, 12, FRAMES, H, W, generator=g)
    return Inputs(x=x, sigma=torch.full((batch,), 0.7), kwargs=kw, text_tokens=TEXT_LEN, branches=branches)


def test_mochi_t2v_padded_text(pack, patcher):
    print(check_adapter(pack, patcher, _inputs(1), KEYFRAMES, context_modes=("kv",), text_rows=VALID_TEXT))


def test_mochi_cfg_batch_in_reverse_branch_order(pack, patcher):
    inputs = _inputs(2, batch=2, branches=(1, 0))
    print(check_adapter(pack, patcher, inputs, KEYFRAMES, context_modes=("kv",), text_rows=VALID_TEXT))


def test_mochi_dense_block_flops_match_the_flop_model(pack, patcher):
    """The asymmetric text stream (text_dim, text_ffn_dim) is what makes the absolute count right; the
    residue is per-sample modulation, the last block's text-only K/V and the padded text rows' attention."""
    inputs = _inputs(3)
    adapter = pack.glue.model_adapter(patcher)
    dm = patcher.model.diffusion_model
    measured = block_flops(patcher, inputs, adapter.block_keys(dm))
    dims = adapter.model_dims(dm, inputs.x, inputs.text_tokens)
    predicted = pack.flops.pass_flops(dims, FRAMES)
    print({"measured_dense_block_flops": measured, "model": predicted, "ratio": round(measured / predicted, 4)})
    assert measured / predicted == pytest.approx(1.0, abs=0.01)


def test_mochi_refuses_hidden_context_mode(pack, patcher):
    with pytest.raises(ValueError, match="context_mode='hidden' is not implemented for mochi; accepted: kv"):
        pack.glue.patch_model(patcher, pack.patch.PatchConfig(context_mode="hidden"))


def test_mochi_refuses_a_dit_whose_blocks_were_replaced(pack, patcher):
    adapter = pack.glue.model_adapter(patcher)
    dm = copy.deepcopy(patcher.model.diffusion_model)
    dm.blocks[1] = torch.nn.Identity()
    with pytest.raises(ValueError, match="not a Mochi DiT with asymmetric joint blocks; supported: Mochi 1"):
        adapter.check_model(dm)


# ------------------------------------------------------------------------------ a whole run through ComfyUI's sampling

STEPS = 12
T5_LEN = 256  # ComfyUI's Mochi T5 tokenizer pads every prompt to at least 256 tokens (min_length)
POS_TOKENS, NEG_TOKENS = 7, 1  # valid T5 tokens: a short prompt; the empty negative prompt is its EOS token only


def _t5_conditioning(seed: int, valid: int) -> list:
    """CONDITIONING as CLIPTextEncode gives it for Mochi's T5: no pooled output, the token mask as ``attention_mask``
    (``GenmoMochi.extra_conds`` turns it into the pooling mask and ``num_tokens``)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(1, T5_LEN, dtype=torch.long)
    mask[:, :valid] = 1
    return [[torch.randn(1, T5_LEN, SIZES["t5_feat_dim"], generator=g), {"pooled_output": None, "attention_mask": mask}]]


def _sample(model, sampler, seed: int = 0) -> torch.Tensor:
    """CFG sampling as SamplerCustomAdvanced runs it (Mochi is not guidance-distilled: CFGGuider at Mochi's cfg 4.5)."""
    import comfy.sample
    import comfy.samplers

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(_t5_conditioning(10, POS_TOKENS), _t5_conditioning(11, NEG_TOKENS))
    guider.set_cfg(4.5)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", STEPS).cpu()
    latent = torch.zeros(1, 12, FRAMES, H, W)
    noise = comfy.sample.prepare_noise(latent, seed)
    return guider.sample(noise, latent, sampler, sigmas, disable_pbar=True, seed=seed)


def test_mochi_whole_rhymeflow_run_through_comfyui_sampling(pack, patcher):
    """The nodes as a workflow wires them, inside ComfyUI's CFG sampling: unlike the direct ``apply_model`` calls
    above, the conds go through ``GenmoMochi.extra_conds`` (T5 mask -> pooling mask and ``num_tokens``).

    The negative prompt has another ``num_tokens`` than the positive one, so ComfyUI cannot batch the two
    and each branch runs (and caches its keys/values) on its own. ComfyUI has no Mochi image-to-video, so
    there is no per-frame conditioning variant to run.
    """
    import comfy.samplers

    patched = pack.patch_node.execute(patcher, context_mode="kv", placement="device", cache_dtype="auto").args[0]
    euler = comfy.samplers.sampler_object("euler")
    assert torch.equal(_sample(patched, euler), _sample(patcher, euler)), "the patch must be inert outside RhymeFlow runs"

    plan = pack.kf_node.execute(strategy="uniform", budget=2, threshold=0.98, manual="", force_first=True,
                                force_last=True).args[0]
    sampler = pack.sampler_node.execute(keyframes=plan, preset="paper", warmup=5, n_small=2, n_large=3,
                                        keyframe_solver="euler", projection="linear").args[0]
    spy = AttentionSpy()  # the guider copies option dicts, not objects: the sampling run calls this spy
    patched.model_options["transformer_options"]["optimized_attention_override"] = spy
    out = _sample(patched, sampler)
    assert out.shape == (1, 12, FRAMES, H, W) and torch.isfinite(out).all()

    holder = pack.glue.holder_of(patched)
    assert holder.run is None
    stats = holder.last_result.to_dict()
    expected = pack.schedule.build_step_map(FRAMES, STEPS, pack.schedule.ScheduleConfig.from_dict(stats["schedule"]),
                                            stats["keyframes"])
    assert stats["keyframes"] == [0, FRAMES - 1] and stats["roles"] == expected.roles.tolist()
    assert stats["keyframe_passes"] == expected.keyframe_passes() > 0
    assert stats["full_passes"] == stats["warmup"] + len(expected.groups)
    # what ran: per pass, branch and block one joint attention whose keys cover every frame plus that
    # branch's valid text, and whose queries are all frames (full pass) or the keyframes only
    tpf, keys, depth = (H // 2) * (W // 2), len(stats["keyframes"]), SIZES["depth"]
    assert Counter(spy.shapes) == Counter({
        (frames * tpf + text, FRAMES * tpf + text): passes * depth
        for frames, passes in ((FRAMES, stats["full_passes"]), (keys, stats["keyframe_passes"]))
        for text in (POS_TOKENS, NEG_TOKENS)})

    result = pack.stats_node.execute(patched, {"samples": out})
    flop_speedup = result.ui["rhymeflow_stats"][0]["flop_speedup"]
    print(result.args[1])
    assert math.isfinite(flop_speedup) and flop_speedup > 1


# ------------------------------------------------------------------------------ real size

def test_mochi_real_size_flop_dims_match_family_dims(pack, comfyui):
    """FAMILY_DIMS["mochi1-480p"] was written by hand; here the adapter reads ComfyUI's real Mochi 1 DiT, built on
    the meta device (no memory), including the rounding of the gated FeedForward's hidden width.

    The config is the one ComfyUI's detection returns for Genmo's released Mochi 1 preview checkpoint
    (``mochi_preview_bf16.safetensors``; any state dict with ``t5_yproj.weight`` gets this fixed config).
    ``comfyui_adapter`` also runs the adapter's model check on the real-size DiT.
    The latent is ComfyUI's EmptyMochiLatentVideo at 848x480, 163 frames (FAMILY_DIMS' setting).
    """
    import comfy.model_detection
    import comfy_extras.nodes_mochi

    config = comfy.model_detection.model_config_from_unet({"t5_yproj.weight": torch.empty(1536, 4096, device="meta")}, "")
    assert type(config).__name__ == "GenmoMochi", type(config).__name__
    config.set_inference_dtype(torch.bfloat16, None)
    dit = config.get_model({}, device="meta").diffusion_model
    latent = comfy_extras.nodes_mochi.EmptyMochiLatentVideo.execute(width=848, height=480, length=163).args[0]["samples"]
    dims = pack.adapters.comfyui_adapter(dit).model_dims(dit, latent, dit.t5_token_length)
    expected = pack.flops.FAMILY_DIMS["mochi1-480p"][0]
    assert dataclasses.replace(dims, name=expected.name) == expected, dims
