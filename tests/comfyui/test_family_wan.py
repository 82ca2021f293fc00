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

from .family_harness import Inputs, check_adapter

DIM, LAYERS, FFN, TEXT_DIM, TEXT_LEN = 256, 2, 512, 4096, 6  # ComfyUI detects heads = dim // 128
FRAMES, H, W = 5, 4, 6  # latent; 2x2 patches -> 6 tokens per frame
KEYFRAMES = [0, 3]


def _tiny_state_dict(comfyui, seed: int, **kw) -> dict:
    import comfy.ops

    torch.manual_seed(seed)
    cfg = dict(model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=DIM, ffn_dim=FFN, freq_dim=256, text_dim=TEXT_DIM,
               out_dim=16, num_heads=DIM // 128, num_layers=LAYERS, qk_norm=True, cross_attn_norm=True) | kw
    dm = comfyui.wan.WanModel(operations=comfy.ops.disable_weight_init, **cfg)
    with torch.no_grad():
        for p in dm.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return {k: v.contiguous() for k, v in dm.state_dict().items()}


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


@pytest.fixture(scope="module")
def pack(pack_import):
    class Pack:
        glue = pack_import("nodes.glue")
        patch = pack_import("rhymeflow_core.patch")

    return Pack


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
