import dataclasses
import json

import pytest
import torch

from rhymeflow_core.flops import WAN_DIMS, ModelDims, attention_share, flop_ideal_speedup, pass_flops
from rhymeflow_core.schedule import (
    ROLE_KEY,
    ROLE_SKIP,
    ROLE_SYNC,
    ROLE_WARMUP,
    ScheduleConfig,
    build_step_map,
    stride_at,
    sync_groups,
)

# research/rhymeflow.md §1.2 "Step counts" (T = 50): the authors' schedule code re-run.
STEP_TABLE = [
    (8, 2, 3, [*range(8, 23, 2), *range(25, 50, 3)], 25, 25),
    (10, 2, 3, [*range(10, 23, 2), *range(25, 50, 3)], 26, 24),
    (15, 2, 3, [*range(15, 26, 2), *range(28, 50, 3)], 29, 21),
    (10, 3, 5, [10, 13, 16, 19, 22, 26, 30, 34, 38, 43, 48], 21, 29),
    (8, 3, 5, [8, 11, 14, 17, 20, 23, 27, 31, 35, 39, 44, 49], 20, 30),
]


@pytest.mark.parametrize("warmup, n_small, n_large, points, full, keyframe_only", STEP_TABLE)
def test_step_counts_match_the_authors_schedule(warmup, n_small, n_large, points, full, keyframe_only):
    cfg = ScheduleConfig(warmup=warmup, n_small=n_small, n_large=n_large)
    groups = sync_groups(50, cfg)
    assert [i for i, _ in groups] == points
    assert groups[-1][1] == 50
    assert all(end == nxt for (_, end), (nxt, _) in zip(groups, groups[1:]))
    m = build_step_map(21, 50, cfg, [0, 1, 11, 20])
    assert (m.full_passes(), m.keyframe_passes()) == (full, keyframe_only)


def test_stride_phases_switch_at_rounded_transitions():
    # T=50, Tw=10: 40 post-warm-up steps, phases end at offsets round(12.0)=12 and round(28.0)=28.
    cfg = ScheduleConfig(warmup=10, n_small=3, n_large=5)
    strides = [stride_at(k, 40, cfg) for k in (1, 12, 13, 28, 29, 40)]
    assert strides == [3, 3, 4, 4, 5, 5]
    # The middle phase is capped by n_large.
    assert stride_at(20, 40, ScheduleConfig(n_small=2, n_large=2)) == 2


def test_sync_groups_cover_the_last_step_when_stride_overshoots():
    assert sync_groups(12, ScheduleConfig(warmup=8, n_small=3, n_large=3)) == [(8, 11), (11, 12)]
    assert sync_groups(9, ScheduleConfig(warmup=8)) == [(8, 9)]


def test_roles_per_column():
    frames, steps, keys = 6, 20, [0, 2, 5]
    cfg = ScheduleConfig(warmup=4, n_small=2, n_large=4)
    m = build_step_map(frames, steps, cfg, keys)
    assert m.roles.shape == (frames, steps) and m.roles.dtype == torch.uint8
    starts = {i for i, _ in m.groups}
    key_columns = 0
    for j in range(steps):
        col = m.roles[:, j].tolist()
        if j < cfg.warmup:
            assert col == [ROLE_WARMUP] * frames
        elif j in starts:
            assert col == [ROLE_SYNC] * frames
        else:
            key_columns += 1
            assert col == [ROLE_KEY if f in keys else ROLE_SKIP for f in range(frames)]
    assert key_columns == m.keyframe_passes()
    assert cfg.warmup + len(starts) == m.full_passes()


def test_step_map_to_dict_is_json_for_the_widget():
    m = build_step_map(21, 50, ScheduleConfig(), [20, 0, 11, 1, 11])
    d = json.loads(json.dumps(m.to_dict()))
    assert (d["frames"], d["steps"], d["warmup"]) == (21, 50, 8)
    assert len(d["roles"]) == 21 and all(len(row) == 50 for row in d["roles"])
    assert d["keyframes"] == [0, 1, 11, 20]
    assert d["groups"][0] == [8, 10] and d["groups"][-1] == [49, 50]
    assert d["legend"] == {"0": "warm-up", "1": "sync", "2": "keyframe", "3": "projected", "4": "reused"}
    assert d["roles"][11][9] == ROLE_KEY and d["roles"][5][9] == ROLE_SKIP and d["roles"][5][10] == ROLE_SYNC


@pytest.mark.parametrize("keyframes", [[], [21], [-1, 3]])
def test_build_step_map_rejects_bad_keyframes(keyframes):
    with pytest.raises(ValueError, match=r"keyframes=.*0\.\.20"):
        build_step_map(21, 50, ScheduleConfig(), keyframes)


@pytest.mark.parametrize(
    "cfg, message",
    [
        (dict(warmup=50), r"warmup=50 must be smaller than the number of steps \(50\)"),
        (dict(warmup=0), r"warmup=0 must be at least 1"),
        (dict(n_small=0), r"n_small=0 must be at least 1"),
        (dict(n_small=-2, n_large=-1), r"n_small=-2 must be at least 1"),
        (dict(n_small=3, n_large=2), r"n_large=2 must be at least n_small=3"),
        (dict(transitions=(0.7, 0.3)), r"transitions=\(0.7, 0.3\)"),
        (dict(transitions=(0.3, 1.5)), r"transitions=\(0.3, 1.5\)"),
        (dict(transitions=(0.3,)), r"transitions=\(0.3,\)"),
        (dict(warmup=8.0), r"warmup=8.0 must be an integer"),
    ],
)
def test_invalid_schedule_configs_name_the_field(cfg, message):
    with pytest.raises(ValueError, match=message):
        sync_groups(50, ScheduleConfig(**cfg))


def test_schedule_config_round_trips_through_json():
    cfg = ScheduleConfig(warmup=10, n_small=3, n_large=5, transitions=(0.25, 0.75))
    assert ScheduleConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown ScheduleConfig keys.*'stride'"):
        ScheduleConfig.from_dict({"stride": 2})


# --- FLOP model: research/rhymeflow.md §6.2 --------------------------------------------------------


def test_attention_share_of_wan_1_3b_720p():
    assert attention_share(WAN_DIMS["wan2.1-1.3b-720p"]) == pytest.approx(0.84, abs=0.03)


@pytest.mark.parametrize("keyframes, relative", [(2, 0.111), (3, 0.158), (4, 0.204), (5, 0.251)])
def test_keyframe_only_pass_cost_relative_to_full(keyframes, relative):
    d = WAN_DIMS["wan2.1-1.3b-720p"]
    assert pass_flops(d, keyframes) / pass_flops(d, d.frames) == pytest.approx(relative, abs=0.02)


@pytest.mark.parametrize(
    "warmup, n_small, n_large, keyframes, speedup",
    [(8, 2, 3, 4, 1.66), (10, 2, 3, 5, 1.56), (10, 3, 5, 2, 2.06), (8, 3, 5, 3, 2.02)],
)
def test_flop_ideal_speedup(warmup, n_small, n_large, keyframes, speedup):
    cfg = ScheduleConfig(warmup=warmup, n_small=n_small, n_large=n_large)
    m = build_step_map(21, 50, cfg, range(keyframes))
    assert flop_ideal_speedup(m, WAN_DIMS["wan2.1-1.3b-720p"]) == pytest.approx(speedup, abs=0.03)


def test_flop_ideal_speedup_needs_matching_frames():
    m = build_step_map(11, 50, ScheduleConfig(), [0, 5, 10])
    d = WAN_DIMS["wan2.1-1.3b-720p"]
    with pytest.raises(ValueError, match="11 frames.*frames=21"):
        flop_ideal_speedup(m, d)
    assert flop_ideal_speedup(m, dataclasses.replace(d, frames=11)) > 1.0


def test_dense_pass_flops_of_wan_1_3b_720p():
    # §6.2: ~41.7M multiply-adds per token in linear layers (x 75,600 tokens) plus 2*S^2*D = 1.76e13
    # per layer for self-attention, over 30 layers, times 2 for FLOPs.
    expected = 2 * 30 * (41.7e6 * 75_600 + 1.76e13)
    assert pass_flops(WAN_DIMS["wan2.1-1.3b-720p"], 21) == pytest.approx(expected, rel=0.01)
    assert pass_flops(WAN_DIMS["wan2.1-1.3b-720p"], 21, batch=2) == pytest.approx(2 * expected, rel=0.01)


def test_wan_dims():
    assert set(WAN_DIMS) == {"wan2.1-1.3b-480p", "wan2.1-1.3b-720p", "wan2.1-14b-480p", "wan2.1-14b-720p"}
    # Less attention-bound at lower resolution and for the wider 14B model.
    shares = {k: attention_share(d) for k, d in WAN_DIMS.items()}
    assert shares["wan2.1-1.3b-480p"] < shares["wan2.1-1.3b-720p"]
    assert shares["wan2.1-14b-720p"] < shares["wan2.1-1.3b-720p"]


def test_joint_text_stream_defaults_to_the_visual_widths():
    # Text in the attention sequence with the visual widths (HunyuanVideo-style double blocks): every text
    # row costs what a visual row does; explicit equal widths change nothing.
    d = ModelDims("joint", layers=2, dim=64, ffn_dim=256, tokens_per_frame=10, frames=5, text_tokens=7, text_in_sequence=True)
    same = dataclasses.replace(d, text_dim=64, text_ffn_dim=256)
    for active in (2, 5):
        for kv_cached in (False, True):
            rows, kv_rows = active * 10 + 7, (active * 10 if kv_cached else 50) + 7
            macs = 2 * rows * 64**2 + 2 * kv_rows * 64**2 + 2 * rows * (50 + 7) * 64 + 2 * rows * 64 * 256
            assert pass_flops(d, active, kv_cached=kv_cached) == pass_flops(same, active, kv_cached=kv_cached) == 2 * 2 * macs


def test_asymmetric_text_stream_matches_a_hand_count_of_mochi_blocks():
    # Mochi 1 at 480p, 163 frames: visual width 3072, text width 1536 (attention runs at 3072), SwiGLU
    # hidden sizes 8192 / 4096; 28 latent frames of 30x53 tokens, 256 text tokens, 4 keyframes.
    dx, dy, hx, hy, layers = 3072, 1536, 8192, 4096, 48
    n, frames, keys, t = 30 * 53, 28, 4, 256
    s, sa = n * frames, n * keys
    visual_row = dx * 3 * dx + dx * dx + dx * 2 * hx + hx * dx  # qkv_x, proj_x, mlp_x.w1, mlp_x.w2
    text_row = dy * 3 * dx + dx * dy + dy * 2 * hy + hy * dy  # qkv_y, proj_y, mlp_y.w1, mlp_y.w2
    keyframe_macs = sa * visual_row + t * text_row + 2 * (sa + t) * (s + t) * dx  # scores + aggregation
    d = ModelDims("mochi", layers=layers, dim=dx, ffn_dim=3 * hx // 2, tokens_per_frame=n, frames=frames, text_tokens=t,
                  text_in_sequence=True, text_dim=dy, text_ffn_dim=3 * hy // 2)
    assert pass_flops(d, keys, kv_cached=True) == pytest.approx(2 * layers * keyframe_macs, rel=1e-12)
    other_kv = (s - sa) * 2 * dx * dx  # without the cache, K/V of the other frames' rows are projected again
    assert pass_flops(d, keys) == pytest.approx(2 * layers * (keyframe_macs + other_kv), rel=1e-12)
    dense_macs = s * visual_row + t * text_row + 2 * (s + t) ** 2 * dx
    assert pass_flops(d, frames) == pytest.approx(2 * layers * dense_macs, rel=1e-12)
