"""RhymeFlow's ComfyUI nodes: V3 schemas and delegation only (the work is in ``rhymeflow_core``).

The node modules import ``comfy_api``, so ``node_list()`` imports them lazily; this package itself
imports without ComfyUI.
"""


def node_list() -> list:
    from .asymrnr_node import RhymeFlowAsymRnR, RhymeFlowAsymRnRCalibrate, RhymeFlowAsymRnRSchedule, RhymeFlowAsymRnRStats
    from .compare_node import RhymeFlowCompare
    from .dropin_node import RhymeFlowAccelerate
    from .keyframes_node import RhymeFlowKeyframes
    from .patch_node import RhymeFlowProjectionPatch
    from .sampler_node import RhymeFlowAsyncSampler
    from .stats_node import RhymeFlowStats
    from .testbed_nodes import RhymeFlowTestbedConditioning, RhymeFlowTestbedDecode, RhymeFlowTestbedEmptyLatent

    return [RhymeFlowAccelerate, RhymeFlowKeyframes, RhymeFlowAsyncSampler, RhymeFlowProjectionPatch, RhymeFlowStats, RhymeFlowCompare,
            RhymeFlowTestbedConditioning, RhymeFlowTestbedEmptyLatent, RhymeFlowTestbedDecode,
            RhymeFlowAsymRnR, RhymeFlowAsymRnRCalibrate, RhymeFlowAsymRnRSchedule, RhymeFlowAsymRnRStats]
