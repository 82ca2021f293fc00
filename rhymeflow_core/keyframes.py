"""Keyframe selection: which latent frames are denoised at every step between rhythmic sync points.

RhymeFlow spends its compute on M keyframes and lets the other frames jump several steps at a time,
so the keyframes should sit where the content changes. The signal is the x0 prediction at the end of
warm-up (the noisy latent is too noisy to compare frames). Strategies:

- ``semantic``: the authors' released rule. Scan frames in order; a frame becomes a keyframe when its
  cosine similarity to the last keyframe drops below ``threshold``; then force exactly ``budget``.
- ``dynamic``: the paper's Alg. 1 (not in the released code): the same scan with a threshold that
  adapts to how far apart the accepted keyframes are; then the same exact budget.
- ``uniform``: evenly spaced frames, the ablation baseline and a content-free fallback.
- ``manual``: the user's own indices.

``budget`` counts every keyframe, forced first/last frames included.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F

STRATEGIES = ("semantic", "dynamic", "uniform", "manual")
# The node inputs each strategy reads besides force_first/force_last (the nodes hide the others: see
# presets.PRESET_INPUTS).
STRATEGY_INPUTS: dict[str, tuple[str, ...]] = {
    "semantic": ("budget", "threshold"), "dynamic": ("budget", "threshold"), "uniform": ("budget",), "manual": ("manual",),
}

# Alg. 1 leaves its constants open. One hundredth of cosine is a gentle nudge next to the 0.98
# default; a slack of one frame either side of the ideal spacing ignores off-by-one gaps.
DYNAMIC_STEP = 0.01
DYNAMIC_SLACK_UP = 1.0
DYNAMIC_SLACK_DOWN = 1.0

_FRAME_ITEM = re.compile(r"^(\d+)(?:\s*-\s*(\d+))?$")

# Hard caps on what a frame list may ask for, checked before anything is built: a typo such as
# "0-30000000" would otherwise build (and an error would print) tens of millions of indices. 512 latent
# frames is far above real video lengths (Wan's 81 pixel frames are 21 latent frames); the step-map
# route uses the same cap.
MAX_FRAMES = 512
MAX_FRAME_TEXT = 20 * MAX_FRAMES  # characters: every index written out, with commas, fits easily
SHOWN_ITEMS = 5  # how many offending items an error message lists


def few(items, limit: int = SHOWN_ITEMS) -> str:
    """``[1, 2, 3, ...]`` with at most ``limit`` items and the count of the rest, so a message stays short."""
    items = list(items)
    shown = ", ".join(repr(i) if isinstance(i, str) else str(i) for i in items[:limit])
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return f"[{shown}{more}]"


def clip_text(text: str, limit: int = 40) -> str:
    """``repr(text)``, cut to ``limit`` characters: error messages must not grow with the input."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def parse_frame_list(text: str, max_index: int = MAX_FRAMES - 1) -> list[int]:
    """``"0, 6, 12-14"`` -> ``[0, 6, 12, 13, 14]`` (sorted, unique); blank text -> ``[]``.

    Ranges are inclusive because that is how people count frames in a text box; empty items
    (a trailing comma) are ignored. The text length and every index are checked against
    ``MAX_FRAME_TEXT`` and ``max_index`` before any range is expanded, so the work and the error
    message stay small whatever is typed.
    """
    if len(text) > MAX_FRAME_TEXT:
        raise ValueError(f"the frame list is {len(text)} characters long; accepted: at most {MAX_FRAME_TEXT}")
    out: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        m = _FRAME_ITEM.match(item)
        numbers = [g for g in m.groups() if g is not None] if m else []
        if any(len(g.lstrip("0")) > len(str(max_index)) or int(g) > max_index for g in numbers):
            raise ValueError(f"frame list item {clip_text(item)} names a frame beyond {max_index}; "
                             f"accepted: frame indices 0..{max_index}")
        if m is None or int(numbers[-1]) < int(numbers[0]):
            raise ValueError(
                f"cannot read frame list {clip_text(text)}: {clip_text(item)} is not a frame index or an ascending range; "
                "expected non-negative integers and inclusive ranges separated by commas, e.g. '0, 6, 12-14'"
            )
        out.update(range(int(numbers[0]), int(numbers[-1]) + 1))
    return sorted(out)


def frame_features(x0: torch.Tensor) -> torch.Tensor:
    """``x0 [B, C, T, H, W]`` -> ``[T, C*H*W]`` float32 unit vectors, one per latent frame.

    The batch (e.g. the CFG branches or several prompts) is averaged before normalising, as the
    authors do, so one selection serves the whole batch.
    """
    if x0.dim() != 5:
        raise ValueError(f"x0 must be a video latent [B, C, T, H, W]; got shape {tuple(x0.shape)}")
    mean = x0.float().mean(dim=0)  # [C, T, H, W]
    return F.normalize(mean.transpose(0, 1).reshape(mean.shape[1], -1), dim=1)


def transition_scores(features: torch.Tensor) -> torch.Tensor:
    """``[T]`` scores ``1 - cos(f_i, f_{i-1})`` for unit-vector features; frame 0 has no predecessor: 0.

    Clamped at 0 so that identical frames read as 0 rather than as float noise like -1e-7.
    """
    scores = torch.zeros(features.shape[0], dtype=torch.float32, device=features.device)
    scores[1:] = (1.0 - (features[1:] * features[:-1]).sum(dim=1).float()).clamp_min(0.0)
    return scores


@dataclass(frozen=True)
class KeyframePlan:
    """What the "RhymeFlow Keyframes" node outputs: how to choose keyframes once frames are known.

    ``budget`` is ignored by ``manual``; ``threshold`` is used by ``semantic`` and ``dynamic`` only;
    ``manual`` is used by ``manual`` only, so switching strategy in the UI does not lose the picks.
    Frame 0 always starts the similarity scan (the paper's ``K = {first frame}``); ``force_first``
    only decides whether the budget may drop it again.
    """

    strategy: str = "semantic"
    budget: int = 4
    threshold: float = 0.98
    manual: tuple[int, ...] = ()
    force_first: bool = True
    force_last: bool = True

    def __post_init__(self) -> None:
        # Callers pass lists (parse_frame_list, JSON); a tuple keeps the plan hashable and immutable.
        object.__setattr__(self, "manual", tuple(self.manual))

    def keyframe_count(self) -> int:
        """How many keyframes a run with this plan has (every strategy but manual forces exactly ``budget``)."""
        return len(set(self.manual)) if self.strategy == "manual" else self.budget

    def _forced(self, num_frames: int) -> set[int]:
        """The frames the plan always keeps."""
        return ({0} if self.force_first else set()) | ({num_frames - 1} if self.force_last else set())

    def validate(self, num_frames: int) -> None:
        """Raise ``ValueError`` naming the field, its value and what is accepted."""
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r} is not known; accepted: {', '.join(STRATEGIES)}")
        if self.strategy == "manual":
            self._validate_manual(num_frames)
            return
        if isinstance(self.budget, bool) or not isinstance(self.budget, int):
            raise ValueError(f"budget={self.budget!r} must be an integer number of keyframes")
        if self.budget >= num_frames:
            raise ValueError(
                f"budget={self.budget} must be smaller than the number of latent frames ({num_frames}): "
                "with every frame a keyframe nothing is skipped; use the plain sampler or a smaller budget"
            )
        n_forced = len(self._forced(num_frames))
        if self.budget < max(1, n_forced):
            raise ValueError(
                f"budget={self.budget} must be at least {max(1, n_forced)}: the budget counts every keyframe, "
                f"including the {n_forced} forced by force_first/force_last"
            )
        if self.strategy in ("semantic", "dynamic") and (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, (int, float))
            or not -1.0 <= self.threshold <= 1.0
        ):
            raise ValueError(
                f"threshold={self.threshold!r} is a cosine similarity and must lie in [-1, 1] (default 0.98)"
            )

    def _validate_manual(self, num_frames: int) -> None:
        bad = [i for i in self.manual if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_frames]
        if bad:
            raise ValueError(
                f"manual={few(self.manual)} has indices {few(bad)} outside 0..{num_frames - 1} "
                f"(the video has {num_frames} latent frames)"
            )
        picked = set(self.manual) | self._forced(num_frames)
        if not picked:
            raise ValueError(
                "manual=[] with force_first and force_last off selects no keyframe; give at least one index"
            )
        if len(picked) >= num_frames:
            raise ValueError(
                f"manual={few(self.manual)} (with forced first/last) selects {len(picked)} of {num_frames} latent "
                "frames: with every frame a keyframe nothing is skipped; leave at least one frame out"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["manual"] = list(self.manual)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "KeyframePlan":
        """Inverse of ``to_dict``; unknown keys are an error so a typo is not silently a default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown KeyframePlan keys {unknown}; accepted: {sorted(known)}")
        return cls(**d)


@dataclass(frozen=True)
class KeyframeSelection:
    """The chosen keyframes and the per-frame transition scores behind them (for the UI and logs)."""

    indices: tuple[int, ...]
    scores: tuple[float, ...]
    strategy: str

    def to_dict(self) -> dict:
        return {"indices": list(self.indices), "scores": list(self.scores), "strategy": self.strategy}


def _scan_semantic(cos: list[list[float]], threshold: float) -> list[int]:
    """The authors' scan: a frame is a keyframe when ``cos(frame, last keyframe) < threshold``."""
    selected = [0]
    for i in range(1, len(cos)):
        if cos[i][selected[-1]] < threshold:
            selected.append(i)
    return selected


def _scan_dynamic(cos: list[list[float]], threshold: float, budget: int) -> list[int]:
    """Paper Alg. 1: the scan with a threshold steered towards an even spacing ``L_avg = T / budget``.

    A frame is taken when its similarity is *below* the threshold, so raising the threshold makes
    selection easier. When a keyframe is accepted at gap ``dL`` from the previous one:
    ``dL >= L_avg + DYNAMIC_SLACK_UP`` means keyframes are too sparse and the threshold rises by
    ``DYNAMIC_STEP``; ``dL <= L_avg - DYNAMIC_SLACK_DOWN`` means they are too dense and it falls.
    (The paper writes "tau - dtau (loosen)" for the long gap; with "select if similarity < tau",
    loosening is an increase, which is what this does.) Unlike Alg. 1 the scan does not stop once it
    holds ``budget`` frames: on fast-moving clips every early frame passes the threshold, so stopping
    fills the budget with the first frames and misses later scene cuts (seen on the test bed). The
    whole clip is scanned and the budget rule keeps the strongest transitions.
    """
    l_avg = len(cos) / budget
    selected = [0]
    for i in range(1, len(cos)):
        if cos[i][selected[-1]] < threshold:
            gap = i - selected[-1]
            selected.append(i)
            if gap >= l_avg + DYNAMIC_SLACK_UP:
                threshold += DYNAMIC_STEP
            elif gap <= l_avg - DYNAMIC_SLACK_DOWN:
                threshold -= DYNAMIC_STEP
    return selected


def _enforce_budget(selected: list[int], scores: list[float], budget: int, forced: set[int]) -> list[int]:
    """Exactly ``budget`` frames: the forced ones always, otherwise the largest transition scores win.

    Too many: keep the non-forced frames with the highest scores. Too few: add the unselected frames
    with the highest scores. Ties go to the earlier frame (stable sort), so the result is deterministic.
    Validation guarantees ``len(forced) <= budget < T``, so there are always enough candidates.
    """
    chosen = set(selected) | forced
    if len(chosen) > budget:
        free = sorted(sorted(chosen - forced), key=lambda i: -scores[i])
        chosen = forced | set(free[: budget - len(forced)])
    elif len(chosen) < budget:
        extra = sorted((i for i in range(len(scores)) if i not in chosen), key=lambda i: -scores[i])
        chosen |= set(extra[: budget - len(chosen)])
    return sorted(chosen)


def _uniform(num_frames: int, plan: KeyframePlan) -> list[int]:
    """``budget`` frames evenly spaced from first to last; a budget of one takes the forced end."""
    if plan.budget == 1:
        return [num_frames - 1] if plan.force_last and not plan.force_first else [0]
    step = (num_frames - 1) / (plan.budget - 1)
    return sorted({round(k * step) for k in range(plan.budget)})


def select_keyframes(x0: torch.Tensor, plan: KeyframePlan) -> KeyframeSelection:
    """Choose keyframes from the x0 prediction ``[B, C, T, H, W]`` at the end of warm-up.

    Scores are always computed so the UI can show why frames were (or were not) chosen. The small
    ``[T, T]`` similarity matrix is moved to the CPU once; the scan then runs on Python floats.
    """
    features = frame_features(x0)
    num_frames = x0.shape[2]
    plan.validate(num_frames)
    scores = transition_scores(features).cpu().tolist()
    forced = plan._forced(num_frames)
    if plan.strategy == "manual":
        indices = sorted(set(plan.manual) | forced)
    elif plan.strategy == "uniform":
        indices = _uniform(num_frames, plan)
    else:
        cos = (features @ features.T).cpu().tolist()
        if plan.strategy == "semantic":
            selected = _scan_semantic(cos, plan.threshold)
        else:
            selected = _scan_dynamic(cos, plan.threshold, plan.budget)
        if plan.force_last:
            selected.append(num_frames - 1)
        indices = _enforce_budget(selected, scores, plan.budget, forced)
    return KeyframeSelection(indices=tuple(indices), scores=tuple(scores), strategy=plan.strategy)
