"""HunyuanVideo adapter on ComfyUI's own HunyuanVideo class at tiny random sizes, one case per supported variant.

Each model is a state dict of ComfyUI's ``HunyuanVideo`` class loaded back with
``comfy.sd.load_diffusion_model_state_dict``, so ComfyUI's own detection picks the config: T2V (pooled CLIP
vector, guidance embedding, text padding mask), I2V v1 (33 channels), SkyReels I2V (32 channels), I2V v2
"replace" (T2V weights plus ``guiding_frame_index``), HunyuanVideo 1.5 and its SR model (ByT5 and vision
tokens in the text stream, 1x1x1 patches, double blocks only). Detection fixes the head dim at 128
(heads = hidden // 128, RoPE axes 16 + 56 + 56), so the tiny models have 2 heads of 128.
The checks are ``family_harness.check_adapter`` (context mode ``kv`` only: the adapter implements no other).
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from .family_harness import Inputs, check_adapter

HIDDEN, CTX_DIM, TEXT_LEN = 256, 64, 8
FRAMES = 5
KEYFRAMES = [0, 3]


def _tiny_state_dict(comfyui, seed: int, **kw) -> dict:
    import comfy.ldm.hunyuan_video.model
    import comfy.ops

    torch.manual_seed(seed)
    cfg = dict(in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=CTX_DIM, hidden_size=HIDDEN, mlp_ratio=4.0,
               num_heads=HIDDEN // 128, depth=2, depth_single_blocks=2, axes_dim=[16, 56, 56], theta=256, patch_size=[1, 2, 2],
               qkv_bias=True, guidance_embed=True, byt5=False, meanflow=False, use_cond_type_embedding=False, vision_in_dim=None,
               meanflow_sum=False) | kw
    dm = comfy.ldm.hunyuan_video.model.HunyuanVideo(operations=comfy.ops.disable_weight_init, **cfg)
    with torch.no_grad():
        for name, p in dm.named_parameters():
            # QK-norm gains near 2 make attention peaked, so RoPE positions and masks visibly matter
            p.copy_(2 + torch.randn_like(p) * 0.5 if name.endswith("norm.scale") else torch.randn_like(p) * 0.05)
    return {k: v.contiguous() for k, v in dm.state_dict().items()}


def _load(comfyui, sd: dict, config: str):
    patcher = comfyui.sd.load_diffusion_model_state_dict(sd)
    assert patcher is not None, "ComfyUI did not recognise the tiny HunyuanVideo state dict"
    assert type(patcher.model.model_config).__name__ == config
    return patcher


def _v1_inputs(seed: int, concat_channels: int = 0, **kwargs) -> Inputs:
    """HunyuanVideo (v1) call: 8x8 latent, 2x2 patches -> 16 tokens per frame; the last 2 text tokens are padding."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(1, TEXT_LEN, dtype=torch.long)
    mask[:, -2:] = 0
    kw = {"c_crossattn": torch.randn(1, TEXT_LEN, CTX_DIM, generator=g), "attention_mask": mask,
          "y": torch.randn(1, 768, generator=g), "guidance": torch.tensor([6.0])} | kwargs
    if concat_channels:
        kw["c_concat"] = torch.randn(1, concat_channels, FRAMES, 8, 8, generator=g)
    return Inputs(x=torch.randn(1, 16, FRAMES, 8, 8, generator=g), sigma=torch.tensor([0.7]), kwargs=kw, text_tokens=TEXT_LEN)


def _check(pack, patcher, inputs: Inputs, keyframes=KEYFRAMES) -> dict:
    return check_adapter(pack, patcher, inputs, keyframes, context_modes=("kv",), text_rows=inputs.text_tokens)


@pytest.fixture(scope="module")
def t2v(comfyui):
    return _load(comfyui, _tiny_state_dict(comfyui, 0), "HunyuanVideo")


def test_hunyuan_video_t2v(t2v, pack):
    print(_check(pack, t2v, _v1_inputs(1)))


def test_t2v_cond_and_uncond_in_one_batch(t2v, pack):
    """CFG branches batched in one call (ComfyUI's text mask only fits batch 1, so none here)."""
    g = torch.Generator().manual_seed(9)
    kw = {"c_crossattn": torch.randn(2, TEXT_LEN, CTX_DIM, generator=g), "y": torch.randn(2, 768, generator=g),
          "guidance": torch.tensor([6.0, 6.0])}
    inputs = Inputs(x=torch.randn(2, 16, FRAMES, 8, 8, generator=g), sigma=torch.tensor([0.7, 0.7]), kwargs=kw,
                    text_tokens=TEXT_LEN, branches=(1, 0))
    print(_check(pack, t2v, inputs))


@pytest.mark.parametrize("in_channels, config", [(33, "HunyuanVideoI2V"), (32, "HunyuanVideoSkyreelsI2V")])
def test_i2v_concat_channels(comfyui, pack, in_channels, config):
    patcher = _load(comfyui, _tiny_state_dict(comfyui, 2, in_channels=in_channels), config)
    print(_check(pack, patcher, _v1_inputs(3, concat_channels=in_channels - 16)))


def test_i2v_v2_replace_first_frame_modulation(t2v, pack):
    """guiding_frame_index gives frame 0's tokens their own modulation (modulation_dims), in blocks and final layer."""
    inputs = _v1_inputs(4, guiding_frame_index=torch.tensor([0.0]))
    assert t2v.model.diffusion_model.vector_in is not None  # the pooled vector joins both modulation vectors
    print(_check(pack, t2v, inputs))


def test_i2v_v2_replace_refuses_keyframes_without_frame_0(t2v, pack):
    inputs = _v1_inputs(4, guiding_frame_index=torch.tensor([0.0]))
    with pytest.raises(ValueError, match="needs frame 0 among the keyframes"):
        _check(pack, t2v, inputs, keyframes=[1, 3])


def test_refuses_reference_latent(t2v, pack):
    inputs = _v1_inputs(5, ref_latent=torch.randn(1, 16, 1, 8, 8))
    with pytest.raises(ValueError, match="ref_latent.*supported: HunyuanVideo T2V"):
        _check(pack, t2v, inputs)


def test_refuses_hidden_context_mode(t2v, pack):
    with pytest.raises(ValueError, match="context_mode='hidden' is not implemented for hunyuan_video; accepted: kv"):
        pack.glue.patch_model(t2v, pack.patch.PatchConfig(context_mode="hidden"))


@pytest.mark.parametrize("in_channels, config", [(65, "HunyuanVideo15"), (98, "HunyuanVideo15_SR_Distilled")])
def test_hunyuan_video_15_byt5_and_vision_tokens(comfyui, pack, in_channels, config):
    sd = _tiny_state_dict(comfyui, 6, in_channels=in_channels, out_channels=32, vec_in_dim=None, guidance_embed=False, byt5=True,
                          use_cond_type_embedding=True, vision_in_dim=1152, patch_size=[1, 1, 1], depth_single_blocks=0)
    patcher = _load(comfyui, sd, config)
    assert not patcher.model.diffusion_model.single_blocks  # HunyuanVideo 1.5 has double-stream blocks only
    g = torch.Generator().manual_seed(7)
    byt5_len, vision_len = 4, 6
    kw = {"c_crossattn": torch.randn(1, TEXT_LEN, CTX_DIM, generator=g), "txt_byt5": torch.randn(1, byt5_len, 1472, generator=g),
          "clip_fea": torch.randn(1, vision_len, 1152, generator=g),
          "c_concat": torch.randn(1, in_channels - 32, FRAMES, 4, 4, generator=g)}
    inputs = Inputs(x=torch.randn(1, 32, FRAMES, 4, 4, generator=g), sigma=torch.tensor([0.7]), kwargs=kw,
                    text_tokens=TEXT_LEN + byt5_len + vision_len)
    print(_check(pack, patcher, inputs))


def test_refuses_hunyuan_image_21(comfyui, pack):
    sd = _tiny_state_dict(comfyui, 8, in_channels=64, out_channels=64, vec_in_dim=None, patch_size=[1, 1], axes_dim=[64, 64])
    patcher = _load(comfyui, sd, "HunyuanImage21")
    with pytest.raises(ValueError, match=r"patch size \[1, 1\].*HunyuanImage 2.1"):
        pack.glue.patch_model(patcher, pack.patch.PatchConfig())


# ----------------------------------------------------------------------------------------------- whole runs

STEPS = 12  # shift 7 (HunyuanVideo's default): the paper preset warms up for the 4 steps with sigma >= 0.945


class _StubVAE:
    """Stands in for the HunyuanVideo VAE (16 channels, 4x8x8): HunyuanImageToVideo only calls ``encode``."""

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        n, h, w, _ = pixels.shape
        return torch.randn(1, 16, (n - 1) // 4 + 1, h // 8, w // 8, generator=torch.Generator().manual_seed(11))


def _text_conditioning(seed: int) -> list:
    """CONDITIONING as ComfyUI's HunyuanVideo text encoder returns it (LLaMA tokens, clip_l ``pooled_output``, the
    padding ``attention_mask`` it keeps when some tokens are padding), then FluxGuidance's distilled guidance."""
    from comfy_extras.nodes_flux import FluxGuidance

    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(1, TEXT_LEN, dtype=torch.long)
    mask[:, -2:] = 0
    cond = [[torch.randn(1, TEXT_LEN, CTX_DIM, generator=g), {"pooled_output": torch.randn(1, 768, generator=g), "attention_mask": mask}]]
    return FluxGuidance.execute(cond, 6.0).args[0]


def _guided_sample(model, positive, sampler, latent: dict, seed: int = 0) -> torch.Tensor:
    """What SamplerCustomAdvanced does with BasicGuider (guidance-distilled: no negative) and ``simple`` sigmas."""
    import comfy.sample
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import BasicGuider

    guider = BasicGuider.execute(model, positive).args[0]
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", STEPS).cpu()
    noise = comfy.sample.prepare_noise(latent["samples"], seed)
    return guider.sample(noise, latent["samples"], sampler, sigmas, denoise_mask=latent.get("noise_mask"), disable_pbar=True,
                         seed=seed)


@pytest.mark.parametrize("variant", ["t2v", "v1 (concat)", "v2 (replace)"])
def test_whole_rhymeflow_run_through_comfyui_sampling(comfyui, pack, t2v, variant):
    """The nodes as a workflow wires them (Projection Patch -> BasicGuider -> SamplerCustomAdvanced with the Async
    Sampler -> Stats) on T2V and both image-to-video modes of HunyuanImageToVideo (v1: concatenated image latent and
    mask, a 33-channel model; v2: image latent as frame 0 under a denoise mask, plus guiding_frame_index)."""
    import comfy.patcher_extension
    import comfy.samplers
    from comfy_extras.nodes_hunyuan import EmptyHunyuanLatentVideo, HunyuanImageToVideo

    model = _load(comfyui, _tiny_state_dict(comfyui, 2, in_channels=33), "HunyuanVideoI2V") if variant == "v1 (concat)" else t2v
    positive = _text_conditioning(12)
    if variant == "t2v":
        latent = EmptyHunyuanLatentVideo.execute(64, 64, 17).args[0]
    else:
        positive, latent = HunyuanImageToVideo.execute(positive, _StubVAE(), 64, 64, 17, 1, variant,
                                                       start_image=torch.rand(1, 64, 64, 3)).args
    assert latent["samples"].shape == (1, 16, FRAMES, 8, 8)
    patched = pack.patch_node.execute(model, "kv", "device", "auto").args[0]
    holder = pack.glue.holder_of(patched)
    plan = pack.kf_node.execute("uniform", 2, 0.98, "", True, True).args[0]
    rf = pack.sampler_node.execute(plan, "paper", 5, 2, 3, "euler", "linear").args[0]

    frames_per_call = []

    def count_frames(executor, x, *args, **kwargs):
        frames_per_call.append(x.shape[2])
        return executor(x, *args, **kwargs)

    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test", count_frames)
    out = _guided_sample(patched, positive, rf, latent)
    assert out.shape == latent["samples"].shape and torch.isfinite(out).all()
    assert holder.run is None
    stats = holder.last_result.to_dict()
    roles = torch.tensor(stats["roles"])
    assert roles.shape == (FRAMES, STEPS) and stats["keyframes"] == [0, FRAMES - 1]
    syncs = [i for i, _ in pack.schedule.sync_groups(STEPS, pack.schedule.ScheduleConfig.from_dict(stats["schedule"]))]
    assert stats["warmup"] == 4 and (roles[:, syncs] == pack.schedule.ROLE_SYNC).all()
    assert stats["full_passes"] == stats["warmup"] + len(syncs) and stats["keyframe_passes"] > 0
    # the DiT really ran those passes: every frame on full passes, the 2 keyframes on keyframe-only passes
    assert sorted(frames_per_call) == [2] * stats["keyframe_passes"] + [FRAMES] * stats["full_passes"]
    if variant == "v2 (replace)":  # frame 0 is the image under the denoise mask, kept through the run
        image = _StubVAE().encode(torch.zeros(1, 64, 64, 3))  # the stub's latent does not depend on the pixels
        assert (out[:, :, :1] - image).abs().max() < 1e-4

    euler = comfy.samplers.sampler_object("euler")  # after the RhymeFlow run, on the same patched MODEL
    assert torch.equal(_guided_sample(patched, positive, euler, latent), _guided_sample(model, positive, euler, latent))

    ui = pack.stats_node.execute(patched, {"samples": out}).ui["rhymeflow_stats"][0]
    assert math.isfinite(ui["flop_speedup"]) and ui["flop_speedup"] > 1.0
    print(variant, {k: stats[k] for k in ("full_passes", "keyframe_passes", "keyframes")}, "flop_speedup", ui["flop_speedup"])


# ----------------------------------------------------------------------------------------------- real size

def test_real_size_dims_match_family_dims(comfyui, pack):
    """FAMILY_DIMS["hunyuan_video-720p"] was written by hand; here it is read off ComfyUI's real-size model (on meta)."""
    import comfy.model_detection

    # What detect_unet_config reads from hunyuan_video_t2v_720p_bf16.safetensors, i.e. tencent/HunyuanVideo's
    # "HYVideo-T/2-cfgdistill" (20 double + 40 single blocks, hidden 3072, 24 heads, mlp ratio 4, guidance embedding,
    # 4096-wide LLaMA text, clip_l pooled vector, 16 latent channels, patch 1x2x2).
    cfg = dict(image_model="hunyuan_video", in_channels=16, patch_size=[1, 2, 2], out_channels=16, vec_in_dim=768,
               axes_dim=[16, 56, 56], meanflow=False, context_in_dim=4096, hidden_size=3072, mlp_ratio=4.0, num_heads=24, depth=20,
               depth_single_blocks=40, theta=256, qkv_bias=True, byt5=False, guidance_embed=True, use_cond_type_embedding=False,
               vision_in_dim=None, meanflow_sum=False)
    model_config = comfy.model_detection.model_config_from_unet_config(cfg)
    assert type(model_config) is comfyui.supported_models.HunyuanVideo
    model = model_config.get_model({}, device="meta")
    dit = model.diffusion_model
    assert comfy.model_detection.detect_unet_config(dit.state_dict(), "") == cfg  # detection gives back this config
    expected, shift = pack.flops.FAMILY_DIMS["hunyuan_video-720p"]
    assert model.model_sampling.shift == shift
    x = torch.empty(1, 16, 33, 90, 160, device="meta")  # 1280x720, 129 frames through the 4x8x8 VAE
    dims = pack.adapters.comfyui_adapter(dit).model_dims(dit, x, expected.text_tokens)  # text length is the prompt's, not the model's
    assert dataclasses.replace(dims, name=expected.name) == expected
