"""AsymRnR token reduction: matching, drop-mode reduce/restore, schedule, caching by sigma, the attention
override on the test-bed model, and calibration."""
import json

import pytest
import torch

from rhymeflow_core.asymrnr import (
    KEY, AsymRnRState, Match, ReductionSchedule, TokenLayout, dst_partition, install, kept_sources, match_tokens,
    nearest_dst, override, plan_reduction, reduce_tokens, restore_tokens,
)
from rhymeflow_core.asymrnr.calibrate import build_schedule
from rhymeflow_core.testbed.calibrate_asymrnr import calibrate_testbed
from rhymeflow_core.keyframes import KeyframePlan
from rhymeflow_core.patch import PatchConfig
from rhymeflow_core.sampler import sample_dense, sample_rhymeflow
from rhymeflow_core.schedule import ScheduleConfig
from rhymeflow_core.testbed.runner import Job, run_sampler
from rhymeflow_core.testbed.wan_dit import WanConfig, WanModel, sdpa_attention

GRID = (2, 4, 6)  # 48 tokens, 12 destinations with the default (1, 2, 2) stride
N = 48
HEADS, D = 2, 8


def make_state(q=0.0, kv=0.0, blocks=1, steps=4, cache_steps=3, seed=0, **kw):
    state = AsymRnRState(ReductionSchedule.uniform(blocks, steps, q=q, kv=kv, cache_steps=cache_steps), seed=seed, **kw)
    state.grid = GRID
    return state


def qkv(b=2, n=N, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, n, HEADS * D, generator=g).to(dtype) for _ in range(3)]


def opts(block=0, **kw):
    return {"block_index": block, **kw}


def make_override(state):
    """The override as ComfyUI's ``wrap_attn`` calls it for a MODEL carrying ``state`` in its transformer_options."""
    def call(func, q, k, v, *args, transformer_options=None, **kw):
        return override(func, q, k, v, *args, transformer_options={**(transformer_options or {}), KEY: state}, **kw)
    return call


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return WanModel(WanConfig(dim=256, ffn_dim=256, num_layers=2)).eval().requires_grad_(False)  # 2 heads


# ---------------------------------------------------------------- matching

def test_partition_is_one_dst_per_chunk_and_deterministic_per_seed():
    def part(seed):
        return dst_partition(GRID, (1, 2, 2), torch.Generator().manual_seed(seed))

    dst, src = part(7)
    assert torch.equal(torch.sort(torch.cat([dst, src])).values, torch.arange(N))
    t, h, w = dst // 24, dst // 6 % 4, dst % 6
    chunk = t * 6 + (h // 2) * 3 + w // 2
    assert torch.equal(torch.sort(chunk).values, torch.arange(12))  # exactly one per (1, 2, 2) chunk
    assert torch.equal(part(7)[0], dst)
    assert not torch.equal(part(8)[0], dst)


def test_partition_leftovers_are_sources_and_small_grids_clamp():
    dst, src = dst_partition((3, 5, 5), (2, 2, 2), torch.Generator().manual_seed(0))
    assert dst.numel() == 1 * 2 * 2 and dst.numel() + src.numel() == 75
    dst, _ = dst_partition((1, 1, 1), (1, 2, 2), torch.Generator().manual_seed(0))
    assert dst.tolist() == [0]


def test_chunked_similarity_equals_unchunked():
    x = torch.randn(2, N, 4, D)
    dst, src = dst_partition(GRID, (1, 2, 2), torch.Generator().manual_seed(1))
    full_d, full_j = nearest_dst(x, dst, src, max_elements=1 << 30)
    one_d, one_j = nearest_dst(x, dst, src, max_elements=1)  # one (batch, head) row at a time
    assert torch.equal(full_j, one_j)
    assert torch.allclose(full_d, one_d)
    ref = torch.cdist(x[:, src].transpose(1, 2), x[:, dst].transpose(1, 2)).pow(2)  # [B, H, Ns, Nd]
    assert torch.allclose(full_d, ref.min(-1).values, atol=1e-4, rtol=1e-4)
    assert torch.equal(full_j, ref.argmin(-1))


def test_most_redundant_sources_are_reduced_first():
    x = torch.randn(1, N, 1, D)
    dst, src = dst_partition(GRID, (1, 2, 2), torch.Generator().manual_seed(2))
    x[0, src[5]] = x[0, dst[3]]  # an exact duplicate
    m, dist = match_tokens(x, dst, src)
    assert int(m.order[0, 0, -1]) == 5 and int(m.nearest[0, 0, 5]) == 3 and float(dist[0, 0, 5]) == pytest.approx(0, abs=1e-5)


# ---------------------------------------------------------------- reduce / restore

def test_restore_by_hand():
    # tokens 0..3; dsts at 0 and 2; sources 1 (nearest dst 1 -> token 2) and 3 (nearest dst 0 -> token 0)
    m = Match(torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([[[0, 1]]], dtype=torch.int32),
              torch.tensor([[[1, 0]]], dtype=torch.int32))
    red = plan_reduction(m, keep=1, n_tokens=4, with_restore=True)  # keep source 1, drop source 3
    assert red.gather[0, :, 0].tolist() == [1, 0, 2]
    assert red.restore[0, :, 0].tolist() == [1, 0, 2, 1]  # token 3 gets token 0's row
    x = torch.arange(4.0).view(1, 4, 1)
    assert reduce_tokens(x, 1, red).flatten().tolist() == [1.0, 0.0, 2.0]
    assert restore_tokens(reduce_tokens(x, 1, red), 1, red).flatten().tolist() == [0.0, 1.0, 2.0, 0.0]


def test_kept_sources_saturates_at_destinations():
    assert kept_sources(100, 25, 75, 0.0) == 75
    assert kept_sources(100, 25, 75, 0.3) == 45
    assert kept_sources(100, 25, 75, 0.9) == 0


def test_duplicate_queries_restore_exactly():
    """Queries constant over each (1, 2, 2) chunk: dropping every source loses nothing."""
    b = 2
    g = torch.Generator().manual_seed(3)
    chunks = torch.randn(b, 2, 2, 3, HEADS * D, generator=g)
    q = chunks.repeat_interleave(2, 2).repeat_interleave(2, 3).reshape(b, N, HEADS * D)
    _, k, v = qkv(b)
    state = make_state(q=0.75)
    out = make_override(state)(sdpa_attention, q, k, v, heads=HEADS, transformer_options=opts())
    assert state.stats.kept[(0, 0)]["q"] == 12  # destinations only
    assert torch.allclose(out, sdpa_attention(q, k, v, HEADS), atol=1e-6, rtol=1e-5)
    ident = make_override(make_state(q=0.75))(lambda q_, k_, v_, heads, **kw: q_, q, k, v, heads=HEADS, transformer_options=opts())
    assert torch.equal(ident, q)  # every dropped query got its own (duplicate) destination's row


# ---------------------------------------------------------------- the override

def test_zero_rates_are_bitwise_identity():
    q, k, v = qkv()
    out = make_override(make_state())(sdpa_attention, q, k, v, heads=HEADS, transformer_options=opts())
    assert torch.equal(out, sdpa_attention(q, k, v, HEADS))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rq, rkv", [(0.5, 0.0), (0.0, 0.4), (0.6, 0.4)])
def test_shapes_and_dtypes_preserved(dtype, rq, rkv):
    q, k, v = qkv(dtype=dtype)
    seen = []

    def func(q_, k_, v_, heads, **kw):
        seen.append((q_.shape[1], k_.shape[1], v_.shape[1], kw))
        return sdpa_attention(q_, k_, v_, heads)

    state = make_state(q=rq, kv=rkv)
    out = make_override(state)(func, q, k, v, heads=HEADS, transformer_options=opts(), _inside_attn_wrapper=True)
    assert out.shape == q.shape and out.dtype == dtype
    lq, lk, lv, kw = seen[0]
    assert (lq, lk, lv) == (int(N * (1 - rq)), int(N * (1 - rkv)), int(N * (1 - rkv)))
    assert kw["_inside_attn_wrapper"] is True and "transformer_options" in kw  # extra kwargs reach func
    s = state.stats.summary()
    assert s["flops_saved_fraction"] == pytest.approx(1 - lq * lk / N**2, abs=1e-4)


def test_text_cross_attention_is_never_reduced():
    q, _, _ = qkv()
    k, v = torch.randn(2, 8, HEADS * D), torch.randn(2, 8, HEADS * D)
    state = make_state(q=0.7, kv=0.5)
    out = make_override(state)(sdpa_attention, q, k, v, heads=HEADS, transformer_options=opts())
    assert torch.equal(out, sdpa_attention(q, k, v, HEADS))
    assert not state.stats.kept and state.stats.matchings == 0


def test_unknown_grid_or_mask_passes_through():
    q, k, v = qkv()
    state = make_state(q=0.7, kv=0.5)
    state.grid = None
    assert torch.equal(make_override(state)(sdpa_attention, q, k, v, heads=HEADS, transformer_options=opts()), sdpa_attention(q, k, v, HEADS))
    state.grid = GRID
    masked = make_override(state)(lambda q_, k_, v_, heads, mask=None, **kw: q_, q, k, v, heads=HEADS, mask=torch.ones(1), transformer_options=opts())
    assert torch.equal(masked, q) and not state.stats.kept


def test_keyframe_only_pass_is_passed_through():
    """q = keyframe tokens (2 of 4 frames), k/v = all frames: documented pass-through, counted."""
    state = make_state(q=0.7, kv=0.5)
    state.grid = (4, 4, 6)  # wrapper outside RhymeFlow's: records all frames
    q = torch.randn(1, 48, HEADS * D)
    k, v = torch.randn(1, 96, HEADS * D), torch.randn(1, 96, HEADS * D)
    out = make_override(state)(sdpa_attention, q, k, v, heads=HEADS, transformer_options=opts())
    assert torch.equal(out, sdpa_attention(q, k, v, HEADS))
    state.grid = (2, 4, 6)  # wrapper inside RhymeFlow's: records the keyframes only
    out = make_override(state)(sdpa_attention, q, k, v, heads=HEADS, transformer_options=opts())
    assert torch.equal(out, sdpa_attention(q, k, v, HEADS))
    assert state.stats.unequal_passthrough == 2 and state.stats.matchings == 0


def test_previous_override_is_chained():
    calls = []

    def previous(func, *args, **kwargs):
        calls.append(args[0].shape[1])
        return func(*args, **kwargs)

    state = make_state(q=0.5)
    to = install({"optimized_attention_override": previous}, state)
    q, k, v = qkv()
    to_call = dict(to, block_index=0)
    to["optimized_attention_override"](sdpa_attention, q, k, v, heads=HEADS, transformer_options=to_call)
    assert calls == [N // 2]
    assert state.previous_override is previous and to["asymrnr"] is state


def test_matching_reused_for_cache_steps_counted_by_sigma():
    state = make_state(q=0.5, kv=0.3, cache_steps=2)
    override = make_override(state)
    q, k, v = qkv()
    shape = torch.Size([2, 16, 2, 8, 12])  # latent of the (2, 4, 6) token grid

    def dit_call(sigma, branch):
        to = opts(sigmas=torch.tensor([sigma]), cond_or_uncond=branch)
        state.begin_call(shape, to)
        override(sdpa_attention, q if len(branch) == 2 else q[:1], k if len(branch) == 2 else k[:1],
                 v if len(branch) == 2 else v[:1], heads=HEADS, transformer_options=to)

    dit_call(0.9, [0])
    dit_call(0.9, [1])  # separate uncond call, same sigma: still step 0, its own branch cache
    assert (state.clock.step, state.stats.matchings) == (0, 4)
    dit_call(0.8, [0])
    dit_call(0.8, [1])  # step 1: same window of 2 steps, nothing recomputed
    assert (state.clock.step, state.stats.matchings) == (1, 4)
    dit_call(0.7, [0])  # step 2: new window
    assert (state.clock.step, state.stats.matchings) == (2, 6)
    dit_call(0.7, [0, 1])  # batch change for a new branch key: computed, not confused with B=1
    assert state.stats.matchings == 8
    state.grid = (2, 4, 4)  # token count change invalidates (same sigma, same window)
    q, k, v = (t[:, :32] for t in (q, k, v))
    override(sdpa_attention, q, k, v, heads=HEADS, transformer_options=opts(cond_or_uncond=[0, 1]))
    assert state.stats.matchings == 10
    state.begin_call(shape, opts(sigmas=torch.tensor([1.0])))  # sigma went up: a new run
    assert state.clock.step == 0 and len(state.cache) == 0 and state.stats.matchings == 0


def test_step_from_sample_sigmas_survives_skipped_calls():
    state = make_state()
    ss = torch.tensor([1.0, 0.8, 0.6, 0.4, 0.0])
    steps = []
    for sigma in (1.0, 0.6, 0.5, 0.4):  # step 1 skipped (e.g. by a step cache); 0.5: a solver midpoint of step 2
        state.begin_call(torch.Size([1, 16, 2, 8, 12]), {"sigmas": torch.tensor([sigma]), "sample_sigmas": ss})
        steps.append(state.clock.step)
    assert steps == [0, 2, 2, 3] and state.clock.total == 4


def test_a_deep_copy_is_a_fresh_state_with_the_same_settings():
    """ModelPatcher.clone() deep-copies model_options: the clone gets its own run state and result (the holder policy)."""
    import copy

    state = make_state(q=0.5, seed=7)
    state.last_result = {"stats": {}}
    state.stats.matchings = 3
    to = install({"optimized_attention_override": print}, state)
    fresh = copy.deepcopy(to)["asymrnr"]
    assert fresh is not state and fresh.schedule is state.schedule and fresh.seed == 7 and fresh.layout is state.layout
    assert fresh.previous_override is print and fresh.last_result is None and fresh.stats.matchings == 0
    assert copy.copy(state) is state  # ComfyUI's per-call shallow dict copies keep the instance


# ---------------------------------------------------------------- schedule

def test_schedule_json_round_trip(tmp_path):
    s = ReductionSchedule({"q": [[0.0, 0.5], [0.7, 0.25]], "kv": [[0.3, 0.0], [0.0, 0.125]]}, cache_steps=2,
                          dst_stride=(2, 2, 2), meta={"note": "x"})
    assert ReductionSchedule.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    s.save(tmp_path / "s.json")
    assert ReductionSchedule.load(tmp_path / "s.json") == s
    assert s.rate("q", 1, 0) == 0.7 and s.rate("kv", 1, 5) == 0.125  # clamped to the last step
    assert s.rate("q", 0, 3, total_steps=4) == 0.5  # read by progress: last step -> last column
    assert s.flop_fraction() == pytest.approx(((1 - 0.3) + 0.5 + 0.3 + 0.75 * 0.875) / 4)


@pytest.mark.parametrize("bad", [{"q": [[1.0]], "kv": [[0.0]]}, {"q": [[0.1]], "kv": [[0.0, 0.0]]}, {"q": [[0.1]]}])
def test_schedule_validation(bad):
    with pytest.raises(ValueError, match="AsymRnR schedule"):
        ReductionSchedule(bad)


def test_block_outside_schedule_is_an_error():
    with pytest.raises(ValueError, match="block 3"):
        make_state(blocks=2).schedule.rate("q", 3, 0)


# ---------------------------------------------------------------- on the test-bed model

def _forward(model, to, frames=2, seed=0):
    """One CFG-batched ``apply_model`` call (wrappers included, as ComfyUI's BaseModel runs them)."""
    from rhymeflow_core.testbed.denoiser import TestbedDenoiser

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 16, frames, 8, 12, generator=g)
    ctx = torch.randn(2, 8, 4096, generator=g)
    to = dict(to, sigmas=torch.tensor([0.9]), cond_or_uncond=[0, 1])
    return TestbedDenoiser(model, 0).apply_model(x, torch.full((2,), 0.9), None, ctx, None, to)


def test_override_end_to_end_on_the_model(model):
    plain = _forward(model, {})
    seen = []

    def spy(func, q, k, v, *args, **kwargs):
        seen.append((q.shape[1], k.shape[1]))
        return func(q, k, v, *args, **kwargs)

    zero = make_state(blocks=2)
    zero.grid = None  # recorded by the APPLY_MODEL wrapper
    assert torch.equal(_forward(model, install({"optimized_attention_override": spy}, zero)), plain)
    assert zero.grid == GRID and sorted(set(seen)) == [(48, 8), (48, 48)]
    seen.clear()
    state = make_state(q=0.5, kv=0.25, blocks=2)
    out = _forward(model, install({"optimized_attention_override": spy}, state))
    assert out.shape == plain.shape and not torch.allclose(out, plain)
    assert sorted(set(seen)) == [(24, 36), (48, 8)]  # self-attention reduced; cross-attention (k = 8 text tokens) full
    assert state.stats.matchings == 4 and set(state.stats.kept) == {(0, 0), (1, 0)}


def test_cfg_batched_and_separate_calls_agree(model):
    sched = dict(q=0.5, kv=0.3, blocks=2, steps=3, cache_steps=2)
    job = Job(cls=1, seed=3, frames=2, steps=3)
    a_state, b_state = make_state(**sched), make_state(**sched)
    a, _, _ = run_sampler(sample_dense, model, job, transformer_options=install({}, a_state))
    b, _, _ = run_sampler(sample_dense, model, Job(cls=1, seed=3, frames=2, steps=3, batch_cfg=False), transformer_options=install({}, b_state))
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    assert a_state.clock.step == b_state.clock.step == 2
    assert a_state.stats.matchings * 2 == b_state.stats.matchings == 2 * 2 * 2 * 2  # windows x blocks x features x branches


def test_rhymeflow_keyframe_passes_pass_through(model):
    state = make_state(q=0.5, kv=0.3, blocks=2, steps=6)
    job = Job(cls=1, seed=3, frames=4, steps=6)
    out, _, holder = run_sampler(sample_rhymeflow, model, job, PatchConfig(), transformer_options=install({}, state),
                                 schedule=ScheduleConfig(warmup=2, n_small=2, n_large=2), plan=KeyframePlan(budget=2))
    assert torch.isfinite(out).all()
    assert state.stats.unequal_passthrough > 0 and state.stats.flops < state.stats.flops_dense


# ---------------------------------------------------------------- calibration

def test_calibration_builds_a_schedule_meeting_the_target(model, tmp_path):
    jobs = [Job(cls=c, seed=c, frames=2, steps=5) for c in (0, 1)]
    schedule, measurement = calibrate_testbed(model, jobs, target=0.3, dense_start=0.2)
    assert measurement["n_tokens"] == 2 * 8 * 8 and measurement["n_dst"] == 32  # test-bed latents are 16 x 16
    assert (schedule.num_blocks, schedule.num_steps) == (2, 5)
    assert schedule.meta["achieved"] == pytest.approx(0.3, abs=0.01)
    assert 1 - schedule.flop_fraction() == pytest.approx(schedule.meta["achieved"], abs=1e-3)
    assert all(r == 0 for f in ("q", "kv") for row in schedule.rates[f] for r in row[:1])  # first 20% dense
    assert max(r for row in schedule.rates["q"] for r in row) <= 0.7
    assert max(r for row in schedule.rates["kv"] for r in row) <= 0.5
    schedule.save(tmp_path / "s.json")
    assert ReductionSchedule.load(tmp_path / "s.json") == schedule
    redo = build_schedule(json.loads(json.dumps(measurement)), target=0.3, dense_start=0.2)
    assert redo.rates == schedule.rates


def test_calibration_gives_more_to_the_more_redundant_cells():
    edges = [0.1, 1.0]
    near, far = [9.0, 1.0, 0.0], [1.0, 1.0, 8.0]  # 90% vs 10% of sources within 0.1
    m = {"format": "asymrnr-redundancy", "version": 1, "edges": edges, "num_blocks": 2, "num_steps": 2, "n_tokens": 40,
         "n_dst": 10, "meta": {}, "hist": {"q": [[near, near], [far, far]], "kv": [[far, far], [far, far]]}}
    s = build_schedule(m, target=0.2, threshold=0.1, dense_start=0.0)
    assert s.rates["q"][0][0] > s.rates["q"][1][0] > 0 and s.rates["q"][0][0] <= 0.7


# ----------------------------------------------------------------------------------------------- node sources (pure)

def test_uniform_schedule_source():
    from rhymeflow_core.asymrnr import sources

    s = sources.uniform_schedule(3, 0.4, 0.25, dense_start=0.2, cache_steps=2)
    assert (s.num_blocks, s.num_steps, s.cache_steps) == (3, sources.UNIFORM_COLUMNS, 2)
    assert all(row[:20] == [0.0] * 20 and set(row[20:]) == {0.4} for row in s.rates["q"])
    assert all(set(row[20:]) == {0.25} for row in s.rates["kv"])
    for total in (10, 30, 50):  # read by progress: the first ceil(0.2 * total) steps are dense
        dense = [i for i in range(total) if s.rate("q", 0, i, total) == 0]
        assert dense == list(range(-(-2 * total // 10))), total
    assert sources.uniform_schedule(2, 0.0, 0.0).flop_fraction() == 1.0
    with pytest.raises(ValueError, match=r"input 'q_rate' = 0\.99; accepted: 0 <= q_rate <= 0\.95"):
        sources.uniform_schedule(2, 0.99, 0.0)
    with pytest.raises(ValueError, match=r"input 'dense_start' = -0\.1"):
        sources.uniform_schedule(2, 0.1, 0.1, dense_start=-0.1)


def test_scaled_schedule_and_cache_steps():
    from rhymeflow_core.asymrnr import sources

    s = ReductionSchedule.uniform(2, 3, q=0.6, kv=0.4, cache_steps=3)
    half = sources.scaled(s, 0.5)
    assert half.rates["q"] == [[0.3] * 3] * 2 and half.rates["kv"] == [[0.2] * 3] * 2 and half.meta["scale"] == 0.5
    assert s.rates["q"][0][0] == 0.6  # the original is untouched
    assert sources.scaled(s, 1.0).rates == s.rates and sources.scaled(s, 0.0).flop_fraction() == 1.0
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"input 'scale' = .*; accepted: 0 <= scale <= 1"):
            sources.scaled(s, bad)
    assert sources.with_cache_steps(s, 0) is s and sources.with_cache_steps(s, 5).cache_steps == 5


def test_resolve_path_and_block_check(tmp_path):
    from rhymeflow_core.asymrnr import sources

    s = ReductionSchedule.uniform(4, 2, q=0.1)
    (tmp_path / "asymrnr").mkdir()
    s.save(tmp_path / "asymrnr" / "x.json")
    real = (tmp_path / "asymrnr" / "x.json").resolve()
    assert sources.resolve_path("asymrnr/x.json", (tmp_path,)) == real
    assert sources.resolve_path(str(tmp_path / "asymrnr" / "x.json"), (tmp_path,)) == real  # absolute, inside a root
    assert sources.resolve_path("testbed_wan.json") == sources.TESTBED_SCHEDULE  # the pack's own folder is always searched
    with pytest.raises(ValueError, match=r"input 'schedule_file' = 'nope\.json': no such file"):
        sources.resolve_path("nope.json", (tmp_path,))
    with pytest.raises(ValueError, match=r"input 'schedule_file' = '~/x\.json': no such file"):  # "~" is not the home folder
        sources.resolve_path("~/x.json", (tmp_path,))
    with pytest.raises(ValueError, match=r"input 'schedule_file' is empty"):
        sources.resolve_path("  ")
    sources.check_blocks(s, 4)
    with pytest.raises(ValueError, match=r"the schedule has 4 blocks but the model has 30"):
        sources.check_blocks(s, 30)


# ---------------------------------------------------------------- schedule files from users

def _roots(tmp_path):
    out, inp, elsewhere = (tmp_path / n for n in ("output", "input", "elsewhere"))
    for d in (out, inp, elsewhere):
        d.mkdir()
    return out, inp, elsewhere


@pytest.mark.parametrize("path", [
    "/etc/passwd", "../elsewhere/secret.json", "../../../../../../etc/hosts.json", "{elsewhere}/secret.json",
    "{elsewhere}/missing.json", "link.json", "linked_dir/secret.json", "x.json\x00.png", "schedule.safetensors",
])
def test_schedule_file_outside_the_allowed_folders_is_refused_without_a_trace(tmp_path, path):
    """Outside (absolute, ``..``, a symlink out, a folder symlink out) or not a .json name: refused with the same kind
    of message whether the target exists or not, and nothing of its contents in it."""
    from rhymeflow_core.asymrnr import sources

    out, inp, elsewhere = _roots(tmp_path)
    secret = elsewhere / "secret.json"
    secret.write_text('{"format": "SECRET-CONTENT"}')
    (out / "link.json").symlink_to(secret)
    (out / "linked_dir").symlink_to(elsewhere, target_is_directory=True)
    path = path.replace("{elsewhere}", str(elsewhere))
    with pytest.raises(ValueError) as err:
        sources.load_file(path, (out, inp))
    msg = str(err.value)
    assert msg.startswith("input 'schedule_file' = ") and ("lies outside" in msg or "is not a .json file name" in msg), msg
    assert "SECRET" not in msg and "no such file" not in msg and str(elsewhere) not in msg.replace(path, ""), msg
    assert "ComfyUI's output or input folder or the pack's schedules folder" in msg


def test_schedule_file_in_input_folder_and_links_inside_are_read(tmp_path):
    from rhymeflow_core.asymrnr import sources

    out, inp, _ = _roots(tmp_path)
    s = ReductionSchedule.uniform(2, 3, q=0.2, kv=0.1, cache_steps=4)
    s.save(inp / "mine.json")
    (out / "alias.json").symlink_to(inp / "mine.json")  # a link that stays inside the allowed folders is fine
    assert sources.load_file("mine.json", (out, inp)) == s
    assert sources.load_file("alias.json", (out, inp)) == s


def test_schedule_file_size_is_capped_before_reading(tmp_path, monkeypatch):
    from rhymeflow_core.asymrnr import schedule as sched_mod
    from rhymeflow_core.asymrnr import sources

    out, inp, _ = _roots(tmp_path)
    big = out / "big.json"
    with open(big, "wb") as f:  # sparse: 3 GiB on paper, nothing on disk
        f.truncate(3 * 1024 ** 3)
    read = []
    real_open = open

    def spy_open(path, mode="r", *a, **kw):
        f = real_open(path, mode, *a, **kw)
        if str(path) == str(big.resolve()):
            orig = f.read
            f.read = lambda n=-1: read.append(n) or orig(n)
        return f

    monkeypatch.setattr("builtins.open", spy_open)
    with pytest.raises(ValueError, match=rf"input 'schedule_file': schedule file 'big\.json' is {3 * 1024 ** 3} bytes; "
                                         rf"accepted: at most {sched_mod.MAX_FILE_BYTES} bytes"):
        sources.load_file("big.json", (out, inp))
    assert read == [], "the oversized file was read"


def _valid() -> dict:
    return ReductionSchedule.uniform(2, 3, q=0.1).to_dict()


@pytest.mark.parametrize("edit, pattern", [
    (lambda d: [d], r"the top level is a JSON array"),
    (lambda d: "text", r"the top level is a JSON string"),
    (lambda d: {**d, "format": "other"}, r"fields 'format'/'version'"),
    (lambda d: {k: v for k, v in d.items() if k != "q"}, r"field 'q' is missing"),
    (lambda d: {**d, "q": {"0": [0.1]}}, r"field 'q' is not a non-empty array of non-empty arrays"),
    (lambda d: {**d, "q": [[0.1, "x", 0.1], [0.1] * 3]}, r"field 'q' block 0 step 1 is not a rate in \[0, 1\) \(it is a JSON string\)"),
    (lambda d: {**d, "kv": [[0.1] * 3, [0.1, 0.1, 1.5]]}, r"field 'kv' block 1 step 2 is not a rate"),
    (lambda d: {**d, "kv": [[True] * 3] * 2}, r"field 'kv' block 0 step 0 is not a rate .*boolean"),
    (lambda d: {**d, "q": [[0.1] * 1001] * 2}, r"field 'q' is larger than 1024 blocks x 1000 steps"),
    (lambda d: {**d, "cache_steps": 10 ** 12}, r"field 'cache_steps' is not an integer in 1\.\.1000 \(a JSON number out of range\)"),
    (lambda d: {**d, "cache_steps": "3"}, r"field 'cache_steps' is not an integer in 1\.\.1000 \(a JSON string\)"),
    (lambda d: {**d, "dst_stride": [1, 100000, 2]}, r"field 'dst_stride\[1\]' is not an integer in 1\.\.64"),
    (lambda d: {**d, "dst_stride": [1, 2]}, r"field 'dst_stride' is not a list of three ints"),
    (lambda d: {**d, "meta": [1]}, r"field 'meta' is not an object"),
])
def test_schedule_schema_names_file_and_field(tmp_path, edit, pattern):
    from rhymeflow_core.asymrnr import sources

    out, inp, _ = _roots(tmp_path)
    data = edit(_valid())
    (out / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"^input 'schedule_file': schedule file 'bad\.json': " + pattern) as err:
        sources.load_file("bad.json", (out, inp))
    assert "Traceback" not in str(err.value) and len(str(err.value)) < 400


@pytest.mark.parametrize("text, pattern", [
    ('{"format": "asymrnr-schedule", ', r"is not valid JSON \(line 1, column \d+\)"),
    ("[" * 100000 + "]" * 100000, r"(nests too deeply|not valid JSON)"),
    ('{"cache_steps": NaN}', r"NaN is not a finite number"),
    (b"\xff\xfe{}", r"is not UTF-8 text"),
])
def test_schedule_file_syntax_errors_name_the_file_only(tmp_path, text, pattern):
    from rhymeflow_core.asymrnr import sources

    out, inp, _ = _roots(tmp_path)
    target = out / "broken.json"
    target.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match=r"^input 'schedule_file': schedule file 'broken\.json'.*" + pattern) as err:
        sources.load_file("broken.json", (out, inp))
    assert "asymrnr-schedule" not in str(err.value)


def test_schedule_bounds_apply_to_every_schedule():
    """Not only files: a schedule built in code is bounded too (the node's cache_steps override goes through here)."""
    from rhymeflow_core.asymrnr import sources

    with pytest.raises(ValueError, match=r"cache_steps=1000000000000; accepted: 1\.\.1000"):
        sources.with_cache_steps(ReductionSchedule.uniform(1, 2), 10 ** 12)
    with pytest.raises(ValueError, match=r"dst_stride=\(1, 100000, 2\); accepted: three ints .* in 1\.\.64"):
        ReductionSchedule.uniform(1, 2, dst_stride=(1, 100000, 2))


def test_stats_and_schedule_texts():
    from rhymeflow_core.asymrnr import sources

    state = make_state(q=0.5, kv=0.5, steps=2, cache_steps=1)
    state.stats.add(0, 0, 1, HEADS, D, N, N, N)
    state.stats.add(0, 1, 1, HEADS, D, N, 24, 24)
    text = sources.stats_text(state.stats.summary())
    assert "1 of 2 (block, step) cells reduced (1 blocks x 2 steps)" in text
    assert "q 75.0%, k/v 75.0% on average" in text and "FLOPs saved: 37.5%" in text
    assert "no video self-attention call" in sources.stats_text(make_state().stats.summary())
    sched_text = sources.schedule_text(ReductionSchedule.uniform(2, 4, q=0.5), "asymrnr/s_00001_.json")
    assert "2 blocks x 4 steps" in sched_text and "mean rate q 0.500, kv 0.000" in sched_text
    assert "FLOPs left 50.0%" in sched_text and sched_text.endswith("written to asymrnr/s_00001_.json")


# ---------------------------------------------------------------- joint [video; text] attention (HunyuanVideo, Mochi layouts)

def test_joint_layout_reduces_video_rows_only_and_follows_the_key_mask():
    """``skip_reshape`` q/k/v ``[B, H, L, d]`` with 6 text rows after the 48 video rows, a per-key padding mask and no
    block index (blocks counted per call): text rows and their mask entries reach attention whole and in place."""
    layout = TokenLayout("joint", joint_text=True, block_of=None)
    state = make_state(q=0.5, kv=0.5, blocks=2, layout=layout)
    g = torch.Generator().manual_seed(0)
    text = 6
    q, k, v = (torch.randn(2, HEADS, N + text, D, generator=g) for _ in range(3))
    mask = torch.zeros(1, 1, N + text)
    mask[..., -2:] = -1e4  # two padded text keys
    seen = []

    def func(q_, k_, v_, heads, mask=None, skip_reshape=False, **kw):
        seen.append((q_, k_, v_, mask))
        out = torch.nn.functional.scaled_dot_product_attention(q_, k_, v_, attn_mask=mask)
        return out.transpose(1, 2).reshape(q_.shape[0], -1, heads * D)

    run = make_override(state)
    outs = [run(func, q, k, v, HEADS, mask=mask, skip_reshape=True, transformer_options={"cond_or_uncond": [0, 1]})
            for _ in range(2)]
    assert set(state.stats.kept) == {(0, 0), (1, 0)}  # two calls: blocks 0 and 1 by count
    q2, k2, v2, m2 = seen[0]
    keep = N // 2
    assert q2.shape == k2.shape == v2.shape == (2, HEADS, keep + text, D)
    for got, ref in ((q2, q), (k2, k), (v2, v)):
        assert torch.equal(got[:, :, keep:], ref[:, :, N:])  # text rows untouched, in place
        rows = got[:, :, :keep].unsqueeze(3) == ref[:, :, :N].unsqueeze(2)  # each kept row is a video row
        assert rows.all(-1).any(-1).all()
    assert m2.shape == (2, HEADS, 1, keep + text) and torch.equal(m2[..., keep:], mask[..., N:].expand(2, HEADS, 1, text))
    assert (m2[..., :keep] == 0).all()
    assert outs[0].shape == (2, N + text, HEADS * D)
    dense = func(q, k, v, HEADS, mask=mask)
    assert not torch.equal(outs[0][:, :N], dense[:, :N])
    zero = make_state(blocks=2, layout=layout)
    assert torch.equal(make_override(zero)(func, q, k, v, HEADS, mask=mask, skip_reshape=True, transformer_options={}), dense)


def test_joint_layout_passes_through_masks_that_depend_on_the_query():
    layout = TokenLayout("joint", joint_text=True, block_of=None)
    state = make_state(q=0.5, kv=0.5, layout=layout)
    q, k, v = (torch.randn(1, HEADS, N + 4, D) for _ in range(3))
    full = torch.zeros(1, 1, N + 4, N + 4)  # a text refiner's [L, L] mask
    got = make_override(state)(lambda q_, k_, v_, heads, **kw: q_, q, k, v, HEADS, mask=full, skip_reshape=True,
                               transformer_options={})
    assert got is q and not state.stats.kept


def test_installing_twice_replaces_instead_of_chaining_to_itself():
    first, second = make_state(q=0.5), make_state(q=0.25)
    to = install(install({"optimized_attention_override": print}, first), second)
    assert to["asymrnr"] is second and second.previous_override is print


def test_benchmarks_skip_a_schedule_of_another_size_with_a_note(tmp_path):
    """Benchmarks leave out AsymRnR rows (and say why) rather than stop after their other rows; the node refuses."""
    from rhymeflow_core.asymrnr.sources import TESTBED_SCHEDULE, schedule_skip_note

    shipped = ReductionSchedule.load(TESTBED_SCHEDULE)
    assert schedule_skip_note(TESTBED_SCHEDULE, shipped.tokens) is None
    note = schedule_skip_note(TESTBED_SCHEDULE, shipped.tokens // 2)
    assert f"calibrated at {shipped.tokens} video tokens, this run has {shipped.tokens // 2}" in note
    assert "no AsymRnR schedule" in schedule_skip_note(tmp_path / "missing.json", 64)
