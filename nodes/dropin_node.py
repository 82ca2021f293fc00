"""RhymeFlow Accelerate: MODEL -> MODEL; put it before any KSampler/KSamplerAdvanced/SamplerCustom(Advanced)."""
import functools

from comfy_api.latest import io

from ..rhymeflow_core.context_cache import PLACEMENTS
from ..rhymeflow_core.dropin import DropinConfig
from ..rhymeflow_core.keyframes import STRATEGIES, STRATEGY_INPUTS, KeyframePlan
from ..rhymeflow_core.patch import CONTEXT_MODES, PatchConfig
from ..rhymeflow_core.projection import PROJECTIONS
from ..rhymeflow_core.presets import DEFAULT_TARGET, MIN_STEPS, PRESET_INPUTS, PRESETS, TARGET
from . import glue
from .common import ADVANCED, OVERRIDES, Keyframes, Schema, custom_schedule_inputs, uses
from .patch_node import CACHE_DTYPES

AUTO_STRATEGIES = tuple(s for s in STRATEGIES if s != "manual")  # manual picks come from a RhymeFlow Keyframes node
DROPIN_PRESETS = PRESETS + (TARGET,)


class RhymeFlowAccelerate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return Schema(
            node_id="RhymeFlowAccelerate",
            display_name=glue.DROPIN_NODE,
            description="Drop-in RhymeFlow: put it between ModelSamplingSD3 (and LoRAs) and your KSampler, KSamplerAdvanced "
                        "or SamplerCustom(Advanced); keep any sampler. After warm-up, keyframes are computed every step and "
                        "the other frames are re-evaluated only at rhythmic sync points (in between the sampler moves them "
                        "along their last prediction). Flow video models only (Wan 2.1/2.2, HunyuanVideo, LTX-Video, Mochi), "
                        f"at least {MIN_STEPS} steps from noise. Wan 2.2 A14B: one node per expert.",
            inputs=[
                io.Model.Input("model", tooltip="A supported video DiT, after ModelSampling and LoRAs."),
                io.Combo.Input("preset", options=list(DROPIN_PRESETS), default="paper",
                               tooltip="paper: warm up while sigma >= 0.945, strides 2-3; balanced: strides 2-4; fast: warm up "
                                       "while sigma >= 0.96, strides 3-5; target: the schedule that reaches target_speedup "
                                       "(longer strides up to the paper's speed-up, then the paper's strides on fewer passes, "
                                       "the other steps reusing the last prediction); custom: the warmup/n_small/n_large inputs. Resolved on the "
                                       "sampler's own sigmas.",
                               extra_dict=uses(PRESET_INPUTS)),
                io.Float.Input("target_speedup", default=DEFAULT_TARGET, min=1.05, max=20.0, step=0.05,
                               tooltip="preset=target only: the FLOP-ideal speed-up to reach, priced on this model at this "
                                       "latent size (wall-clock gains are lower)."),
                io.Combo.Input("strategy", options=list(AUTO_STRATEGIES), default="semantic",
                               tooltip="How keyframes are chosen after warm-up (hidden while 'keyframes' is connected).",
                               extra_dict=uses(STRATEGY_INPUTS)),
                io.Int.Input("budget", default=4, min=1, max=256,
                             tooltip="Number of keyframes, first and last frame included (ignored when 'keyframes' is connected)."),
                io.Combo.Input("context_mode", options=list(CONTEXT_MODES), default="kv",
                               tooltip="What a sync point stores for non-keyframes: kv = post-RoPE keys/values (fastest), "
                                       "hidden = block inputs, re-projected each step."),
                *custom_schedule_inputs(),
                io.Combo.Input("placement", options=list(PLACEMENTS), default="device", extra_dict=ADVANCED,
                               tooltip="Where the context cache lives: device (fast) or cpu (saves GPU memory)."),
                io.Combo.Input("cache_dtype", options=list(CACHE_DTYPES), default="auto", extra_dict=ADVANCED,
                               tooltip="Storage dtype of the context cache; auto keeps the model's dtype."),
                Keyframes.Input("keyframes", optional=True, extra_dict={OVERRIDES: ["strategy", "budget"]},
                                tooltip="Optional RhymeFlow Keyframes (manual picks, threshold); overrides strategy and budget."),
                io.Boolean.Input("adaptive", default=False, optional=True,
                                 tooltip="Re-choose keyframes at every sync point: the frames whose prediction moved most since "
                                         "the last full pass (same count, same cost). Measured neutral on the test bed."),
                io.Combo.Input("projection", options=list(PROJECTIONS), default="quadratic", optional=True,
                               tooltip="How the other frames move between sync points: linear (the paper: along their last "
                                       "prediction) or quadratic (ours: that path bent by the change seen between the last two "
                                       "full passes; same cost; on the Async Sampler's test-bed runs +1.3 dB at 50 steps, even at 30)."),
            ],
            outputs=[io.Model.Output(tooltip="The accelerated model; connect it to your sampler (and to RhymeFlow Stats).")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, preset, target_speedup, strategy, budget, context_mode, warmup, n_small, n_large, placement, cache_dtype,
                keyframes=None, adaptive=False, projection="quadratic") -> io.NodeOutput:
        glue.check_choices(glue.DROPIN_NODE, {"preset": (preset, DROPIN_PRESETS), "strategy": (strategy, AUTO_STRATEGIES),
                                              "context_mode": (context_mode, CONTEXT_MODES), "placement": (placement, PLACEMENTS),
                                              "cache_dtype": (cache_dtype, CACHE_DTYPES), "projection": (projection, PROJECTIONS)})
        custom = glue.check_strides(glue.DROPIN_NODE, warmup, n_small, n_large) if preset == "custom" else DropinConfig().custom
        plan = keyframes if keyframes is not None else KeyframePlan(strategy=strategy, budget=int(budget))
        config = PatchConfig(context_mode=context_mode, placement=placement, cache_dtype=cache_dtype)
        hidden = getattr(cls, "hidden", None)
        node_id = getattr(hidden, "unique_id", None) if hidden is not None else None
        dropin = DropinConfig(plan=plan, preset=preset, custom=custom, target_speedup=float(target_speedup), node=glue.DROPIN_NODE,
                              adaptive=bool(adaptive), projection=projection,
                              node_id=node_id,
                              report=functools.partial(glue.send_stats, node_id))
        return io.NodeOutput(glue.accelerate_model(model, config, dropin))
