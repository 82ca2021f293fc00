"""AsymRnR nodes: asymmetric token reduction in video self-attention (MODEL -> MODEL; Wan, HunyuanVideo, LTX-Video,
Mochi through their family adapters), its calibration on the user's own model, and what the last run reduced. Installing is ``rhymeflow_core/asymrnr/install.py``.

Calibration in a graph: AsymRnR Calibrate gives a MODEL with a recorder (dense, bit-exact with its input) and
a calibration handle; sample once with that MODEL and a standard sampler (euler); AsymRnR Schedule, fed the
handle and the sampler's LATENT (which orders it after sampling), builds the schedule, writes it to ComfyUI's
output folder and outputs it for AsymRnR Token Reduction (same graph) or a later ``schedule_source=file``.

Where results live (the policy RhymeFlow's holder has too): the AsymRnR state sits in
``transformer_options["asymrnr"]`` and every clone of the MODEL (``ModelPatcher.clone()``: LoRA loaders,
ModelSamplingSD3, Projection Patch) gets its own fresh copy with the same schedule; the attention override
looks the state up in the options of the call. The OUTER_SAMPLE wrapper resets the state before and after
every sampling run and leaves the run's record on it, so AsymRnR Stats reports the run of exactly the MODEL it
is given: connect the MODEL that feeds the guider/sampler. The calibration handle is the one shared object: the
measurement of a run of any clone of AsymRnR Calibrate's MODEL reaches it.
"""
from __future__ import annotations

import os

from comfy_api.latest import io

from ..rhymeflow_core.asymrnr import AsymRnRState, CalibrationSink, ReductionSchedule, sources
from ..rhymeflow_core.asymrnr.install import check_model, install, last_run, state_of
from ..rhymeflow_core.asymrnr.matching import DEFAULT_STRIDE
from ..rhymeflow_core.keyframes import clip_text
from .common import ADVANCED, Schema, uses
from .glue import node_errors


AsymRnRSchedule = io.Custom("ASYMRNR_SCHEDULE")
AsymRnRCalibration = io.Custom("ASYMRNR_CALIBRATION")

NODE = "AsymRnR Token Reduction"
CALIBRATE_NODE = "AsymRnR Calibrate"
SCHEDULE_NODE = "AsymRnR Schedule"
STATS_NODE = "AsymRnR Stats"
SOURCES = tuple(sources.SOURCE_INPUTS)  # uniform, testbed, file, input

class Calibration:
    """The ASYMRNR_CALIBRATION handle: where the recorded measurement lands, and how to turn it into a schedule."""

    def __init__(self, sink: CalibrationSink, build: dict):
        self.sink, self.build = sink, build

    def measurement(self) -> dict | None:
        return self.sink.measurement


def _schedule_roots() -> tuple[str, str]:
    """The folders besides the pack's own that schedule files may be read from: ComfyUI's output (where AsymRnR
    Schedule writes) and input (where users upload) folders. Nothing else on the machine is readable through
    ``schedule_file``."""
    import folder_paths

    return folder_paths.get_output_directory(), folder_paths.get_input_directory()


# ------------------------------------------------------------------------------------------ nodes

class RhymeFlowAsymRnR(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return Schema(
            node_id="RhymeFlowAsymRnR",
            display_name=NODE,
            description="AsymRnR (arXiv 2412.11706): shortens queries and keys/values of video self-attention "
                        "(Wan, HunyuanVideo, LTX-Video, Mochi; text tokens in joint attention are kept) "
                        "separately, per block and step, by dropping the most redundant tokens (matched to stand-ins); "
                        "attention outputs are restored to full length. Only the attention core gets cheaper. Composes "
                        "with RhymeFlow Projection Patch in either order: full passes are reduced, keyframe-only passes "
                        "pass through. Rates 0 are bit-identical to the input model.",
            inputs=[
                io.Model.Input("model", tooltip="A Wan, HunyuanVideo, LTX-Video or Mochi model (after ModelSampling/LoRAs; "
                                                "before or after RhymeFlow Projection Patch or Accelerate)."),
                io.Combo.Input("schedule_source", options=list(SOURCES), default="uniform",
                               tooltip="uniform: q_rate/kv_rate in every block after dense_start; testbed: the schedule "
                                       "calibrated on the RhymeFlow test-bed model (4 blocks; that model only); file: "
                                       "schedule_file; input: the connected schedule (from AsymRnR Schedule).",
                               extra_dict=uses(sources.SOURCE_INPUTS)),
                io.Float.Input("q_rate", default=0.3, min=0.0, max=0.95, step=0.05,
                               tooltip="uniform only: fraction of queries dropped (their outputs are copied from the "
                                       "matched token). 0 = queries untouched."),
                io.Float.Input("kv_rate", default=0.3, min=0.0, max=0.95, step=0.05,
                               tooltip="uniform only: fraction of keys/values dropped. 0 = keys/values untouched."),
                io.Float.Input("scale", default=1.0, min=0.0, max=1.0, step=0.05,
                               tooltip="testbed/file/input only: multiplies every rate of the loaded schedule "
                                       "(1 = as calibrated, 0 = no reduction)."),
                io.String.Input("schedule_file", default="",
                                tooltip="file only: a schedule JSON relative to ComfyUI's output folder (AsymRnR Schedule "
                                        "writes e.g. asymrnr/schedule_00001_.json), its input folder or the pack's schedules "
                                        "folder; files elsewhere are refused."),
                io.Float.Input("dense_start", default=0.2, min=0.0, max=1.0, step=0.05, extra_dict=ADVANCED,
                               tooltip="uniform only: fraction of the first sampling steps left dense (layout forms early)."),
                io.Int.Input("cache_steps", default=0, min=0, max=100, extra_dict=ADVANCED,
                             tooltip="Sampler steps that reuse one token matching. 0 = the schedule's own (uniform: 3)."),
                io.Int.Input("partition_seed", default=0, min=0, max=0xFFFFFFFF, extra_dict=ADVANCED,
                             tooltip="Seed of the random destination tokens (the result is deterministic for a seed)."),
                AsymRnRSchedule.Input("schedule", optional=True,
                                      tooltip="input only: a schedule from AsymRnR Schedule (calibrated on this model)."),
            ],
            outputs=[io.Model.Output(tooltip="The patched model (a clone; the input is unchanged). Connect it to the guider "
                                             "and to AsymRnR Stats.")],
        )

    @classmethod
    def fingerprint_inputs(cls, schedule_source=None, schedule_file="", **kwargs):
        """Re-run when a loaded schedule file changes on disk (same path, new contents)."""
        try:
            if schedule_source == "testbed":
                return sources.TESTBED_SCHEDULE.stat().st_mtime_ns
            if schedule_source == "file":
                return sources.resolve_path(schedule_file, _schedule_roots()).stat().st_mtime_ns
        except (OSError, ValueError):
            return None  # execute() reports the problem
        return None

    @classmethod
    def execute(cls, model, schedule_source, q_rate, kv_rate, scale, schedule_file, dense_start, cache_steps, partition_seed,
                schedule=None) -> io.NodeOutput:
        if schedule_source not in SOURCES:
            raise ValueError(f"{NODE}: input 'schedule_source' = {schedule_source!r}; accepted: {', '.join(SOURCES)}")
        with node_errors(NODE):
            layout = check_model(model)
        num_blocks = layout.num_blocks
        origin = f"{NODE}: input 'schedule_source' = {schedule_source!r}"
        if schedule_source == "file":
            origin += f" (schedule_file = {clip_text(str(schedule_file).strip(), 120)})"
        try:
            if schedule_source == "uniform":
                sched = sources.uniform_schedule(num_blocks, q_rate, kv_rate, dense_start, int(cache_steps) or 3)
            else:
                if schedule_source == "testbed":
                    if not sources.TESTBED_SCHEDULE.is_file():
                        raise ValueError(f"input 'schedule_source' = 'testbed' but {sources.TESTBED_SCHEDULE} is not there yet "
                                         "(python -m rhymeflow_core.testbed.calibrate_asymrnr writes it); use uniform, file or input")
                    loaded = ReductionSchedule.load(sources.TESTBED_SCHEDULE)
                elif schedule_source == "file":
                    loaded = sources.load_file(schedule_file, _schedule_roots())
                else:
                    if not isinstance(schedule, ReductionSchedule):
                        raise ValueError("input 'schedule_source' = 'input' but nothing is connected to 'schedule'; connect "
                                         "AsymRnR Schedule's output, or pick another source")
                    loaded = schedule
                loaded.check_family(layout.family, f"{origin}: the schedule")
                sources.check_blocks(loaded, num_blocks)
                sched = sources.with_cache_steps(sources.scaled(loaded, scale), cache_steps)
        except ValueError as exc:
            raise ValueError(str(exc) if str(exc).startswith(NODE) else f"{NODE}: {exc}") from None
        with node_errors(NODE):
            return io.NodeOutput(install(model, AsymRnRState(sched, seed=int(partition_seed), layout=layout,
                                                             origin=f"{origin}: the schedule")))


class RhymeFlowAsymRnRCalibrate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return Schema(
            node_id="RhymeFlowAsymRnRCalibrate",
            display_name=CALIBRATE_NODE,
            description="Step 1 of calibrating AsymRnR for your model: outputs the model with a redundancy recorder "
                        "(sampling stays dense and bit-identical) and a calibration handle. Sample once with this MODEL "
                        "and a standard sampler (euler, your usual steps/resolution), then feed the handle and the LATENT "
                        "to AsymRnR Schedule.",
            inputs=[
                io.Model.Input("model", tooltip="The model to calibrate (Wan, HunyuanVideo, LTX-Video or Mochi: the one you will reduce)."),
                io.Float.Input("target", default=0.3, min=0.0, max=0.9, step=0.05,
                               tooltip="Mean self-attention FLOP saving the schedule aims at, over all (block, step) cells."),
                io.Float.Input("q_cap", default=0.7, min=0.0, max=0.95, step=0.05,
                               tooltip="Highest query rate in any cell."),
                io.Float.Input("kv_cap", default=0.5, min=0.0, max=0.95, step=0.05,
                               tooltip="Highest key/value rate in any cell."),
                io.Float.Input("dense_start", default=0.2, min=0.0, max=1.0, step=0.05,
                               tooltip="Fraction of the first steps the schedule leaves dense."),
                io.Int.Input("cache_steps", default=3, min=1, max=100, extra_dict=ADVANCED,
                             tooltip="Sampler steps that reuse one token matching in the built schedule."),
                io.Int.Input("partition_seed", default=0, min=0, max=0xFFFFFFFF, extra_dict=ADVANCED,
                             tooltip="Seed of the random destination tokens used while measuring."),
            ],
            outputs=[
                io.Model.Output(display_name="model", tooltip="Sample once with this (dense, unchanged results)."),
                AsymRnRCalibration.Output(display_name="calibration", tooltip="Connect to AsymRnR Schedule."),
            ],
        )

    @classmethod
    def execute(cls, model, target, q_cap, kv_cap, dense_start, cache_steps, partition_seed) -> io.NodeOutput:
        with node_errors(CALIBRATE_NODE):
            layout = check_model(model)
        num_blocks = layout.num_blocks
        try:
            build = {"target": sources.check_fraction("target", target, 1.0, hi_open=True),
                     "q_cap": sources.check_fraction("q_cap", q_cap, sources.MAX_RATE),
                     "kv_cap": sources.check_fraction("kv_cap", kv_cap, sources.MAX_RATE),
                     "dense_start": sources.check_fraction("dense_start", dense_start), "cache_steps": int(cache_steps)}
        except ValueError as exc:
            raise ValueError(f"{CALIBRATE_NODE}: {exc}") from None
        if build["cache_steps"] < 1:
            raise ValueError(f"{CALIBRATE_NODE}: input 'cache_steps' = {cache_steps}; accepted: >= 1")
        from ..rhymeflow_core.asymrnr.calibrate import RedundancyRecorder

        state = AsymRnRState(ReductionSchedule.uniform(num_blocks, 1, dst_stride=DEFAULT_STRIDE), seed=int(partition_seed),
                             layout=layout)
        state.recorder = RedundancyRecorder(num_blocks, 1)  # marks the state as recording; resized per run
        state.sink = CalibrationSink()
        with node_errors(CALIBRATE_NODE):
            return io.NodeOutput(install(model, state), Calibration(state.sink, build))


class RhymeFlowAsymRnRSchedule(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return Schema(
            node_id="RhymeFlowAsymRnRSchedule",
            display_name=SCHEDULE_NODE,
            description="Step 2 of calibrating AsymRnR: builds the schedule from the last finished dense run recorded by "
                        "AsymRnR Calibrate's MODEL, writes it as JSON to ComfyUI's output folder and outputs it for AsymRnR Token "
                        "Reduction (schedule_source=input, or =file in later prompts).",
            is_output_node=True,
            inputs=[
                AsymRnRCalibration.Input("calibration", tooltip="From AsymRnR Calibrate."),
                io.Latent.Input("latent", tooltip="The LATENT of the dense run sampled with AsymRnR Calibrate's MODEL (orders "
                                                  "this node after that run)."),
                io.String.Input("filename_prefix", default="asymrnr/schedule",
                                tooltip="Where the JSON goes, relative to ComfyUI's output folder."),
            ],
            outputs=[
                AsymRnRSchedule.Output(display_name="schedule", tooltip="Connect to AsymRnR Token Reduction's schedule input."),
                io.String.Output(display_name="summary", tooltip="What the schedule reduces, and where it was written."),
            ],
        )

    @classmethod
    def execute(cls, calibration, latent, filename_prefix) -> io.NodeOutput:
        import folder_paths

        from ..rhymeflow_core.asymrnr.calibrate import build_schedule

        if not isinstance(calibration, Calibration):
            raise ValueError(f"{SCHEDULE_NODE}: input 'calibration' is not from AsymRnR Calibrate")
        folder, name, counter, subfolder = _save_target(filename_prefix, folder_paths.get_output_directory())
        measurement = calibration.measurement()
        if measurement is None:
            raise ValueError(f"{SCHEDULE_NODE}: nothing was recorded yet; sample once with AsymRnR Calibrate's MODEL (a "
                             "standard sampler such as euler) and connect that sampler's LATENT to 'latent'")
        b = calibration.build
        try:
            schedule = build_schedule(measurement, target=b["target"], q_cap=b["q_cap"], kv_cap=b["kv_cap"],
                                      dense_start=b["dense_start"], cache_steps=b["cache_steps"])
        except ValueError as exc:
            raise ValueError(f"{SCHEDULE_NODE}: {exc}") from None
        schedule.meta["calibrated_on"] = {"tokens": measurement["n_tokens"], "steps": measurement["num_steps"],
                                          "seed": measurement["meta"].get("seed")}
        filename = f"{name}_{counter:05}_.json"
        schedule.save(os.path.join(folder, filename))
        rel = os.path.join(subfolder, filename) if subfolder else filename
        summary = sources.schedule_text(schedule, rel)
        return io.NodeOutput(schedule, summary, ui={"text": [summary]})


def _save_target(filename_prefix: str, out_dir: str) -> tuple[str, str, int, str]:
    """``get_save_image_path`` for a schedule, refusing first, by node and input, a prefix without a file name
    (``""`` or ``"."`` would write a hidden ``._00001_.json``) or one leaving the output folder (ComfyUI's own
    error for that names neither)."""
    import folder_paths

    prefix = os.path.normpath(filename_prefix.strip()) if filename_prefix.strip() else ""
    shown = f"{SCHEDULE_NODE}: input 'filename_prefix' = {clip_text(filename_prefix, 120)}"
    if os.path.basename(prefix) in ("", ".", ".."):
        raise ValueError(f"{shown} has no file name; accepted: a path relative to ComfyUI's output folder ending in a "
                         "name, e.g. asymrnr/schedule")
    real_out = os.path.realpath(out_dir)  # real paths: a linked subfolder must not lead the write elsewhere
    if os.path.commonpath((real_out, os.path.realpath(os.path.join(out_dir, os.path.dirname(prefix))))) != real_out:
        raise ValueError(f"{shown} leaves ComfyUI's output folder; accepted: a path relative to it, e.g. asymrnr/schedule")
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, out_dir)
    return folder, name, counter, subfolder


class RhymeFlowAsymRnRStats(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return Schema(
            node_id="RhymeFlowAsymRnRStats",
            display_name=STATS_NODE,
            description="What AsymRnR reduced in the last run of a patched MODEL: tokens kept per block and step, "
                        "self-attention FLOPs saved, keyframe-only calls passed through.",
            is_output_node=True,
            inputs=[
                io.Model.Input("model", tooltip="The MODEL that went into the guider (with AsymRnR Token Reduction on it)."),
                io.Latent.Input("latent", tooltip="The sampler's output; it orders execution after sampling and passes through."),
            ],
            outputs=[
                io.Latent.Output(display_name="latent", tooltip="The input latent, unchanged."),
                io.String.Output(display_name="summary", tooltip="A text summary of the reduction."),
            ],
        )

    @classmethod
    def execute(cls, model, latent) -> io.NodeOutput:
        if state_of(model) is None:
            raise ValueError(f"{STATS_NODE}: input 'model' has no AsymRnR patch; connect the output of AsymRnR Token "
                             "Reduction (or a model made from it) that feeds the guider")
        record = last_run(model)
        if record is None:
            raise ValueError(f"{STATS_NODE}: input 'model' has not finished a sampling run; connect the MODEL that feeds "
                             "the guider or sampler (a node after AsymRnR Token Reduction makes its own copy, and the run "
                             "is recorded on the copy that was sampled), and its sampler's LATENT output")
        stats = dict(record["stats"])
        summary = sources.stats_text(stats)
        stats["summary"] = summary
        return io.NodeOutput(latent, summary, ui={"text": [summary], "asymrnr_stats": [stats]})
