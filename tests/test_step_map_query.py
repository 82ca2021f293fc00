"""The step-map widget's route logic (rhymeflow_core.step_map_query) and its agreement with the JS side.

The widget never recomputes the schedule: these tests pin that the route answers exactly what
``build_step_map`` says for the same settings, that bad settings come back as an ``error`` string
(never an exception), and that web/step_map_logic.js names the roles as the core does. The JSON fixture
tests/web/fixtures/step_map_fixture.json is generated here from Python and read by the node tests
(tests/web/step_map_logic.test.mjs); regenerate it with ``RHYMEFLOW_UPDATE_FIXTURES=1 pytest tests/test_step_map_query.py``.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

from rhymeflow_core.keyframes import parse_frame_list
from rhymeflow_core.flow import simple_sigmas
from rhymeflow_core.presets import preset_schedule
from rhymeflow_core.flops import WAN_DIMS, ModelDims, flop_ideal_speedup
from rhymeflow_core.schedule import ROLE_LEGEND, ScheduleConfig, build_step_map
from rhymeflow_core.step_map_query import planned_step_map

REPO = Path(__file__).resolve().parents[1]
LOGIC_JS = REPO / "web" / "step_map_logic.js"
FIXTURE = REPO / "tests" / "web" / "fixtures" / "step_map_fixture.json"


def _step_map_keys(d: dict) -> dict:
    keys = ("frames", "steps", "roles", "keyframes", "groups", "warmup", "group_keyframes", "legend")
    return {k: d[k] for k in keys}


@pytest.mark.parametrize("preset", ["paper", "balanced", "fast"])
@pytest.mark.parametrize("steps", [10, 30, 50])
def test_preset_and_uniform_plan_equals_build_step_map(preset, steps):
    out = planned_step_map({"preset": preset, "steps": str(steps), "frames": "21", "strategy": "uniform", "budget": "4"})
    assert out["error"] is None
    expected = build_step_map(21, steps, preset_schedule(preset, simple_sigmas(steps, 3.0)), [0, 7, 13, 20]).to_dict()
    assert _step_map_keys(out) == expected
    assert set(expected) <= set(out)
    assert out["planned"] is True and out["keyframes_exact"] is True


def test_custom_manual_plan_equals_build_step_map_and_flop_ideal():
    q = {"preset": "custom", "warmup": "6", "n_small": "2", "n_large": "4", "steps": "40", "frames": "13",
         "strategy": "manual", "manual": "3, 6-8", "force_first": "true", "force_last": "false"}
    out = planned_step_map(q)
    assert out["error"] is None
    cfg = ScheduleConfig(warmup=6, n_small=2, n_large=4)
    sm = build_step_map(13, 40, cfg, [0, 3, 6, 7, 8])
    assert _step_map_keys(out) == sm.to_dict()
    dims = dataclasses.replace(WAN_DIMS["wan2.1-1.3b-480p"], frames=13)
    # priced as the run prices it: the default context mode kv does not re-project non-keyframe K/V
    assert out["flop_ideal"] == pytest.approx(flop_ideal_speedup(sm, dims, kv_cached=True), abs=1e-4)
    hidden = planned_step_map({**q, "context_mode": "hidden"})
    assert hidden["flop_ideal"] == pytest.approx(flop_ideal_speedup(sm, dims, kv_cached=False), abs=1e-4)
    assert 1.0 < hidden["flop_ideal"] < out["flop_ideal"] and hidden["context_mode"] == "hidden"
    assert "context_mode='x' is not known; accepted: hidden, kv" in planned_step_map({**q, "context_mode": "x"})["error"]
    assert out["full_passes"] == sm.full_passes() and out["keyframe_passes"] == sm.keyframe_passes()
    assert out["schedule"] == cfg.to_dict()


def test_semantic_is_labelled_planned_with_uniform_stand_in():
    out = planned_step_map({"strategy": "semantic", "budget": "5"})
    assert out["error"] is None and out["planned"] is True and out["keyframes_exact"] is False
    assert "planned" in out["note"] and "after warm-up" in out["note"]
    assert out["frames"] == 21 and out["steps"] == 30 and len(out["keyframes"]) == 5
    assert out["keyframes"][0] == 0 and out["keyframes"][-1] == 20


def test_defaults_and_plain_values_are_accepted():
    a = planned_step_map({})
    b = planned_step_map({"frames": 21, "steps": 30, "preset": "paper", "strategy": "semantic", "budget": 4,
                          "force_first": True, "force_last": True})
    assert a["error"] is None and a == b
    json.dumps(a)  # the route sends it as JSON


@pytest.mark.parametrize(
    "query, fragment",
    [
        ({"steps": "9"}, "steps=9"),
        ({"steps": "5", "preset": "custom", "warmup": "2"}, "steps=5"),
        ({"preset": "custom", "warmup": "30", "steps": "30"}, "warmup=30"),
        ({"preset": "custom", "warmup": "35", "steps": "30"}, "warmup=35"),
        ({"budget": "21", "frames": "21"}, "budget=21"),
        ({"budget": "30", "frames": "21", "strategy": "uniform"}, "budget=30"),
        ({"strategy": "manual", "manual": "0, six"}, "cannot read frame list"),
        ({"strategy": "manual", "manual": "5-3"}, "cannot read frame list"),
        ({"strategy": "manual", "manual": "25", "frames": "21"}, "outside 0..20"),
        ({"strategy": "manual", "manual": "0-99999999999"}, "beyond 511"),
        ({"frames": "abc"}, "frames='abc'"),
        ({"frames": "1"}, "frames=1"),
        ({"preset": "turbo"}, "preset='turbo'"),
        ({"strategy": "magic"}, "strategy='magic'"),
        ({"force_last": "maybe"}, "force_last"),
        ({"preset": "custom", "n_small": "3", "n_large": "2"}, "n_large=2"),
    ],
)
def test_bad_input_is_an_error_string_not_an_exception(query, fragment):
    out = planned_step_map(query)
    assert isinstance(out["error"], str) and fragment in out["error"], out["error"]
    assert "roles" not in out and out["planned"] is True


@pytest.mark.parametrize("query, message", [
    ({"threshold": "nan"}, "threshold='nan' must be a finite number"),
    ({"threshold": "inf", "strategy": "uniform"}, "threshold='inf' must be a finite number"),
    ({"threshold": "1.5", "strategy": "uniform"}, "threshold=1.5 is a cosine similarity and must lie in [-1, 1]"),
    ({"shift": "nan"}, "shift='nan' must be a finite number"),
    ({"frames": "x" * 5000}, "(5000 characters) must be an integer"),
    ({"strategy": "manual", "manual": "0-30000000"}, "names a frame beyond 511"),
])
def test_route_refuses_what_the_node_refuses_with_short_messages(query, message):
    """The widget's route and the Keyframes node agree (threshold=nan was accepted here, refused by the node)."""
    error = planned_step_map(query)["error"]
    assert error is not None and message in error and len(error) < 300, error


def test_manual_text_is_ignored_unless_strategy_is_manual():
    assert planned_step_map({"strategy": "uniform", "manual": "not a list"})["error"] is None


def test_routes_module_imports_without_comfyui():
    spec = importlib.util.spec_from_file_location("rhymeflow_routes_under_test", REPO / "nodes" / "routes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # no ComfyUI `server` module here: must not raise
    assert mod.ROUTE == "/rhymeflow/step_map"
    assert mod.register_routes(server=object()) is False  # an object without routes is refused

    class FakeRoutes:
        def __init__(self):
            self.added = {}

        def get(self, path):
            def deco(fn):
                self.added[path] = fn
                return fn
            return deco

    server = type("S", (), {"routes": FakeRoutes()})()
    assert mod.register_routes(server=server) is True
    assert server.routes.added == {"/rhymeflow/step_map": mod.handle_step_map}


# ---- agreement with web/step_map_logic.js -------------------------------------------------------

def _js_object(name: str) -> dict[int, str]:
    text = LOGIC_JS.read_text()
    m = re.search(rf"export const {name} = Object\.freeze\(\{{(.*?)\}}\);", text, re.S)
    assert m, f"{name} not found in {LOGIC_JS}"
    return {int(k): v for k, v in re.findall(r'(\d+)\s*:\s*"([^"]*)"', m.group(1))}


def test_js_role_legend_and_codes_match_core():
    assert _js_object("ROLE_LEGEND") == ROLE_LEGEND
    text = LOGIC_JS.read_text()
    from rhymeflow_core import schedule

    for name in ("ROLE_WARMUP", "ROLE_SYNC", "ROLE_KEY", "ROLE_SKIP", "ROLE_REUSE"):
        m = re.search(rf"export const {name} = (\d+);", text)
        assert m and int(m.group(1)) == getattr(schedule, name), name
    colors = _js_object("ROLE_COLORS")
    # warm-up and sync are both full passes: one colour; keyframe-only and skipped cells each their own
    assert set(colors) == set(ROLE_LEGEND) and colors[schedule.ROLE_WARMUP] == colors[schedule.ROLE_SYNC]
    assert len({colors[schedule.ROLE_SYNC], colors[schedule.ROLE_KEY], colors[schedule.ROLE_SKIP], colors[schedule.ROLE_REUSE]}) == 4


FRAME_LIST_CASES = ["0, 6, 12-14", "", " , ", "3", "14-12", "1,1,2", "0-2, 5 - 7,", "a", "-1", "2-", "07, 8"]


def expected_fixture() -> dict:
    cases = []
    for text in FRAME_LIST_CASES:
        try:
            cases.append({"text": text, "frames": parse_frame_list(text)})
        except ValueError:
            cases.append({"text": text, "error": True})
    query = {"frames": "6", "steps": "12", "preset": "custom", "warmup": "3", "n_small": "2", "n_large": "3",
             "strategy": "manual", "manual": "2"}
    return {
        "_generated_by": "tests/test_step_map_query.py (RHYMEFLOW_UPDATE_FIXTURES=1 to rewrite)",
        "legend": {str(k): v for k, v in ROLE_LEGEND.items()},
        "frame_lists": cases,
        "planned_query": query,
        "planned": planned_step_map(query),
        "planned_error": planned_step_map({"steps": "9"}),
    }


def test_js_fixture_is_current():
    expected = expected_fixture()
    if os.environ.get("RHYMEFLOW_UPDATE_FIXTURES") == "1":
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(json.dumps(expected, indent=1) + "\n")
    assert FIXTURE.is_file(), f"missing {FIXTURE}; run RHYMEFLOW_UPDATE_FIXTURES=1 pytest {__file__}"
    assert json.loads(FIXTURE.read_text()) == expected, (
        f"{FIXTURE} is stale; run RHYMEFLOW_UPDATE_FIXTURES=1 pytest {__file__}"
    )


def test_shift_moves_the_planned_warm_up_as_the_sampler_would():
    at3 = planned_step_map({"steps": "30", "shift": "3"})
    at8 = planned_step_map({"steps": "30", "shift": "8"})
    assert at3["schedule"]["warmup"] == preset_schedule("paper", simple_sigmas(30, 3.0)).warmup == 5
    assert at8["schedule"]["warmup"] == preset_schedule("paper", simple_sigmas(30, 8.0)).warmup > 5
    assert "shift=0.0 must lie in 0.1..100" in planned_step_map({"shift": "0"})["error"]
    assert "shift='x' must be a number" in planned_step_map({"shift": "x"})["error"]


def test_planned_map_sends_the_noise_level_of_each_step():
    """The widget's hover shows sigma per step: the simple scheduler's at the query's shift (the sampler's own
    sigmas after a run); every preset, custom included, is resolved on those sigmas, so a bad shift is an error."""
    at8 = planned_step_map({"steps": "30", "shift": "8"})
    assert at8["sigmas"] == [round(float(x), 4) for x in simple_sigmas(30, 8.0)[:-1]]
    assert len(at8["sigmas"]) == 30 and at8["sigmas"][0] > at8["sigmas"][-1] > 0
    assert planned_step_map({"steps": "30"})["sigmas"] == [round(float(x), 4) for x in simple_sigmas(30, 3.0)[:-1]]
    custom = {"preset": "custom", "warmup": "3", "n_small": "2", "n_large": "3", "steps": "12", "frames": "6"}
    assert planned_step_map({**custom, "shift": "0"})["error"] == "shift=0.0 must lie in 0.1..100"


def test_target_preset_plans_the_strides_a_run_would_take():
    from rhymeflow_core.presets import Target, target_schedule

    out = planned_step_map({"preset": "target", "target_speedup": "1.5", "steps": "30", "frames": "21", "shift": "8",
                            "strategy": "uniform", "budget": "4"})
    assert out["error"] is None and out["flop_ideal"] >= 1.5
    dims = dataclasses.replace(WAN_DIMS["wan2.1-1.3b-480p"], frames=21)
    expected = target_schedule(1.5, simple_sigmas(30, 8.0).tolist(), "wan", dims, 4, True)
    assert out["schedule"] == expected.to_dict()
    assert "out of reach" in planned_step_map({"preset": "target", "target_speedup": "19"})["error"]


TESTBED_DIMS = ModelDims("WanModel", layers=2, dim=512, ffn_dim=640, tokens_per_frame=64, frames=16, text_tokens=8)


def test_flop_ideal_is_priced_on_the_dims_the_graph_names():
    """With a model file in the graph, ``dims_fn`` (ComfyUI's, in nodes/routes.py) reads its real dims at the graph's
    latent grid; the plan is priced on them and says so. Without one, or when it cannot be read, the assumed Wan dims
    price it and the answer says why."""
    seen = []

    def dims_fn(loader, name, grid, text):
        seen.append((loader, name, grid, text))
        if name == "broken.safetensors":
            raise ValueError("cannot read broken.safetensors")
        return dataclasses.replace(TESTBED_DIMS, frames=grid[0], text_tokens=text), "wan", f"WanModel from {name}"

    q = {"steps": "30", "frames": "16", "strategy": "uniform", "budget": "4", "model_loader": "UNETLoader",
         "model_file": "testbed_wan.safetensors", "latent_h": "16", "latent_w": "16", "text_tokens": "8"}
    out = planned_step_map(q, dims_fn=dims_fn)
    assert out["error"] is None and out["flop_dims_real"] is True and out["flop_model"] == "WanModel from testbed_wan.safetensors"
    assert seen == [("UNETLoader", "testbed_wan.safetensors", (16, 16, 16), 8)]
    sm = build_step_map(16, 30, preset_schedule("paper", simple_sigmas(30, 3.0)), out["keyframes"])
    assert out["flop_ideal"] == pytest.approx(flop_ideal_speedup(sm, TESTBED_DIMS, kv_cached=True), abs=1e-4)
    assumed = planned_step_map({k: v for k, v in q.items() if not k.startswith("model_")}, dims_fn=dims_fn)
    assert assumed["flop_dims_real"] is False and assumed["flop_model"].startswith("wan2.1-1.3b-480p (assumed: no model loader")
    assert assumed["flop_ideal"] != out["flop_ideal"]  # the 1.3B's dims price the same map differently
    broken = planned_step_map({**q, "model_file": "broken.safetensors"}, dims_fn=dims_fn)
    assert broken["error"] is None and broken["flop_model"] == "wan2.1-1.3b-480p (assumed: cannot read broken.safetensors)"
    outside = planned_step_map(q)  # no dims_fn: outside ComfyUI
    assert outside["flop_model"] == "wan2.1-1.3b-480p (assumed: model files are read only inside ComfyUI)"


def test_target_preset_is_resolved_on_the_real_dims_and_context_mode():
    """The target preset picks its strides on the dims and context mode the run will price them on."""
    from rhymeflow_core.presets import target_schedule

    q = {"preset": "target", "target_speedup": "1.5", "steps": "30", "frames": "16", "strategy": "uniform", "budget": "4",
         "model_loader": "UNETLoader", "model_file": "t.safetensors", "context_mode": "hidden"}
    out = planned_step_map(q, dims_fn=lambda *a: (TESTBED_DIMS, "wan", "testbed"))
    expected = target_schedule(1.5, simple_sigmas(30, 3.0).tolist(), "wan", TESTBED_DIMS, 4, False)
    assert out["error"] is None and out["schedule"] == expected.to_dict() and out["flop_ideal"] >= 1.5


def test_sigmas_follow_the_graphs_scheduler_denoise_and_step_range():
    """The scheduler's sigmas come from ``sigmas_fn`` (ComfyUI's calculate_sigmas inside ComfyUI) over
    ``steps / denoise`` steps, cut as KSampler and KSamplerAdvanced cut them; the map covers the steps this
    sampler runs (a Wan 2.2 expert's slice), and a slice that does not start from noise warms up with one pass."""
    calls = []

    def sigmas_fn(scheduler, steps, shift):
        calls.append((scheduler, steps, shift))
        return simple_sigmas(steps, shift).tolist()

    base = {"steps": "30", "shift": "8", "frames": "21", "strategy": "uniform", "budget": "4", "scheduler": "beta"}
    full = planned_step_map(base, sigmas_fn=sigmas_fn)
    assert calls == [("beta", 30, 8.0)] and full["steps"] == 30 and "beta scheduler, shift 8, 30 steps" == full["sigmas_from"]
    half = planned_step_map({**base, "denoise": "0.5", "steps": "20"}, sigmas_fn=sigmas_fn)
    assert calls[-1] == ("beta", 40, 8.0) and half["steps"] == 20
    assert half["sigmas"] == [round(x, 4) for x in simple_sigmas(40, 8.0).tolist()[-21:-1]]
    high = planned_step_map({**base, "start_step": "0", "end_step": "15"}, sigmas_fn=sigmas_fn)
    low = planned_step_map({**base, "start_step": "15", "end_step": "10000"}, sigmas_fn=sigmas_fn)
    assert (high["steps"], low["steps"]) == (15, 15) and low["sigmas_from"].endswith("steps 16-30 of them")
    assert high["schedule"]["warmup"] == full["schedule"]["warmup"] and low["schedule"]["warmup"] == 1
    assert low["sigmas"] == full["sigmas"][15:]
    assert "scheduler='beta' cannot be planned without ComfyUI" in planned_step_map(base)["error"]
    bad = {"start_step": "15", "end_step": "15"}
    assert "start_step=15 must be below end_step=15" in planned_step_map({**base, **bad}, sigmas_fn=sigmas_fn)["error"]
    assert "denoise=0.0 must lie in 0.01..1" in planned_step_map({**base, "denoise": "0"}, sigmas_fn=sigmas_fn)["error"]
    too_many = planned_step_map({**base, "steps": "1000", "denoise": "0.05"}, sigmas_fn=sigmas_fn)["error"]
    assert too_many == "steps=1000 at denoise=0.05 means 20000 scheduler steps; at most 10000" and len(calls) == 5  # refused before asking the scheduler


def test_adaptive_plan_says_its_later_keyframes_are_chosen_during_the_run():
    fixed = planned_step_map({"preset": "paper", "steps": "30", "frames": "16", "strategy": "uniform", "budget": "4"})
    adaptive = planned_step_map({"preset": "paper", "steps": "30", "frames": "16", "strategy": "uniform", "budget": "4",
                                 "adaptive": "true"})
    assert adaptive["roles"] == fixed["roles"] and adaptive["flop_ideal"] == fixed["flop_ideal"]
    assert fixed["keyframes_exact"] is True and adaptive["keyframes_exact"] is False
    assert "re-chosen at each sync point" in adaptive["note"] and "re-chosen" not in fixed["note"]


def test_target_plan_shows_reused_steps_when_the_target_needs_fewer_passes():
    out = planned_step_map({"preset": "target", "target_speedup": "2.5", "steps": "30", "frames": "16",
                            "strategy": "uniform", "budget": "4"})
    assert out["error"] is None and out["schedule"]["passes"] > 0
    assert any(4 in row for row in out["roles"]) and out["flop_ideal"] >= 2.5
