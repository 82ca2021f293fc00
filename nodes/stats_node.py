"""RhymeFlow Stats: what the last RhymeFlow run on a patched MODEL computed, skipped and cost."""
from comfy_api.latest import io

from ..rhymeflow_core.stats import RunResult, join_expert_results, ui_record
from . import glue
from .common import Schema

NODE = "RhymeFlow Stats"


class RhymeFlowStats(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return Schema(
            node_id="RhymeFlowStats",
            display_name=NODE,
            description="Step map (frames x steps), keyframes and their transition scores, full vs keyframe-only passes, "
                        "FLOP-ideal and measured speed-up and context-cache size of the last RhymeFlow run.",
            is_output_node=True,
            inputs=[
                io.Model.Input("model", tooltip="The MODEL that went into the sampler (output of RhymeFlow Accelerate or Projection Patch)."),
                io.Latent.Input("latent", tooltip="The (last) sampler's output; it orders execution after sampling and passes through."),
                io.Model.Input("second_model", optional=True,
                               tooltip="Wan 2.2 A14B: the low-noise expert's patched MODEL (its sampler runs second); the step "
                                       "map then spans both experts with the switch marked. Leave empty for one-model runs."),
            ],
            outputs=[
                io.Latent.Output(display_name="latent", tooltip="The input latent, unchanged."),
                io.String.Output(display_name="summary", tooltip="A text summary of the run."),
            ],
        )

    @classmethod
    def execute(cls, model, latent, second_model=None) -> io.NodeOutput:
        first = _last_result(model, "model")
        if second_model is not None:
            with glue.node_errors(NODE):
                stats = ui_record(join_expert_results(first, _last_result(second_model, "second_model")))
            # each expert's run sent its own map; the joined one goes to the first expert's widget the same way
            glue.send_stats(first.settings.get("node"), stats)
        else:
            stats = ui_record(first.to_dict())  # the run itself already sent this dict to its widget
        summary = stats["summary"]
        # "text" is what web/rhymeflow_text_output.js shows on the node: the headline first, then the full summary.
        # "rhymeflow_stats": the same dict as the run's event; ComfyUI replays it for cached re-runs and keeps it in /history.
        return io.NodeOutput(latent, summary, ui={"text": [f"{headline(stats)}\n\n{summary}"], "rhymeflow_stats": [stats]})


def headline(stats: dict) -> str:
    """The two lines an artist reads first: how much faster the run was (timed, and what its passes promise in
    FLOPs, as the planned map estimates it), and which frames were the keyframes."""
    measured, compute = stats.get("estimated_speedup"), stats.get("flop_speedup")
    speed = [f"{measured:.2f}x measured (DiT time)" if measured is not None else "measured: n/a",
             f"{compute:.2f}x estimated (compute, this model)" if compute is not None else "estimated: n/a (not a video latent)"]
    frames = len(stats["roles"])
    if stats.get("segments"):
        keys = "; ".join(f"{s['label']} {', '.join(map(str, s['keyframes']))}" for s in stats["segments"])
    else:
        keys = f"{', '.join(map(str, stats['keyframes']))} ({len(stats['keyframes'])} of {frames} latent frames)"
    return f"speed-up {' / '.join(speed)}\nkeyframes: {keys}"


def _last_result(model, name: str) -> RunResult:
    holder = glue.holder_of(model)
    if holder is None:
        raise ValueError(f"{NODE}: input '{name}' has no RhymeFlow patch; connect the output of RhymeFlow Projection Patch "
                         "or RhymeFlow Accelerate (the MODEL that feeds the sampler)")
    if holder.last_result is None:
        raise ValueError(f"{NODE}: input '{name}' has not been sampled with RhymeFlow yet; connect the same MODEL that feeds "
                         "the sampler of the RhymeFlow run, and that run's LATENT output")
    return holder.last_result
