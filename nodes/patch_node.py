"""RhymeFlow Projection Patch: MODEL -> MODEL with the keyframe-only passes installed (the input is not changed)."""
from comfy_api.latest import io

from ..rhymeflow_core.context_cache import PLACEMENTS
from ..rhymeflow_core.patch import CONTEXT_MODES, PatchConfig
from . import glue
from .common import ADVANCED, Schema

CACHE_DTYPES = ("auto", "float16", "bfloat16", "float32")


class RhymeFlowProjectionPatch(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return Schema(
            node_id="RhymeFlowProjectionPatch",
            display_name="RhymeFlow Projection Patch",
            description="Lets RhymeFlow Async Sampler run keyframe-only passes: keyframe queries attend to every frame, "
                        "non-keyframe keys/values come from the last sync point. Without a RhymeFlow sampler the model runs "
                        "unchanged. Supported: Wan 2.1 / 2.2 (T2V, I2V, FLF2V, TI2V-5B, A14B experts), HunyuanVideo, "
                        "LTX-Video and Mochi; anything else is refused with the list.",
            inputs=[
                io.Model.Input("model", tooltip="A supported video DiT (after ModelSampling/LoRAs if you use them)."),
                io.Combo.Input("context_mode", options=list(CONTEXT_MODES), default="kv",
                               tooltip="What the sync point stores for non-keyframes: kv = post-RoPE keys/values (fastest "
                                       "keyframe passes), hidden = block inputs, re-projected each step (the authors' choice)."),
                io.Combo.Input("placement", options=list(PLACEMENTS), default="device", extra_dict=ADVANCED,
                               tooltip="Where the context cache lives: device (fast) or cpu (saves GPU memory on large models)."),
                io.Combo.Input("cache_dtype", options=list(CACHE_DTYPES), default="auto", extra_dict=ADVANCED,
                               tooltip="Storage dtype of the context cache; auto keeps the model's dtype."),
            ],
            outputs=[io.Model.Output(tooltip="The patched model; connect it to the guider and to RhymeFlow Stats.")],
        )

    @classmethod
    def execute(cls, model, context_mode, placement, cache_dtype) -> io.NodeOutput:
        glue.check_choices(glue.PATCH_NODE, {"context_mode": (context_mode, CONTEXT_MODES), "placement": (placement, PLACEMENTS),
                                             "cache_dtype": (cache_dtype, CACHE_DTYPES)})
        config = PatchConfig(context_mode=context_mode, placement=placement, cache_dtype=cache_dtype)
        return io.NodeOutput(glue.patch_model(model, config))
