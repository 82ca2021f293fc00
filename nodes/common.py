"""What the RhymeFlow node schemas share: custom socket types, the custom-schedule inputs, which inputs a choice
hides (``uses``), and where each node is listed and found in the frontend."""
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

from comfy_api.latest import io

CATEGORY = "RhymeFlow"
ASYMRNR_CATEGORY = f"{CATEGORY}/AsymRnR"  # another method (token reduction), combinable with RhymeFlow
TESTBED_CATEGORY = f"{CATEGORY}/test bed"  # only for the shipped test-bed model; not for real models
ADVANCED = {"advanced": True}  # input option the frontend hides behind "show advanced" (0.8.2 has no kwarg for it)

Keyframes = io.Custom("RHYMEFLOW_KEYFRAMES")

USES = "rhymeflow_uses"  # on a combo input: {option: [inputs that option reads]}; the frontend hides the others
OVERRIDES = "rhymeflow_overrides"  # on an optional socket: [widget inputs it replaces]; hidden while it is connected


def uses(table: Mapping[str, Sequence[str]], **extra) -> dict:
    """``extra_dict`` of a combo whose options each read only some inputs (a core table such as
    ``presets.PRESET_INPUTS``). web/rhymeflow_inputs.js hides, while an option is selected, every input another
    option lists and this one does not; ``Schema`` drops the names a node does not have. The inputs stay in the
    schema (saved workflows and API prompts are unchanged), so hiding never changes what runs."""
    return {**extra, USES: {option: list(names) for option, names in table.items()}}


def custom_schedule_inputs() -> list:
    """warmup / n_small / n_large of ``preset = custom``, the same on the Async Sampler and RhymeFlow Accelerate
    (hidden unless the preset reads them: ``presets.PRESET_INPUTS``)."""
    return [
        io.Int.Input("warmup", default=5, min=1, max=1000,
                     tooltip="preset=custom: full steps on every frame before keyframes are chosen."),
        io.Int.Input("n_small", default=2, min=1, max=100,
                     tooltip="preset=custom: stride (steps per sync point) early after warm-up."),
        io.Int.Input("n_large", default=3, min=1, max=100,
                     tooltip="preset=custom: stride late in the run (>= n_small)."),
    ]

_SPEED = ["speed", "speed up", "fast", "accelerate", "acceleration"]
# node_id -> (category, search aliases). The frontend's node search matches the node id and display name only;
# artists look for what a node does ("speed", "cache"), so each node lists those words here. The ids never
# change: saved workflows refer to them.
LISTING: dict[str, tuple[str, list[str]]] = {
    "RhymeFlowAccelerate": (CATEGORY, ["drop-in", "ksampler", "cache", "keyframe", "skip steps", "teacache", "easycache", *_SPEED]),
    "RhymeFlowKeyframes": (CATEGORY, ["keyframe", "key frames", "keyframe selection", *_SPEED]),
    "RhymeFlowAsyncSampler": (CATEGORY, ["async sampler", "video sampler", "skip steps", "keyframe", *_SPEED]),
    "RhymeFlowProjectionPatch": (CATEGORY, ["cache", "kv cache", "context cache", "patch model", *_SPEED]),
    "RhymeFlowStats": (CATEGORY, ["stats", "step map", "speed-up", "benchmark", "keyframe", *_SPEED]),
    "RhymeFlowCompare": (CATEGORY, ["compare", "psnr", "ssim", "quality", "dense vs fast", "fast"]),
    "RhymeFlowAsymRnR": (ASYMRNR_CATEGORY, ["token reduction", "token merging", "tome", "attention", *_SPEED]),
    "RhymeFlowAsymRnRCalibrate": (ASYMRNR_CATEGORY, ["calibrate", "token reduction", "accelerate"]),
    "RhymeFlowAsymRnRSchedule": (ASYMRNR_CATEGORY, ["schedule", "token reduction", "accelerate", "cache"]),
    "RhymeFlowAsymRnRStats": (ASYMRNR_CATEGORY, ["stats", "token reduction", "speed-up", "accelerate"]),
    "RhymeFlowTestbedConditioning": (TESTBED_CATEGORY, ["test bed", "testbed", "demo", "conditioning"]),
    "RhymeFlowTestbedEmptyLatent": (TESTBED_CATEGORY, ["test bed", "testbed", "demo", "empty latent"]),
    "RhymeFlowTestbedDecode": (TESTBED_CATEGORY, ["test bed", "testbed", "demo", "decode"]),
}

# ComfyUI added ``Schema.search_aliases`` (and the frontend started searching it) after 0.8.2; with an older
# ComfyUI the subclass below adds the field and puts it into /object_info itself, so a newer frontend on an
# older server finds the nodes too.
_NATIVE_ALIASES = "search_aliases" in {f.name for f in fields(io.Schema)}


@dataclass
class _NodeInfoV1(io.NodeInfoV1):
    search_aliases: list[str] | None = None


@dataclass
class Schema(io.Schema):
    """``io.Schema`` whose category and search aliases come from ``LISTING`` (by ``node_id``) unless given."""

    if not _NATIVE_ALIASES:
        search_aliases: list[str] = field(default_factory=list)

    def __post_init__(self):
        getattr(super(), "__post_init__", lambda: None)()  # a later io.Schema may have its own
        category, aliases = LISTING[self.node_id]  # a KeyError here: add the new node to LISTING
        if self.category == io.Schema.category:  # not set by the node: the dataclass default "sd"
            self.category = category
        if not self.search_aliases:
            self.search_aliases = list(aliases)
        names = {i.id for i in self.inputs}
        for i in self.inputs:  # a shared table may name inputs this node does not have (threshold on Accelerate)
            rules = (i.extra_dict or {}).get(USES)
            if rules is not None:
                i.extra_dict[USES] = {option: [n for n in used if n in names] for option, used in rules.items()}

    def get_v1_info(self, cls):
        info = super().get_v1_info(cls)
        if _NATIVE_ALIASES:
            return info
        return _NodeInfoV1(**{f.name: getattr(info, f.name) for f in fields(info)}, search_aliases=self.search_aliases)
