import json
import math

import pytest
import torch

from rhymeflow_core.keyframes import (
    KeyframePlan,
    frame_features,
    parse_frame_list,
    select_keyframes,
    transition_scores,
)


def rotation_video(angles: list[float]) -> torch.Tensor:
    """x0 [1, 2, T, 1, 1] whose frame t is the unit vector at angle angles[t]: cos(f_i, f_j) = cos(a_i - a_j)."""
    a = torch.tensor(angles, dtype=torch.float64)
    return torch.stack([a.cos(), a.sin()]).float().view(1, 2, len(angles), 1, 1)


def scene_video(frames: int = 16, cuts: tuple[int, ...] = (5, 11), seed: int = 0) -> torch.Tensor:
    """x0 [1, 16, T, 8, 8]: each scene is one random vector plus 1% noise per frame; new scenes start at cuts."""
    g = torch.Generator().manual_seed(seed)
    starts = (0, *cuts)
    scenes = torch.randn(len(starts), 16, 8, 8, generator=g)
    x0 = torch.empty(1, 16, frames, 8, 8)
    for t in range(frames):
        scene = sum(1 for s in starts if s <= t) - 1
        x0[0, :, t] = scenes[scene] + 0.01 * torch.randn(16, 8, 8, generator=g)
    return x0


def pick(x0: torch.Tensor, **plan) -> list[int]:
    return list(select_keyframes(x0, KeyframePlan(**plan)).indices)


# --- parse_frame_list ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0, 6, 12-14", [0, 6, 12, 13, 14]),
        ("", []),
        ("   ", []),
        ("7", [7]),
        ("3,1,3", [1, 3]),
        ("2 - 4,", [2, 3, 4]),
        ("5-5, 0", [0, 5]),
    ],
)
def test_parse_frame_list(text, expected):
    assert parse_frame_list(text) == expected


@pytest.mark.parametrize("text", ["a", "1-", "-1", "5-3", "1.5", "1 2", "0;4"])
def test_parse_frame_list_rejects_bad_text(text):
    with pytest.raises(ValueError) as err:
        parse_frame_list(text)
    assert repr(text) in str(err.value)
    assert "0, 6, 12-14" in str(err.value)


@pytest.mark.parametrize("text", ["0-30000000", "0-99999", "512", "3, 600-601", "0-" + "9" * 9000, "0" * 20 + "1000"])
def test_parse_frame_list_bounds_indices_before_expanding(text):
    """A typo must cost neither time nor memory nor a message that lists millions of indices."""
    with pytest.raises(ValueError, match=r"names a frame beyond 511; accepted: frame indices 0\.\.511") as err:
        parse_frame_list(text)
    assert len(str(err.value)) < 200


def test_parse_frame_list_caps():
    from rhymeflow_core.keyframes import MAX_FRAME_TEXT, MAX_FRAMES

    assert MAX_FRAMES == 512 and parse_frame_list("511") == [511] and parse_frame_list("0-511") == list(range(512))
    assert parse_frame_list("0007") == [7]  # leading zeros are not digits of a large number
    assert parse_frame_list("2-4", max_index=4) == [2, 3, 4]
    with pytest.raises(ValueError, match=r"beyond 4"):
        parse_frame_list("2-5", max_index=4)
    long = ",".join(["1"] * (MAX_FRAME_TEXT // 2 + 1))
    with pytest.raises(ValueError, match=rf"the frame list is {len(long)} characters long; accepted: at most {MAX_FRAME_TEXT}"):
        parse_frame_list(long)
    with pytest.raises(ValueError) as err:
        parse_frame_list("x" * 5000)
    assert len(str(err.value)) < 400 and "(5000 characters)" in str(err.value)


def test_manual_errors_list_a_few_items():
    plan = KeyframePlan(strategy="manual", manual=tuple(range(0, 500)))
    with pytest.raises(ValueError) as err:
        plan.validate(10)
    msg = str(err.value)
    assert "manual=[0, 1, 2, 3, 4, ... (495 more)]" in msg and "indices [10, 11, 12, 13, 14, ... (485 more)]" in msg
    assert len(msg) < 200


# --- features and scores ---------------------------------------------------------------------------


def test_frame_features_layout_and_norm():
    x0 = torch.randn(1, 3, 5, 2, 4, dtype=torch.bfloat16)
    f = frame_features(x0)
    assert f.shape == (5, 3 * 2 * 4) and f.dtype == torch.float32
    assert torch.allclose(f.norm(dim=1), torch.ones(5))
    expected = x0[0, :, 2].float().flatten()
    assert torch.allclose(f[2], expected / expected.norm())


def test_frame_features_average_batch_before_normalising():
    # Normalising first would weigh both samples equally (45 degrees); the mean is dominated by the big one.
    x0 = torch.zeros(2, 2, 1, 1, 1)
    x0[0, 0] = 10.0
    x0[1, 1] = 1.0
    f = frame_features(x0)
    assert f[0, 0] > 0.99


def test_frame_features_rejects_non_video():
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        frame_features(torch.zeros(2, 3, 4, 5))


def test_transition_scores_are_one_minus_adjacent_cosine():
    angles = [0.0, 0.1, 0.4, 0.4, 1.4]
    s = transition_scores(frame_features(rotation_video(angles)))
    expected = [0.0] + [1 - math.cos(b - a) for a, b in zip(angles, angles[1:])]
    assert torch.allclose(s, torch.tensor(expected), atol=1e-6, rtol=0)


# --- selection ------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["semantic", "dynamic"])
def test_keyframes_land_on_scene_cuts(strategy):
    x0 = scene_video()
    sel = select_keyframes(x0, KeyframePlan(strategy=strategy, budget=4))
    assert sel.indices == (0, 5, 11, 15)
    top2 = sorted(range(16), key=lambda i: -sel.scores[i])[:2]
    assert sorted(top2) == [5, 11]


def test_too_many_candidates_keep_the_largest_transitions():
    # Every step turns by > acos(0.98), so the scan takes every frame; the big turns are at 3 and 7.
    inc = [0.3, 0.3, 1.0, 0.3, 0.3, 0.3, 0.8, 0.3, 0.3]
    angles = [0.0] + [sum(inc[:k]) for k in range(1, 10)]
    x0 = rotation_video(angles)
    assert pick(x0, budget=4) == [0, 3, 7, 9]
    assert pick(x0, budget=3, force_last=False) == [0, 3, 7]
    assert pick(x0, budget=2) == [0, 9]
    assert pick(x0, budget=3, force_first=False) == [3, 7, 9]


def test_too_few_candidates_add_the_largest_transitions():
    # Total turn 0.172 rad keeps every frame above 0.98 of frame 0: the scan finds nothing new.
    inc = [0.01, 0.02, 0.015, 0.08, 0.03, 0.005, 0.012]
    angles = [0.0] + [sum(inc[:k]) for k in range(1, 8)]
    x0 = rotation_video(angles)
    assert pick(x0, budget=3) == [0, 4, 7]
    assert pick(x0, budget=4) == [0, 4, 5, 7]
    # Frame 0 always starts the scan; force_first only protects it from the budget cut.
    assert pick(x0, budget=2, force_first=False) == [0, 7]


def test_dynamic_long_gap_makes_selection_easier():
    # The first keyframe after 0 comes at gap 5 >= T/M + 1: the threshold rises to 0.99, so frame 7
    # (cos 0.985 to frame 5) is taken. Semantic keeps 0.98, misses it, and fills with frame 1 instead.
    a7 = 0.5 + math.acos(0.985)
    x0 = rotation_video([0.0, 0.19, 0.0, 0.0, 0.0, 0.5, 0.5, a7, a7, a7])
    plan = dict(budget=3, force_last=False)
    assert pick(x0, strategy="dynamic", **plan) == [0, 5, 7]
    assert pick(x0, strategy="semantic", **plan) == [0, 1, 5]


def test_dynamic_short_gap_makes_selection_harder():
    # Frame 1 is taken at gap 1 <= T/M - 1: the threshold falls to 0.97, so frame 4 (cos 0.975 to
    # frame 1) is no longer taken; the budget is then filled by the largest transition (frame 3).
    a4 = 0.5 - math.acos(0.975)
    x0 = rotation_video([0.0, 0.5, 0.69, 0.31, a4, a4, a4, a4, a4, a4])
    plan = dict(budget=3, force_last=False)
    assert pick(x0, strategy="semantic", **plan) == [0, 1, 4]
    assert pick(x0, strategy="dynamic", **plan) == [0, 1, 3]


def test_dynamic_scans_past_the_budget_to_find_a_late_cut():
    # Frames 1 and 2 are small early turns, frame 8 a big cut. Alg. 1 taken literally stops after
    # [0, 1, 2] and never sees the cut; ours scans the whole clip and the budget keeps the cut.
    angles = [0.0, 0.4, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 2.2, 2.2, 2.2, 2.2]
    x0 = rotation_video(angles)
    assert pick(x0, strategy="dynamic", budget=3) == [0, 8, 11]
    assert pick(x0, strategy="semantic", budget=3) == [0, 8, 11]


@pytest.mark.parametrize("strategy", ["semantic", "dynamic", "uniform"])
@pytest.mark.parametrize("budget", [2, 3, 5, 11])
def test_budget_is_exact_and_keeps_first_and_last(strategy, budget):
    x0 = torch.randn(2, 4, 12, 3, 3, generator=torch.Generator().manual_seed(budget))
    idx = pick(x0, strategy=strategy, budget=budget)
    assert len(idx) == budget == len(set(idx))
    assert idx == sorted(idx) and idx[0] == 0 and idx[-1] == 11


@pytest.mark.parametrize(
    "frames, budget, expected",
    [(21, 4, [0, 7, 13, 20]), (21, 5, [0, 5, 10, 15, 20]), (16, 2, [0, 15]), (5, 4, [0, 1, 3, 4])],
)
def test_uniform_spacing(frames, budget, expected):
    assert pick(torch.randn(1, 1, frames, 1, 1), strategy="uniform", budget=budget) == expected


def test_uniform_single_keyframe_takes_the_forced_end():
    x0 = torch.randn(1, 1, 9, 1, 1)
    assert pick(x0, strategy="uniform", budget=1, force_last=False) == [0]
    assert pick(x0, strategy="uniform", budget=1, force_first=False) == [8]


def test_manual_sorts_dedups_and_adds_forced_frames():
    x0 = torch.randn(1, 1, 10, 1, 1)
    assert pick(x0, strategy="manual", manual=[6, 3, 6]) == [0, 3, 6, 9]
    assert pick(x0, strategy="manual", manual=[6, 3], force_first=False, force_last=False) == [3, 6]
    assert pick(x0, strategy="manual", manual=parse_frame_list("2-4")) == [0, 2, 3, 4, 9]


@pytest.mark.parametrize(
    "plan, message",
    [
        (dict(strategy="manual", manual=[3, 10]), r"manual=\[3, 10\].*\[10\] outside 0\.\.9"),
        (dict(strategy="manual", manual=list(range(1, 9))), r"selects 10 of 10"),
        (dict(strategy="manual", manual=[], force_first=False, force_last=False), r"no keyframe"),
        (dict(budget=10), r"budget=10 must be smaller than the number of latent frames \(10\)"),
        (dict(strategy="uniform", budget=12), r"budget=12 must be smaller"),
        (dict(budget=1), r"budget=1 must be at least 2"),
        (dict(budget=0, force_first=False, force_last=False), r"budget=0 must be at least 1"),
        (dict(budget=2.5), r"budget=2.5 must be an integer"),
        (dict(threshold=98.0), r"threshold=98.0 .* \[-1, 1\]"),
        (dict(strategy="dynamic", threshold=-1.5), r"threshold=-1.5"),
        (dict(strategy="random"), r"strategy='random'.*semantic, dynamic, uniform, manual"),
    ],
)
def test_invalid_plans_name_the_field(plan, message):
    with pytest.raises(ValueError, match=message):
        select_keyframes(torch.randn(1, 1, 10, 1, 1), KeyframePlan(**plan))


def test_fields_a_strategy_does_not_use_are_not_validated():
    x0 = torch.randn(1, 1, 10, 1, 1)
    assert pick(x0, strategy="manual", manual=[4], budget=99) == [0, 4, 9]
    assert pick(x0, strategy="uniform", budget=2, threshold=5.0) == [0, 9]
    assert pick(x0, strategy="semantic", budget=2, manual=[99]) == [0, 9]


def test_selection_is_deterministic():
    x0 = torch.randn(2, 4, 12, 3, 3, generator=torch.Generator().manual_seed(1))
    for strategy in ("semantic", "dynamic"):
        plan = KeyframePlan(strategy=strategy, budget=5)
        assert select_keyframes(x0, plan) == select_keyframes(x0.clone(), plan)


def test_plan_and_selection_round_trip_through_json():
    plan = KeyframePlan(strategy="manual", budget=3, threshold=0.9, manual=[2, 5], force_last=False)
    assert plan.manual == (2, 5)
    assert KeyframePlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert set(plan.to_dict()) == {"strategy", "budget", "threshold", "manual", "force_first", "force_last"}
    with pytest.raises(ValueError, match="unknown KeyframePlan keys.*'budgte'"):
        KeyframePlan.from_dict({"budgte": 3})
    sel = select_keyframes(scene_video(), KeyframePlan())
    d = json.loads(json.dumps(sel.to_dict()))
    assert d["indices"] == [0, 5, 11, 15] and len(d["scores"]) == 16 and d["strategy"] == "semantic"
