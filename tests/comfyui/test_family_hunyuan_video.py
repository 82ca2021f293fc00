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
def pack(pack_import):
    class Pack:
        glue = pack_import("nodes.glue")
        patch = pack_import("rhymeflow_core.patch")

    return Pack


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
