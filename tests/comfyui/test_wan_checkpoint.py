"""The test-bed Wan checkpoint is a real Wan 2.1 T2V model to ComfyUI, and ComfyUI's WanModel computes
exactly what the reference ``rhymeflow_core.testbed.wan_dit.WanModel`` computes, hooks included.

Only ComfyUI's public loading path is used: ``comfy.sd.load_diffusion_model`` (what UNETLoader calls).
The reference is called as ``ref(x, timestep, context, transformer_options=...)``: positional
(x, timestep, context) and the keyword, nothing else, so signature changes after ``context`` don't matter.
"""
from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from rhymeflow_core.testbed import model_io
from rhymeflow_core.testbed.train import TRAIN_CONFIG as TRAINED_CONFIG  # the shipped checkpoint's config
from rhymeflow_core.testbed.wan_dit import WanConfig, WanModel

SIGMAS = (0.05, 0.5, 0.95)
SHAPES = [(1, 16, 16), (5, 16, 16), (13, 16, 16), (5, 14, 18), (3, 15, 17)]  # (T, H, W) latent; 15x17 pads
BATCH, TEXT_LEN, TEXT_DIM = 2, 8, 4096
RTOL = 1e-4  # max |comfy - ref| <= RTOL * max(1, max |ref|); observed ~1e-6 in fp32


# ----------------------------------------------------------------------------------------------- helpers

def _reference(cfg: WanConfig = TRAINED_CONFIG, seed: int = 0) -> WanModel:
    torch.manual_seed(seed)
    return WanModel(cfg).eval().requires_grad_(False)


def _save(model: WanModel, path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    sd = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(path))
    return sd


def _load_comfy(comfyui, path):
    """ComfyUI's ModelPatcher for ``path`` with UNETLoader's default options."""
    return comfyui.sd.load_diffusion_model(str(path))


def _assert_wan21_t2v(comfyui, patcher, cfg: WanConfig) -> None:
    base = patcher.model
    assert type(base.model_config) is comfyui.supported_models.WAN21_T2V, type(base.model_config)
    dm = base.diffusion_model
    assert isinstance(dm, comfyui.wan.WanModel), type(dm)
    assert type(dm) is comfyui.wan.WanModel, f"a Wan variant was picked instead of plain T2V: {type(dm)}"
    assert dm.model_type == "t2v"
    assert (dm.dim, dm.ffn_dim, dm.num_layers, dm.num_heads) == (cfg.dim, cfg.ffn_dim, cfg.num_layers, cfg.num_heads)
    assert (dm.in_dim, dm.out_dim, dm.text_dim, dm.freq_dim) == (cfg.in_dim, cfg.out_dim, cfg.text_dim, cfg.freq_dim)
    assert tuple(dm.patch_size) == tuple(cfg.patch_size)
    assert dm.cross_attn_norm and dm.qk_norm and dm.img_emb is None and dm.ref_conv is None


def _assert_same_weights(dm: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    """ComfyUI kept every tensor of the file (no key left over or missing) with the stored values."""
    got = dm.state_dict()
    assert set(got) == set(expected), f"missing {set(expected) - set(got)}, extra {set(got) - set(expected)}"
    for k, v in expected.items():
        assert torch.equal(got[k].float(), v.float()), k


def _inputs(shape, sigma, seed: int, sigmas=None):
    t, h, w = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, TRAINED_CONFIG.in_dim, t, h, w, generator=g)
    context = torch.randn(BATCH, TEXT_LEN, TEXT_DIM, generator=g)
    timestep = torch.tensor(sigmas if sigmas is not None else [sigma] * BATCH, dtype=torch.float32) * 1000
    return x, timestep, context


def _assert_close(got: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    assert torch.isfinite(ref).all(), what
    err = (got.float() - ref.float()).abs().max().item()
    scale = max(1.0, ref.abs().max().item())
    assert err <= RTOL * scale, f"{what}: max |comfy - ref| = {err:.3g} > {RTOL} * {scale:.3g}"


def _both(dm, ref, x, timestep, context, make_options=dict):
    """Run ComfyUI's and the reference forward, each with a fresh ``transformer_options``."""
    with torch.no_grad():
        got = dm(x, timestep, context, transformer_options=make_options())
        want = ref(x, timestep, context, transformer_options=make_options())
    return got, want


# ----------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def random_fp32(comfyui, tmp_path_factory):
    """(reference, ComfyUI patcher, state dict) for a random reference model saved in fp32."""
    ref = _reference()
    path = tmp_path_factory.mktemp("wan") / "random_fp32.safetensors"
    sd = _save(ref, path, torch.float32)
    return ref, _load_comfy(comfyui, path), sd


@pytest.fixture(scope="module")
def trained(comfyui):
    """(reference via model_io.load_model(), ComfyUI patcher, card config) for the shipped checkpoint."""
    path = model_io.checkpoint_path()
    if not path.exists():
        pytest.skip(f"trained test-bed checkpoint {path} not present yet (python -m rhymeflow_core.testbed.train)")
    ref = model_io.load_model()
    return ref, _load_comfy(comfyui, path), ref.cfg


# ----------------------------------------------------------------------------------------------- 1. loading

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_reference_checkpoint_loads_as_wan21_t2v(comfyui, tmp_path, dtype, caplog):
    ref = _reference(seed=1)
    path = tmp_path / f"ref_{str(dtype).split('.')[-1]}.safetensors"
    sd = _save(ref, path, dtype)
    with caplog.at_level(logging.INFO):
        patcher = _load_comfy(comfyui, path)
    assert "left over keys" not in caplog.text.lower()
    _assert_wan21_t2v(comfyui, patcher, TRAINED_CONFIG)
    dm = patcher.model.diffusion_model
    _assert_same_weights(dm, sd)
    # on CPU ComfyUI runs an fp16 file in fp32; the reference run on the same rounded weights must agree
    assert patcher.model.get_dtype() == torch.float32
    if dtype is torch.float16:
        ref.load_state_dict({k: v.float() for k, v in sd.items()})
        x, timestep, context = _inputs((5, 16, 16), 0.5, seed=11)
        _assert_close(*_both(dm, ref, x, timestep, context), "fp16 checkpoint")


def test_model_sampling_is_flow(comfyui, random_fp32):
    _, patcher, _ = random_fp32
    ms = patcher.get_model_object("model_sampling")
    assert isinstance(ms, comfyui.model_sampling.CONST)
    assert isinstance(ms, comfyui.model_sampling.ModelSamplingDiscreteFlow)
    assert patcher.model.model_type.name == "FLOW"
    # WAN21_T2V's default shift; the test bed is sampled at model_io.SAMPLE_SHIFT (ModelSamplingSD3)
    assert ms.shift == pytest.approx(8.0)
    assert ms.multiplier == pytest.approx(1000.0)
    assert model_io.SAMPLE_SHIFT != ms.shift, "workflows must set the shift explicitly (ModelSamplingSD3)"


# ----------------------------------------------------------------------------------------------- 2. forward

@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_matches_reference(random_fp32, shape):
    ref, patcher, _ = random_fp32
    dm = patcher.model.diffusion_model
    for i, sigma in enumerate(SIGMAS):
        x, timestep, context = _inputs(shape, sigma, seed=100 + i)
        _assert_close(*_both(dm, ref, x, timestep, context), f"shape {shape} sigma {sigma}")


def test_forward_matches_reference_per_sample_timesteps(random_fp32):
    ref, patcher, _ = random_fp32
    x, timestep, context = _inputs((5, 16, 16), None, seed=7, sigmas=[0.05, 0.95])
    _assert_close(*_both(patcher.model.diffusion_model, ref, x, timestep, context), "mixed timesteps")


def test_apply_model_uses_sigma_times_1000(random_fp32):
    """Through ComfyUI's BaseModel.apply_model (what samplers call): denoised = x - sigma * ref(x, 1000 sigma, ctx)."""
    ref, patcher, _ = random_fp32
    sigma = torch.tensor([0.3, 0.8])
    x, timestep, context = _inputs((3, 16, 16), None, seed=9, sigmas=sigma.tolist())
    with torch.no_grad():
        denoised = patcher.model.apply_model(x, sigma, c_crossattn=context, transformer_options={})
        want = x - sigma.view(-1, 1, 1, 1, 1) * ref(x, timestep, context, transformer_options={})
    _assert_close(denoised, want, "apply_model")


# ----------------------------------------------------------------------------------------------- 3. trained checkpoint

def test_trained_checkpoint_loads_as_wan21_t2v(comfyui, trained):
    ref, patcher, cfg = trained
    _assert_wan21_t2v(comfyui, patcher, cfg)
    stored = load_file(str(model_io.checkpoint_path()))
    assert {v.dtype for v in stored.values()} == {torch.float16}, "the shipped checkpoint is stored in fp16"
    _assert_same_weights(patcher.model.diffusion_model, stored)  # every key of the file is used, none missing
    _assert_same_weights(ref, stored)
    assert patcher.model.get_dtype() == torch.float32
    ms = patcher.get_model_object("model_sampling")
    assert isinstance(ms, comfyui.model_sampling.CONST)


@pytest.mark.parametrize("shape", [(1, 16, 16), (13, 16, 16), (5, 15, 17)], ids=lambda s: "x".join(map(str, s)))
def test_trained_forward_matches_reference(trained, shape):
    ref, patcher, _ = trained
    dm = patcher.model.diffusion_model
    for i, sigma in enumerate(SIGMAS):
        x, timestep, context = _inputs(shape, sigma, seed=200 + i)
        _assert_close(*_both(dm, ref, x, timestep, context), f"trained shape {shape} sigma {sigma}")


# ----------------------------------------------------------------------------------------------- 4. hooks

class HookRecorder:
    """Builds ``transformer_options`` with an attention override, ``dit`` double-block replacements and three
    DIFFUSION_MODEL wrappers under two keys, recording what each hook sees. ``attn_scale``/``skip_block`` make the hooks change
    the output, which proves a model actually uses what the hook returns (a pass-through can't show that)."""

    def __init__(self, num_layers: int, attn_scale: float = 1.0, skip_block: int | None = None):
        self.num_layers, self.attn_scale, self.skip_block = num_layers, attn_scale, skip_block
        self.attn_calls: list[tuple] = []
        self.block_calls: list[tuple] = []
        self.wrapper_calls: list[str] = []

    def attention_override(self, func, q, k, v, *args, **kwargs):
        to = kwargs.get("transformer_options")
        self.attn_calls.append((tuple(q.shape), tuple(k.shape), tuple(v.shape), kwargs.get("heads"), to.get("block_index")))
        return func(q, k, v, *args, **kwargs) * self.attn_scale

    def make_replace(self, i: int):
        def replace(args, extra):
            to = args["transformer_options"]
            self.block_calls.append((i, to["block_index"], to["total_blocks"], to["block_type"], tuple(args["img"].shape),
                                     tuple(args["txt"].shape), tuple(args["vec"].shape), tuple(args["pe"].shape)))
            if i == self.skip_block:
                return {"img": args["img"]}
            return extra["original_block"](args)
        return replace

    def make_wrapper(self, name: str):
        def wrapper(executor, *args, **kwargs):
            self.wrapper_calls.append(f"{name}:enter")
            assert executor.class_obj is not None  # wrappers may reach the model through it
            out = executor(*args, **kwargs)
            self.wrapper_calls.append(f"{name}:exit")
            return out
        return wrapper

    def options(self) -> dict:
        return {
            "optimized_attention_override": self.attention_override,
            "patches_replace": {"dit": {("double_block", i): self.make_replace(i) for i in range(self.num_layers)}},
            "wrappers": {"diffusion_model": {"rhymeflow_a": [self.make_wrapper("a1"), self.make_wrapper("a2")],
                                             "rhymeflow_b": [self.make_wrapper("b")]}},
        }


@pytest.mark.parametrize("variant", ["pass_through", "modifying"])
def test_hooks_match(random_fp32, variant):
    ref, patcher, _ = random_fp32
    dm = patcher.model.diffusion_model
    n = TRAINED_CONFIG.num_layers
    kw = {} if variant == "pass_through" else {"attn_scale": 0.5, "skip_block": n - 1}  # the last block: exists at any depth
    rec_comfy, rec_ref = HookRecorder(n, **kw), HookRecorder(n, **kw)
    x, timestep, context = _inputs((5, 15, 17), 0.5, seed=300)
    with torch.no_grad():
        got = dm(x, timestep, context, transformer_options=rec_comfy.options())
        want = ref(x, timestep, context, transformer_options=rec_ref.options())
        plain = ref(x, timestep, context, transformer_options={})
    _assert_close(got, want, f"hooks ({variant})")
    # both models call each hook the same number of times, at the same places, with the same shapes
    assert rec_comfy.attn_calls == rec_ref.attn_calls
    assert rec_comfy.block_calls == rec_ref.block_calls
    blocks_run = n - (0 if variant == "pass_through" else 1)
    assert len(rec_ref.attn_calls) == 2 * blocks_run  # self- and cross-attention per block that runs
    assert [c[0] for c in rec_ref.block_calls] == list(range(n))
    # DIFFUSION_MODEL wrappers: each runs once, first-registered outermost, in both models
    assert rec_comfy.wrapper_calls == rec_ref.wrapper_calls == ["a1:enter", "a2:enter", "b:enter", "b:exit", "a2:exit", "a1:exit"]
    if variant == "pass_through":
        _assert_close(want, plain, "pass-through hooks leave the output unchanged")
    else:
        assert (want - plain).abs().max() > 1e-3, "modifying hooks had no effect"


def test_hooks_match_trained(trained):
    ref, patcher, cfg = trained
    rec_comfy, rec_ref = HookRecorder(cfg.num_layers, attn_scale=0.75, skip_block=1), HookRecorder(cfg.num_layers, attn_scale=0.75, skip_block=1)
    x, timestep, context = _inputs((5, 16, 16), 0.5, seed=301)
    with torch.no_grad():
        got = patcher.model.diffusion_model(x, timestep, context, transformer_options=rec_comfy.options())
        want = ref(x, timestep, context, transformer_options=rec_ref.options())
    _assert_close(got, want, "trained, modifying hooks")
    assert rec_comfy.attn_calls == rec_ref.attn_calls and rec_comfy.block_calls == rec_ref.block_calls
