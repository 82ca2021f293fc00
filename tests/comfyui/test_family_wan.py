"""Wan adapter on ComfyUI's own WanModel at tiny random sizes, one case per supported variant.

Each model is a state dict of ComfyUI's ``WanModel`` class loaded back with ``comfy.sd.load_diffusion_model_state_dict``
(what UNETLoader does after reading a file), so ComfyUI's own detection picks the variant: T2V, I2V
(CLIP image tokens, 36 input channels), FLF2V (two images with position embeddings), Wan 2.2 TI2V-5B
(48 channels, per-frame timesteps from the first-frame denoise mask). Wan 2.2 A14B experts are the
T2V/I2V architecture at 14B size, covered by those cases. The checks are ``family_harness.check_adapter``.
"""
from __future__ import annotations

import pytest
import torch

from .family_harness import Inputs, check_adapter, random_state_dict

DIM, LAYERS, FFN, TEXT_DIM, TEXT_LEN = 256, 2, 512, 4096, 6  # ComfyUI detects heads = dim // 128
FRAMES, H, W = 5, 4, 6  # latent; 2x2 patches -> 6 tokens per frame
KEYFRAMES = [0, 3]


def _tiny_state_dict(comfyui, seed: int, **kw) -> dict:
    import comfy.ops

    torch.manual_seed(seed)
    cfg = dict(model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=DIM, ffn_dim=FFN, freq_dim=256, text_dim=TEXT_DIM,
               out_dim=16, num_heads=DIM // 128, num_layers=LAYERS, qk_norm=True, cross_attn_norm=True) | kw
    dm = comfyui.wan.WanModel(operations=comfy.ops.disable_weight_init, **cfg)
    return random_state_dict(dm)


def _load(comfyui, sd: dict):
    patcher = comfyui.sd.load_diffusion_model_state_dict(sd)
    assert patcher is not None, "ComfyUI did not recognise the tiny Wan state dict"
    return patcher


def _inputs(in_dim: int, out_dim: int, seed: int, image_tokens: int = 0, **kwargs) -> Inputs:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, out_dim, FRAMES, H, W, generator=g)
    kw = {"c_crossattn": torch.randn(1, TEXT_LEN, TEXT_DIM, generator=g)} | kwargs
    if in_dim > out_dim:
        kw["c_concat"] = torch.randn(1, in_dim - out_dim, FRAMES, H, W, generator=g)
    return Inputs(x=x, sigma=torch.tensor([0.7]), kwargs=kw, text_tokens=TEXT_LEN + image_tokens)


def test_wan21_t2v(comfyui, pack):
    patcher = _load(comfyui, _tiny_state_dict(comfyui, 0))
    assert type(patcher.model.model_config).__name__ == "WAN21_T2V"
    print(check_adapter(pack, patcher, _inputs(16, 16, 1), KEYFRAMES))


def test_wan21_i2v_clip_tokens_and_concat_channels(comfyui, pack):
    patcher = _load(comfyui, _tiny_state_dict(comfyui, 2, model_type="i2v", in_dim=36))
    assert type(patcher.model.model_config).__name__ == "WAN21_I2V" and patcher.model.diffusion_model.img_emb is not None
    clip = torch.randn(1, 257, 1280, generator=torch.Generator().manual_seed(3))
    print(check_adapter(pack, patcher, _inputs(36, 16, 4, image_tokens=257, clip_fea=clip), KEYFRAMES))


def test_wan21_flf2v_two_images(comfyui, pack):
    patcher = _load(comfyui, _tiny_state_dict(comfyui, 5, model_type="i2v", in_dim=36, flf_pos_embed_token_number=514))
    assert patcher.model.diffusion_model.img_emb.emb_pos is not None
    clip = torch.randn(1, 514, 1280, generator=torch.Generator().manual_seed(6))
    print(check_adapter(pack, patcher, _inputs(36, 16, 7, image_tokens=514, clip_fea=clip), KEYFRAMES))


def test_wan22_ti2v_per_frame_timesteps(comfyui, pack):
    patcher = _load(comfyui, _tiny_state_dict(comfyui, 8, in_dim=48, out_dim=48))
    assert type(patcher.model.model_config).__name__ == "WAN22_T2V"
    mask = torch.ones(1, 48, FRAMES, H, W)
    mask[:, :, 0] = 0.0  # first frame is the conditioning image: timestep 0 there, as Wan22ImageToVideoLatent sets it
    inputs = _inputs(48, 48, 9, denoise_mask=mask)
    print(check_adapter(pack, patcher, inputs, KEYFRAMES, context_modes=("kv",)))


def test_wan22_ti2v_refuses_hidden_context_mode(comfyui, pack):
    patcher = _load(comfyui, _tiny_state_dict(comfyui, 8, in_dim=48, out_dim=48))
    mask = torch.ones(1, 48, FRAMES, H, W)
    mask[:, :, 0] = 0.0
    with pytest.raises(ValueError, match="per-frame timesteps.*use context_mode 'kv'"):
        check_adapter(pack, patcher, _inputs(48, 48, 9, denoise_mask=mask), KEYFRAMES, context_modes=("hidden",))


def test_wan_refuses_time_concat_reference_frames(comfyui, pack):
    patcher = _load(comfyui, _tiny_state_dict(comfyui, 0))
    inputs = _inputs(16, 16, 1, time_dim_concat=torch.randn(1, 16, 1, H, W))
    with pytest.raises(ValueError, match="time_dim_concat.*supported: Wan 2.1 T2V"):
        check_adapter(pack, patcher, inputs, KEYFRAMES, context_modes=("kv",))


# ----------------------------------------------------------------------------------------------- whole runs

def _sample(comfyui, model, sampler, latent, conds, denoise_mask=None):
    import comfy.sample
    import comfy.samplers

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(*conds)
    guider.set_cfg(3.0)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 12).cpu()
    noise = comfy.sample.prepare_noise(latent, 0)
    return guider.sample(noise, latent, sampler, sigmas, denoise_mask=denoise_mask, disable_pbar=True, seed=0)


def _rhymeflow(pack):
    plan = pack.kf_node.execute(strategy="uniform", budget=2, threshold=0.98, manual="", force_first=True,
                                force_last=True).args[0]
    return pack.sampler_node.execute(keyframes=plan, preset="paper", warmup=2, n_small=2, n_large=3,
                                     keyframe_solver="euler", projection="quadratic").args[0]


def _whole_run(comfyui, pack, patcher, latent, conds, denoise_mask=None) -> torch.Tensor:
    """RhymeFlow through ComfyUI's CFGGuider; checks what every run must satisfy and returns the output."""
    import comfy.samplers

    patched = pack.patch_node.execute(patcher, context_mode="kv", placement="device", cache_dtype="auto").args[0]
    euler = comfy.samplers.sampler_object("euler")
    assert torch.equal(_sample(comfyui, patched, euler, latent, conds, denoise_mask),
                       _sample(comfyui, patcher, euler, latent, conds, denoise_mask)), "the patch must be inert outside RhymeFlow"
    out = _sample(comfyui, patched, _rhymeflow(pack), latent, conds, denoise_mask)
    holder = pack.glue.holder_of(patched)
    stats = holder.last_result.to_dict()
    assert out.shape == latent.shape and torch.isfinite(out).all()
    assert holder.run is None and stats["keyframe_passes"] > 0 and len(stats["roles"]) == latent.shape[2]
    assert stats["full_passes"] == stats["schedule"]["warmup"] + sum(1 for s in range(12) if stats["roles"][1][s] == 1)
    ui = pack.stats_node.execute(patched, {"samples": out}).ui["rhymeflow_stats"][0]
    assert 1.0 < ui["flop_speedup"] < 10
    return out


def _text(seed: int):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, TEXT_LEN, TEXT_DIM, generator=g), {}]]


def test_wan21_i2v_whole_run_with_clip_tokens_and_image_latent(comfyui, pack):
    """Conditioning as WanImageToVideo builds it (image latent + mask on channels, CLIP vision tokens)."""
    import types

    patcher = _load(comfyui, _tiny_state_dict(comfyui, 2, model_type="i2v", in_dim=36))
    g = torch.Generator().manual_seed(11)
    image = torch.zeros(1, 16, FRAMES, H, W)
    image[:, :, :1] = torch.randn(1, 16, 1, H, W, generator=g)
    mask = torch.ones(1, 1, FRAMES, H, W)
    mask[:, :, :1] = 0.0
    clip = types.SimpleNamespace(penultimate_hidden_states=torch.randn(1, 257, 1280, generator=g))
    extra = {"concat_latent_image": image, "concat_mask": mask, "clip_vision_output": clip}
    conds = [[[t, dict(d, **extra)] for t, d in _text(s)] for s in (12, 13)]
    _whole_run(comfyui, pack, patcher, torch.zeros(1, 16, FRAMES, H, W), conds)


def test_wan22_ti2v_whole_run_keeps_the_first_frame(comfyui, pack):
    """Wan22ImageToVideoLatent: the image's latent in frame 0 and a noise mask that keeps it (per-frame timesteps)."""
    patcher = _load(comfyui, _tiny_state_dict(comfyui, 8, in_dim=48, out_dim=48))
    latent = torch.zeros(1, 48, FRAMES, H, W)
    latent[:, :, :1] = torch.randn(1, 48, 1, H, W, generator=torch.Generator().manual_seed(14))
    mask = torch.ones(1, 1, FRAMES, H, W)
    mask[:, :, :1] = 0.0
    out = _whole_run(comfyui, pack, patcher, latent, [_text(15), _text(16)], denoise_mask=mask)
    assert torch.allclose(out[:, :, 0], latent[:, :, 0], atol=1e-5), "the conditioning frame must stay the image"


# ----------------------------------------------------------------------------------------------- real sizes

@pytest.mark.parametrize("name, cfg, latent", [
    ("wan2.1-1.3b-480p", dict(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30), (16, 21, 60, 104)),
    ("wan2.1/2.2-14b-720p", dict(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40), (16, 21, 90, 160)),
    ("wan2.2-ti2v-5b-720p", dict(dim=3072, ffn_dim=14336, num_heads=24, num_layers=30, in_dim=48, out_dim=48), (48, 31, 44, 80)),
])
def test_flop_dims_of_the_real_models(comfyui, pack, name, cfg, latent):
    """The README's FLOP-ideal figures use ``FAMILY_DIMS``; the adapter reads the same numbers off ComfyUI's
    real-size WanModel (built on the meta device, the configs of the released checkpoints)."""
    import dataclasses

    import comfy.ops

    from rhymeflow_core.flops import FAMILY_DIMS

    dm = comfyui.wan.WanModel(model_type="t2v", patch_size=(1, 2, 2), text_dim=4096, freq_dim=256, device="meta",
                              operations=comfy.ops.disable_weight_init, **{"in_dim": 16, "out_dim": 16} | cfg)
    adapter = pack.adapters.comfyui_adapter(dm)
    expected, _ = FAMILY_DIMS[name]
    got = adapter.model_dims(dm, torch.empty(1, *latent, device="meta"), expected.text_tokens)
    # asdict: the pack's flops module (imported as ComfyUI imports the pack) is another class object
    assert dataclasses.asdict(got) | {"name": name} == dataclasses.asdict(expected)
