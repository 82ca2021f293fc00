"""RhymeFlow Async Sampler: a SAMPLER for SamplerCustomAdvanced / SamplerCustom."""
from comfy_api.latest import io

from ..rhymeflow_core.presets import DEFAULT_TARGET, MIN_STEPS, PRESET_INPUTS, PRESETS, TARGET
from ..rhymeflow_core.projection import PROJECTIONS
from ..rhymeflow_core.sampler import SOLVERS
from . import glue
from .common import Keyframes, Schema, custom_schedule_inputs, uses


SAMPLER_PRESETS = PRESETS + (TARGET,)


class RhymeFlowAsyncSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return Schema(
            node_id="RhymeFlowAsyncSampler",
            display_name="RhymeFlow Async Sampler",
            description="Asynchronous denoising: warm-up steps on every frame, then keyframes step every step while the "
                        "other frames skip between rhythmic sync points. Needs a MODEL patched by RhymeFlow Projection "
                        f"Patch (a flow model) and at least {MIN_STEPS} steps from noise. Wan 2.2 A14B: one of these per expert "
                        "(SplitSigmas); the low-noise run starts with one sync pass and RhymeFlow Stats joins both step maps.",
            inputs=[
                Keyframes.Input("keyframes", tooltip="From RhymeFlow Keyframes."),
                io.Combo.Input("preset", options=list(SAMPLER_PRESETS), default="paper",
                               tooltip="paper: warm up while sigma >= 0.945 (the paper's 8 of 50 steps at shift 3), strides 2-3; "
                                       "balanced: strides 2-4; fast: warm up while sigma >= 0.96, strides 3-5; custom: the "
                                       "warmup/n_small/n_large inputs below; target: the schedule that reaches target_speedup "
                                       "(longer strides, then fewer passes). Presets are resolved on the run's sigmas.",
                               extra_dict=uses(PRESET_INPUTS)),
                *custom_schedule_inputs(),
                io.Combo.Input("keyframe_solver", options=list(SOLVERS), default="euler",
                               tooltip="ODE step for keyframes: euler (as ComfyUI's euler) or ab2 (Adams-Bashforth 2)."),
                io.Combo.Input("projection", options=list(PROJECTIONS), default="quadratic",
                               tooltip="How skipped frames move between sync points: linear (the paper's Eq. 3, Euler with the "
                                       "sync-point velocity) or quadratic (ours: adds the curvature seen between the last two "
                                       "sync points; same cost; on the shipped test bed at CFG 5: +1.3 dB at 50 steps, even at 30)."),
                io.Float.Input("target_speedup", default=DEFAULT_TARGET, min=1.05, max=20.0, step=0.05, optional=True,
                               tooltip="preset=target only: the FLOP-ideal speed-up to reach, priced on this model at this "
                                       "latent size; the run's Stats shows the realised figure beside it."),
                io.Boolean.Input("adaptive", default=False, optional=True,
                                 tooltip="Re-choose keyframes at every sync point: the frames whose prediction moved most since "
                                         "the last full pass (same count, same cost). Measured neutral on the test bed."),
            ],
            outputs=[io.Sampler.Output(tooltip="Connect to SamplerCustomAdvanced's sampler input.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, keyframes, preset, warmup, n_small, n_large, keyframe_solver, projection, target_speedup=DEFAULT_TARGET,
                adaptive=False) -> io.NodeOutput:
        import comfy.samplers

        glue.check_choices(glue.SAMPLER_NODE, {"preset": (preset, SAMPLER_PRESETS), "keyframe_solver": (keyframe_solver, SOLVERS),
                                               "projection": (projection, PROJECTIONS)})
        if preset == "custom":
            glue.check_strides(glue.SAMPLER_NODE, warmup, n_small, n_large)
        hidden = getattr(cls, "hidden", None)
        node_id = getattr(hidden, "unique_id", None) if hidden is not None else None
        sampler = comfy.samplers.KSAMPLER(glue.sample_rhymeflow_node, extra_options={
            "plan": keyframes, "preset": preset, "warmup": int(warmup), "n_small": int(n_small), "n_large": int(n_large),
            "keyframe_solver": keyframe_solver, "projection": projection, "node_id": node_id,
            "target_speedup": float(target_speedup), "adaptive": bool(adaptive),
        })
        return io.NodeOutput(sampler)
