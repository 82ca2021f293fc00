"""RhymeFlow Compare: per-frame PSNR/SSIM of an accelerated video against the dense one of the same seed."""
from comfy_api.latest import io

from ..rhymeflow_core import metrics
from .common import Schema

NODE = "RhymeFlow Compare"


class RhymeFlowCompare(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return Schema(
            node_id="RhymeFlowCompare",
            display_name=NODE,
            description="Per-frame PSNR and SSIM of the accelerated frames against the dense frames (same seed, same "
                        "prompt); the worst frame is reported beside the mean.",
            is_output_node=True,
            inputs=[
                io.Image.Input("dense", tooltip="Reference frames (frames as the image batch), e.g. from the euler sampler."),
                io.Image.Input("accelerated", tooltip="Frames from the RhymeFlow run, same count and size."),
            ],
            outputs=[
                io.String.Output(display_name="summary", tooltip="Mean and worst-frame PSNR/SSIM."),
                io.Image.Output(display_name="plot", tooltip="Per-frame PSNR bars (colour: SSIM)."),
            ],
        )

    @classmethod
    def execute(cls, dense, accelerated) -> io.NodeOutput:
        if dense.shape != accelerated.shape:
            raise ValueError(f"{NODE}: inputs 'dense' {tuple(dense.shape)} and 'accelerated' {tuple(accelerated.shape)} differ; "
                             "accepted: the same number of frames and the same size (frames as the batch, [N, H, W, C])")
        if dense.ndim != 4 or dense.shape[-1] < 3:
            raise ValueError(f"{NODE}: input 'dense' has shape {tuple(dense.shape)}; accepted: IMAGE [frames, H, W, 3]")
        result = metrics.fidelity(metrics.images_to_video(dense), metrics.images_to_video(accelerated))
        worst = min(range(len(result["psnr_frames"])), key=result["psnr_frames"].__getitem__)
        # PSNR vs dense first: it is the number an artist weighs against the speed-up (RhymeFlow Stats).
        summary = (f"PSNR vs dense: mean {result['psnr_mean']:.2f} dB, worst {result['psnr_min']:.2f} dB (frame {worst})\n"
                   f"SSIM vs dense: mean {result['ssim_mean']:.4f}, worst {result['ssim_min']:.4f}\n"
                   f"{NODE}: {dense.shape[0]} frames")
        plot = metrics.psnr_plot(result["psnr_frames"], result["ssim_frames"])
        # "text" is what web/rhymeflow_text_output.js shows on the node.
        return io.NodeOutput(summary, plot, ui={"text": [summary], "rhymeflow_compare": [{**result, "summary": summary}]})
