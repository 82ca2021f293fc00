"""Test-bed nodes: class conditioning, an empty latent and the pseudo-VAE decode, so the shipped test-bed
checkpoint runs as a Wan 2.1 model in ComfyUI with no downloads."""
import torch
from comfy_api.latest import io

from ..rhymeflow_core.testbed import pseudo_vae
from ..rhymeflow_core.testbed.conditioning import CLASSES, class_context, null_context
from .common import Schema

LATENT_SIZE = 16  # 64 x 64 pixels (the pseudo-VAE maps 4 x 4 pixel patches to one latent pixel)


class RhymeFlowTestbedConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return Schema(
            node_id="RhymeFlowTestbedConditioning",
            display_name="RhymeFlow Test-bed Conditioning",
            description="The test-bed model's 'prompt': one of its video classes as a fixed text context; negative is the "
                        "empty context.",
            inputs=[io.Combo.Input("video_class", options=list(CLASSES), default=CLASSES[0],
                                   tooltip="Which test-bed scene to generate: astronaut (faces over the astronaut and rocket photos), cat (digits over cat and coffee), cosmos (discs over deep field and retina), lab (squares over micrograph and coins).")],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative")],
        )

    @classmethod
    def execute(cls, video_class) -> io.NodeOutput:
        if video_class not in CLASSES:
            raise ValueError(f"RhymeFlow Test-bed Conditioning: input 'video_class' = {video_class!r}; accepted: {', '.join(CLASSES)}")
        c = CLASSES.index(video_class)
        return io.NodeOutput([[class_context(c), {}]], [[null_context(), {}]])


class RhymeFlowTestbedEmptyLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return Schema(
            node_id="RhymeFlowTestbedEmptyLatent",
            display_name="RhymeFlow Test-bed Empty Latent",
            description="An empty 32x32-pixel video latent for the test-bed model (one latent frame per pixel frame).",
            inputs=[io.Int.Input("frames", default=16, min=3, max=21, tooltip="Latent frames (= pixel frames for the test bed).")],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, frames) -> io.NodeOutput:
        if not 3 <= int(frames) <= 21:
            raise ValueError(f"RhymeFlow Test-bed Empty Latent: input 'frames' = {frames}; accepted: 3..21")
        return io.NodeOutput({"samples": torch.zeros(1, pseudo_vae.LATENT_CHANNELS, int(frames), LATENT_SIZE, LATENT_SIZE)})


class RhymeFlowTestbedDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return Schema(
            node_id="RhymeFlowTestbedDecode",
            display_name="RhymeFlow Test-bed Decode",
            description="Decodes a test-bed latent with the exact pseudo-VAE into frames (IMAGE batch).",
            inputs=[io.Latent.Input("samples", tooltip="A sampler output for the test-bed model.")],
            outputs=[io.Image.Output(display_name="frames")],
        )

    @classmethod
    def execute(cls, samples) -> io.NodeOutput:
        import comfy.latent_formats

        z = samples["samples"]
        if z.ndim != 5 or z.shape[1] != pseudo_vae.LATENT_CHANNELS:
            raise ValueError(f"RhymeFlow Test-bed Decode: input 'samples' has shape {tuple(z.shape)}; accepted: a test-bed "
                             f"latent [B, {pseudo_vae.LATENT_CHANNELS}, T, h, w]")
        # samplers return Wan21().process_out(x); the test bed's latent space is the model's own space
        z = comfy.latent_formats.Wan21().process_in(z.float())
        pixels = pseudo_vae.decode(z)  # [B, 3, T, H, W]
        return io.NodeOutput(pixels.permute(0, 2, 3, 4, 1).reshape(-1, *pixels.shape[3:], 3).contiguous())
