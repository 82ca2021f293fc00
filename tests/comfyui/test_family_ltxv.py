"""LTX-Video adapter on ComfyUI's own LTXVModel at tiny random sizes, one case per supported variant.

Each model is a state dict of ComfyUI's ``LTXVModel`` loaded back with ``comfy.sd.load_diffusion_model_state_dict``
(what UNETLoader does), so ComfyUI's detection picks ``supported_models.LTXV``. Detection fixes 32 heads
(head dim = ``attn2.to_k`` rows // 32), 128 latent channels and 4096 caption channels, so the tiny model
is 32 heads x 8 = 256 wide. LTX-Video 0.9.x checkpoints carry their transformer config in the file's
metadata (causal first-frame RoPE fix, RoPE layout); the second case passes such metadata so the split
RoPE layout and the causal fix are covered too. Image-to-video is the first-frame denoise mask of
``LTXVImgToVideo`` as the sampler hands it to ``apply_model`` (``[B, C, F, H, W]``), which
``process_timestep`` turns into per-token timesteps. LTX-2 (``LTXAVModel``) is built through
``supported_models.LTXAV(unet_config).get_model({})`` because detection would size its audio stream at
full width (only the video stream's sizes are read from the state dict); it only has to be refused.

The whole-run tests drive the RhymeFlow nodes through ComfyUI's CFGGuider with conditioning built by ComfyUI's
LTX nodes; the real-size test sizes the released checkpoints' models on the meta device against ``FAMILY_DIMS``.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from .family_harness import Inputs, check_adapter, random_state_dict

HEAD_DIM, LAYERS, CHANNELS, CAPTION, TEXT_LEN = 8, 2, 128, 4096, 7  # detection: 32 heads, 128 channels, 4096 caption dims
FRAMES, H, W = 5, 3, 4  # latent; patch size 1 -> 12 tokens per frame
KEYFRAMES = [0, 3]
SPLIT_ROPE = {"config": json.dumps({"transformer": {"rope_type": "split", "causal_temporal_positioning": True}})}


def _tiny_state_dict(seed: int) -> dict:
    import comfy.ldm.lightricks.model
    import comfy.ops

    torch.manual_seed(seed)
    dm = comfy.ldm.lightricks.model.LTXVModel(in_channels=CHANNELS, cross_attention_dim=32 * HEAD_DIM, attention_head_dim=HEAD_DIM,
                                              num_attention_heads=32, caption_channels=CAPTION, num_layers=LAYERS,
                                              operations=comfy.ops.disable_weight_init)
    return random_state_dict(dm)


def _load(comfyui, seed: int, metadata: dict | None = None):
    patcher = comfyui.sd.load_diffusion_model_state_dict(_tiny_state_dict(seed), metadata=metadata)
    assert patcher is not None, "ComfyUI did not recognise the tiny LTX-Video state dict"
    assert type(patcher.model.model_config).__name__ == "LTXV"
    assert type(patcher.model.diffusion_model).__name__ == "LTXVModel"
    return patcher


def _inputs(seed: int, **kwargs) -> Inputs:
    g = torch.Generator().manual_seed(seed)
    kw = {"c_crossattn": torch.randn(1, TEXT_LEN, CAPTION, generator=g), "attention_mask": _text_mask(1), "frame_rate": 24} | kwargs
    return Inputs(x=torch.randn(1, CHANNELS, FRAMES, H, W, generator=g), sigma=torch.tensor([0.7]), kwargs=kw, text_tokens=TEXT_LEN)


def _text_mask(batch: int) -> torch.Tensor:
    """The text encoder's padding mask (LTXVModel.forward requires one): the last two tokens are padding."""
    mask = torch.ones(batch, TEXT_LEN, dtype=torch.long)
    mask[:, -2:] = 0
    return mask


def _first_frame_mask(strength: float = 1.0) -> torch.Tensor:
    """LTXVImgToVideo's noise mask ``[1, 1, F, 1, 1]`` (first frame 1 - strength) as the sampler prepares it for the model."""
    import comfy.sampler_helpers

    mask = torch.ones(1, 1, FRAMES, 1, 1)
    mask[:, :, 0] = 1.0 - strength
    return comfy.sampler_helpers.prepare_mask(mask, (1, CHANNELS, FRAMES, H, W), torch.device("cpu"))


def test_ltxv_t2v(comfyui, pack):
    patcher = _load(comfyui, 0)
    assert not patcher.model.diffusion_model.causal_temporal_positioning
    print(check_adapter(pack, patcher, _inputs(1), KEYFRAMES))


def test_ltxv_t2v_split_rope_causal_fix_batched_cfg(comfyui, pack):
    patcher = _load(comfyui, 2, SPLIT_ROPE)
    dm = patcher.model.diffusion_model
    assert dm.split_positional_embedding == "split" and dm.causal_temporal_positioning
    g = torch.Generator().manual_seed(3)
    inputs = Inputs(x=torch.randn(2, CHANNELS, FRAMES, H, W, generator=g), sigma=torch.tensor([0.4, 0.4]),
                    kwargs={"c_crossattn": torch.randn(2, TEXT_LEN, CAPTION, generator=g),
                            "attention_mask": _text_mask(2), "frame_rate": 30},
                    text_tokens=TEXT_LEN, branches=(1, 0))
    print(check_adapter(pack, patcher, inputs, KEYFRAMES))


def test_ltxv_i2v_first_frame_denoise_mask(comfyui, pack):
    patcher = _load(comfyui, 4)
    inputs = _inputs(5, denoise_mask=_first_frame_mask())
    # the mask really gives per-token timesteps: the image frame's tokens differ from the others'
    t = patcher.model.process_timestep(torch.tensor([700.0]), x=inputs.x, denoise_mask=inputs.kwargs["denoise_mask"])
    assert t.shape == (1, FRAMES * H * W, 1) and t[0, : H * W].eq(0).all() and t[0, H * W:].eq(700).all()
    print(check_adapter(pack, patcher, inputs, KEYFRAMES, context_modes=("kv",)))


def test_ltxv_i2v_keyframes_without_the_image_frame(comfyui, pack):
    patcher = _load(comfyui, 6, SPLIT_ROPE)
    print(check_adapter(pack, patcher, _inputs(7, denoise_mask=_first_frame_mask(0.8)), [1, 4], context_modes=("kv",)))


def test_ltxv_i2v_refuses_hidden_context_mode(comfyui, pack):
    patcher = _load(comfyui, 4)
    with pytest.raises(ValueError, match="per-token timesteps.*use context_mode 'kv'"):
        check_adapter(pack, patcher, _inputs(5, denoise_mask=_first_frame_mask()), KEYFRAMES, context_modes=("hidden",))


def test_ltxv_refuses_appended_guide_frames(comfyui, pack):
    from comfy.ldm.lightricks.symmetric_patchifier import SymmetricPatchifier, latent_to_pixel_coords

    patcher = _load(comfyui, 0)
    g = torch.Generator().manual_seed(8)
    guide = torch.randn(1, CHANNELS, 1, H, W, generator=g)  # LTXVAddGuide: one guide latent frame appended to the video
    coords = latent_to_pixel_coords(SymmetricPatchifier(1, start_end=True).patchify(guide)[1], (8, 32, 32))
    inputs = _inputs(9, denoise_mask=torch.ones(1, CHANNELS, FRAMES + 1, H, W), keyframe_idxs=coords)
    inputs.x = torch.cat([inputs.x, guide], dim=2)
    with pytest.raises(ValueError, match="LTXVAddGuide, keyframe_idxs.*supported: LTX-Video"):
        check_adapter(pack, patcher, inputs, KEYFRAMES, context_modes=("kv",))


def test_ltx2_audio_video_model_is_refused(comfyui, pack):
    import comfy.model_patcher

    cfg = {"image_model": "ltxav", "num_layers": 1, "attention_head_dim": 2, "num_attention_heads": 4, "cross_attention_dim": 8,
           "caption_channels": 16, "audio_attention_head_dim": 2, "audio_num_attention_heads": 4, "audio_cross_attention_dim": 8}
    model = comfyui.supported_models.LTXAV(cfg).get_model({})
    assert type(model.diffusion_model).__name__ == "LTXAVModel"
    patcher = comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(ValueError, match=r"model LTXAVModel is not supported; supported: .*not .*LTX-2 audio-video \(LTXAVModel\)"):
        pack.glue.patch_model(patcher, pack.patch.PatchConfig())


# ----------------------------------------------------------------------------------------------- whole runs

STEPS = 12
PIXELS = dict(width=32 * W, height=32 * H, length=8 * (FRAMES - 1) + 1)  # LTX VAE 8x32x32 -> the FRAMES x H x W latent


def _conditioning(seed: int):
    """CLIPTextEncode's output for LTX-Video's T5-XXL (cond, pooled_output None, attention_mask), through LTXVConditioning."""
    from comfy_extras.nodes_lt import LTXVConditioning

    g = torch.Generator().manual_seed(seed)
    pos, neg = ([[torch.randn(1, TEXT_LEN, CAPTION, generator=g), {"pooled_output": None, "attention_mask": _text_mask(1)}]]
                for _ in range(2))
    return LTXVConditioning.execute(pos, neg, frame_rate=24.0).args


def _sample(model, sampler, latent: dict, conds) -> torch.Tensor:
    """What SamplerCustomAdvanced does with a CFGGuider: the latent's noise_mask becomes the denoise mask."""
    import comfy.sample
    import comfy.samplers

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(*conds)
    guider.set_cfg(3.0)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", STEPS).cpu()
    noise = comfy.sample.prepare_noise(latent["samples"], 0)
    return guider.sample(noise, latent["samples"], sampler, sigmas, denoise_mask=latent.get("noise_mask"), disable_pbar=True, seed=0)


def _whole_run(pack, patcher, latent: dict, conds, context_mode: str, strategy: str, budget: int) -> torch.Tensor:
    """RhymeFlow nodes around ComfyUI's CFGGuider; checks what every run must satisfy and returns its output."""
    import comfy.samplers

    patched = pack.patch_node.execute(patcher, context_mode=context_mode, placement="device", cache_dtype="auto").args[0]
    euler = comfy.samplers.sampler_object("euler")
    assert torch.equal(_sample(patched, euler, latent, conds), _sample(patcher, euler, latent, conds)), \
        "the patch must be inert outside RhymeFlow runs"
    plan = pack.kf_node.execute(strategy=strategy, budget=budget, threshold=0.98, manual="", force_first=True, force_last=True).args[0]
    sampler = pack.sampler_node.execute(keyframes=plan, preset="paper", warmup=5, n_small=2, n_large=3, keyframe_solver="euler",
                                    projection="quadratic").args[0]
    out = _sample(patched, sampler, latent, conds)
    assert out.shape == latent["samples"].shape
    assert torch.isfinite(out).all()
    holder = pack.glue.holder_of(patched)
    assert holder.run is None, "run state must not outlive the run"
    stats = holder.last_result.to_dict()
    sigmas = comfy.samplers.calculate_sigmas(patcher.get_model_object("model_sampling"), "simple", STEPS)
    cfg = pack.presets.preset_schedule("paper", sigmas, "ltxv")
    expected = pack.schedule.build_step_map(FRAMES, STEPS, cfg, stats["keyframes"])
    assert stats["keyframe_passes"] > 0 and stats["full_passes"] == cfg.warmup + len(expected.groups)
    assert torch.equal(torch.tensor(stats["roles"], dtype=torch.uint8), expected.roles), stats["roles"]
    speedup = pack.stats_node.execute(patched, {"samples": out}).ui["rhymeflow_stats"][0]["flop_speedup"]
    assert math.isfinite(speedup) and speedup > 1.0
    return out


@pytest.mark.parametrize("context_mode", ["kv", "hidden"])
def test_ltxv_t2v_whole_run(comfyui, pack, context_mode):
    """Text-to-video through ComfyUI's sampling: EmptyLTXVLatentVideo, T5 conds with frame_rate and attention mask."""
    from comfy_extras.nodes_lt import EmptyLTXVLatentVideo

    latent = EmptyLTXVLatentVideo.execute(**PIXELS, batch_size=1).args[0]
    _whole_run(pack, _load(comfyui, 10), latent, _conditioning(11), context_mode, "uniform", 2)


def test_ltxv_i2v_whole_run_keeps_the_image_frame(comfyui, pack):
    """Image-to-video with ComfyUI's own LTXVImgToVideo: its latent and first-frame noise_mask, per-token timesteps.

    The node (like LTXVImgToVideoInplace) needs a VAE only for ``vae.encode(image)``; a stand-in returns a fixed
    one-frame latent, so the latent and mask are the node's own. Semantic keyframes: budget 3 leaves one to choose.
    """
    import types

    from comfy_extras.nodes_lt import LTXVImgToVideo

    image_latent = torch.randn(1, CHANNELS, 1, H, W, generator=torch.Generator().manual_seed(12))
    vae = types.SimpleNamespace(encode=lambda pixels: image_latent.clone())
    image = torch.rand(1, PIXELS["height"], PIXELS["width"], 3, generator=torch.Generator().manual_seed(13))
    pos, neg, latent = LTXVImgToVideo.execute(*_conditioning(14), image, vae, **PIXELS, batch_size=1, strength=1.0).args
    assert latent["noise_mask"].flatten().tolist() == [0.0] + [1.0] * (FRAMES - 1)
    out = _whole_run(pack, _load(comfyui, 15, SPLIT_ROPE), latent, (pos, neg), "kv", "semantic", 3)
    assert torch.allclose(out[:, :, :1], image_latent, atol=1e-5), "the image frame must come out as the image's latent"


# ----------------------------------------------------------------------------------------------- real sizes

@pytest.mark.parametrize("name, layers, width", [("ltxv-2b-768x512", 28, 2048), ("ltxv-13b-768x512", 48, 4096)])
def test_flop_dims_of_the_real_models(comfyui, pack, name, layers, width):
    """The README's FLOP-ideal figures use ``FAMILY_DIMS``; the adapter must read the same numbers off ComfyUI's
    real-size model. ComfyUI sizes LTXVModel from the checkpoint's keys alone (block count; ``attn2.to_k`` is
    ``[32 heads x head dim, cross_attention_dim]``), so detection runs on those keys of the released checkpoints
    (meta tensors): LTX-Video 2B 0.9.x (28 blocks, 2048 wide; ComfyUI's and diffusers' LTXV defaults) and 13B
    0.9.7/0.9.8 (48 blocks, 4096 wide; its transformer config). 768x512, 121 frames: latent 16 x 16 x 24; text
    tokens are what ComfyUI's LTXV T5 tokenizer gives a short prompt (padded to 128)."""
    import dataclasses

    import comfy.model_detection
    import comfy.text_encoders.lt
    import comfy.samplers

    meta = {"adaln_single.emb.timestep_embedder.linear_1.bias": torch.empty(width, device="meta"),
            "transformer_blocks.0.attn2.to_k.weight": torch.empty(width, width, device="meta")}
    meta |= {f"transformer_blocks.{i}.attn1.to_q.weight": torch.empty(width, width, device="meta") for i in range(layers)}
    config = comfy.model_detection.model_config_from_unet(meta, "")
    dm = config.get_model(meta, device="meta").diffusion_model
    assert type(dm).__name__ == "LTXVModel" and next(dm.parameters()).is_meta
    text_tokens = len(comfy.text_encoders.lt.LTXVT5Tokenizer().tokenize_with_weights("a red fox in the snow")["t5xxl"][0])
    got = pack.adapters.comfyui_adapter(dm).model_dims(dm, torch.empty(1, 128, 16, 16, 24, device="meta"), text_tokens)
    expected, shift = pack.flops.FAMILY_DIMS[name]
    assert dataclasses.replace(got, name=name) == expected
    # LTX samples Flux-style (ComfyUI's 2.37 is mu): FAMILY_DIMS' shift must give ComfyUI's own simple-scheduler sigmas
    # (to the 1000-step table's resolution; ComfyUI's Flux table has 10000 steps, which moves the last sigmas by < 0.004)
    from rhymeflow_core.flow import simple_sigmas

    comfy_sigmas = comfy.samplers.calculate_sigmas(config.get_model(meta, device="meta").model_sampling, "simple", 30).cpu()
    assert torch.allclose(simple_sigmas(30, shift), comfy_sigmas.float(), atol=5e-3), "FAMILY_DIMS' shift is not LTX's schedule"
