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
"""
from __future__ import annotations

import json

import pytest
import torch

from .family_harness import Inputs, check_adapter

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
    with torch.no_grad():
        for p in dm.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return {k: v.contiguous() for k, v in dm.state_dict().items()}


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


@pytest.fixture(scope="module")
def pack(pack_import):
    class Pack:
        glue = pack_import("nodes.glue")
        patch = pack_import("rhymeflow_core.patch")

    return Pack


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
