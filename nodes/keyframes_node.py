"""RhymeFlow Keyframes: how keyframes are chosen once the frame count is known (a ``KeyframePlan``)."""
from comfy_api.latest import io

from ..rhymeflow_core.keyframes import MAX_FRAMES, STRATEGIES, STRATEGY_INPUTS, KeyframePlan, clip_text, parse_frame_list
from .common import ADVANCED, Keyframes, Schema, uses

NODE = "RhymeFlow Keyframes"


class RhymeFlowKeyframes(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return Schema(
            node_id="RhymeFlowKeyframes",
            display_name=NODE,
            description="Which latent frames RhymeFlow denoises at every step; the others jump several steps at a time "
                        "along their trajectory. Keyframes are chosen from the x0 prediction at the end of warm-up.",
            inputs=[
                io.Combo.Input("strategy", options=list(STRATEGIES), default="semantic",
                               tooltip="semantic: a new keyframe where a frame stops resembling the last keyframe (authors' rule); "
                                       "dynamic: the paper's Alg. 1 with an adaptive threshold; uniform: evenly spaced; "
                                       "manual: the indices typed below.",
                               extra_dict=uses(STRATEGY_INPUTS)),
                io.Int.Input("budget", default=4, min=1, max=256,
                             tooltip="Number of keyframes in latent frames, forced first/last included; must be smaller than the "
                                     "number of latent frames. Ignored by manual."),
                io.Float.Input("threshold", default=0.98, min=-1.0, max=1.0, step=0.001, extra_dict=ADVANCED,
                               tooltip="Cosine similarity below which a frame starts a new keyframe (semantic, dynamic)."),
                io.String.Input("manual", default="", placeholder="0, 6, 12-14",
                                tooltip="Latent frame indices for strategy=manual: integers and inclusive ranges separated by "
                                        f"commas, e.g. '0, 6, 12-14' (indices 0..{MAX_FRAMES - 1}). Ignored by other strategies."),
                io.Boolean.Input("force_first", default=True, extra_dict=ADVANCED,
                                 tooltip="Always keep latent frame 0 as a keyframe."),
                io.Boolean.Input("force_last", default=True, extra_dict=ADVANCED,
                                 tooltip="Always keep the last latent frame as a keyframe."),
            ],
            outputs=[Keyframes.Output(display_name="keyframes", tooltip="The keyframe plan for RhymeFlow Async Sampler.")],
        )

    @classmethod
    def execute(cls, strategy, budget, threshold, manual, force_first, force_last) -> io.NodeOutput:
        if strategy not in STRATEGIES:
            raise ValueError(f"{NODE}: input 'strategy' = {strategy!r}; accepted: {', '.join(STRATEGIES)}")
        if int(budget) < 1:
            raise ValueError(f"{NODE}: input 'budget' = {budget}; accepted: an integer >= 1 (and below the latent frame count)")
        if not -1.0 <= float(threshold) <= 1.0:
            raise ValueError(f"{NODE}: input 'threshold' = {threshold}; accepted: a cosine similarity in [-1, 1] (default 0.98)")
        frames: list[int] = []
        if strategy == "manual":  # other strategies ignore the text: it is neither parsed nor kept in the plan
            try:
                frames = parse_frame_list(manual or "")
            except ValueError as exc:
                raise ValueError(f"{NODE}: input 'manual' = {clip_text(manual or '')}: {exc}") from None
        if strategy == "manual" and not frames and not (force_first or force_last):
            raise ValueError(f"{NODE}: input 'manual' is empty with force_first and force_last off; accepted: at least one "
                             "latent frame index, e.g. '0, 6, 12-14'")
        plan = KeyframePlan(strategy=strategy, budget=int(budget), threshold=float(threshold), manual=tuple(frames),
                            force_first=bool(force_first), force_last=bool(force_last))
        return io.NodeOutput(plan)
