"""Real-ComfyUI tier: tests that import ComfyUI's own ``comfy`` package (no ComfyUI code lives in this repo).

ComfyUI is found through ``COMFYUI_PATH`` (default ``/opt/comfyui``); run this folder with ComfyUI's own
interpreter (see README.md here). Every test here is reported as *skipped*, with the reason, when
  * there is no ``main.py`` in ``COMFYUI_PATH``, or
  * ComfyUI's requirements can't be imported by the running interpreter (e.g. the core suite run with the
    project's CPU venv on a machine that also has ComfyUI). Under ComfyUI's own venv
    (``COMFYUI_PATH/.venv``), or with ``RHYMEFLOW_REQUIRE_COMFYUI=1``, that is an error instead.

When ComfyUI is usable, this file, before any test module here is imported:
  * puts the ComfyUI root first on ``sys.path`` (the repo's ``nodes/`` folder must not shadow ComfyUI's
    ``nodes.py``), and makes sure the repo root is on it too, for ``rhymeflow_core``;
  * sets ``comfy.cli_args.args.cpu = True`` and only then imports ``comfy.model_management`` (a CUDA build
    of torch without a GPU would otherwise fail in ``get_torch_device``).
Test modules here may import ``comfy`` at module level only if they tolerate its absence; prefer the
``comfyui`` fixture, which skips.

The repo root is collected as a plain folder by ``tests/conftest.py`` (its ``__init__.py`` imports ComfyUI).
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from . import server_harness

THIS_DIR = Path(__file__).resolve().parent
REPO_ROOT = THIS_DIR.parents[1]
COMFYUI_ROOT = Path(os.environ.get("COMFYUI_PATH", "/opt/comfyui")).expanduser().resolve()


def _comfyui_required() -> bool:
    """Import failures are errors under ComfyUI's own venv or when asked for; skips otherwise."""
    return os.environ.get("RHYMEFLOW_REQUIRE_COMFYUI") == "1" or Path(sys.prefix).resolve().is_relative_to(COMFYUI_ROOT)


def _set_up_comfyui() -> str | None:
    """Make ComfyUI importable on the CPU; ``None`` when it is, else why this tier is skipped."""
    if not (COMFYUI_ROOT / "main.py").is_file():
        if _comfyui_required():
            raise RuntimeError(f"RHYMEFLOW_REQUIRE_COMFYUI=1 but there is no main.py in {COMFYUI_ROOT}")
        return f"ComfyUI not found: no main.py in {COMFYUI_ROOT} (set COMFYUI_PATH to a ComfyUI 0.8.x tree)"
    if "comfy.model_management" in sys.modules:
        import comfy.cli_args

        if not comfy.cli_args.args.cpu:
            raise RuntimeError("comfy.model_management was imported before tests/comfyui/conftest.py could force the CPU")
        return None
    root = str(COMFYUI_ROOT)
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    if str(REPO_ROOT) not in sys.path:
        sys.path.append(str(REPO_ROOT))  # after ComfyUI's root: wanted for rhymeflow_core only
    try:
        import comfy.cli_args  # parses an empty argv (comfy.options.args_parsing is False): pytest's argv is left alone

        comfy.cli_args.args.cpu = True
        import comfy.model_management  # noqa: F401  (now safe: device is the CPU)
    except ImportError as exc:
        if _comfyui_required():
            raise
        sys.path.remove(root)
        for name in [n for n in sys.modules if n == "comfy" or n.startswith("comfy.")]:
            del sys.modules[name]
        return (f"ComfyUI at {COMFYUI_ROOT} is not importable with {sys.executable} ({exc!r}); "
                f"run this tier with {COMFYUI_ROOT}/.venv/bin/python")
    return None


SKIP_REASON = _set_up_comfyui()
COMFYUI_AVAILABLE = SKIP_REASON is None


def pytest_collection_modifyitems(config, items):
    if COMFYUI_AVAILABLE:
        return
    marker = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if Path(str(item.path)).resolve().is_relative_to(THIS_DIR):
            item.add_marker(marker)


@pytest.fixture(scope="session")
def comfyui() -> types.SimpleNamespace:
    """ComfyUI's modules used by this tier; skips the requesting test when ComfyUI is not usable."""
    if not COMFYUI_AVAILABLE:
        pytest.skip(SKIP_REASON)
    import comfy.ldm.wan.model
    import comfy.model_management
    import comfy.model_sampling
    import comfy.sd
    import comfy.supported_models

    assert comfy.model_management.get_torch_device().type == "cpu", "ComfyUI should have been forced onto the CPU"
    return types.SimpleNamespace(
        root=COMFYUI_ROOT,
        sd=comfy.sd,
        supported_models=comfy.supported_models,
        wan=comfy.ldm.wan.model,
        model_sampling=comfy.model_sampling,
        model_management=comfy.model_management,
    )


PACK_NAME = "rhymeflow_pack"


@pytest.fixture(scope="session")
def pack_import(comfyui):
    """``pack_import("nodes.glue")``: a module of the pack, loaded as ComfyUI loads it (``__init__.py`` run as a package)."""
    if PACK_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK_NAME, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK_NAME] = module
        spec.loader.exec_module(module)
    return lambda path: importlib.import_module(f"{PACK_NAME}.{path}")


@pytest.fixture(scope="session")
def tiny_wan(comfyui):
    """``tiny_wan(path, seed, **WanConfig fields)``: a seeded random test-bed Wan 2.1 T2V DiT saved as safetensors at
    ``path`` and loaded with ``load_diffusion_model`` (what UNETLoader calls), so nothing waits for the trained checkpoint."""
    from safetensors.torch import save_file

    from rhymeflow_core.testbed.wan_dit import WanConfig, WanModel

    def make(path: Path, seed: int, **cfg):
        torch.manual_seed(seed)
        ref = WanModel(WanConfig(**cfg)).eval()
        save_file({k: v.detach().contiguous() for k, v in ref.state_dict().items()}, str(path))
        return comfyui.sd.load_diffusion_model(str(path))

    return make


@pytest.fixture(scope="session")
def pack(pack_import) -> types.SimpleNamespace:
    """The pack's modules and nodes the tests here use, imported as ComfyUI imports the pack."""
    return types.SimpleNamespace(
        glue=pack_import("nodes.glue"),
        patch=pack_import("rhymeflow_core.patch"),
        presets=pack_import("rhymeflow_core.presets"),
        schedule=pack_import("rhymeflow_core.schedule"),
        flops=pack_import("rhymeflow_core.flops"),
        adapters=pack_import("rhymeflow_core.adapters"),
        asymrnr=pack_import("rhymeflow_core.asymrnr"),
        asym=pack_import("nodes.asymrnr_node"),
        tb=pack_import("nodes.testbed_nodes"),
        kf_node=pack_import("nodes.keyframes_node").RhymeFlowKeyframes,
        sampler_node=pack_import("nodes.sampler_node").RhymeFlowAsyncSampler,
        patch_node=pack_import("nodes.patch_node").RhymeFlowProjectionPatch,
        dropin_node=pack_import("nodes.dropin_node").RhymeFlowAccelerate,
        stats_node=pack_import("nodes.stats_node").RhymeFlowStats,
        compare_node=pack_import("nodes.compare_node").RhymeFlowCompare,
    )


# ----------------------------------------------------------------------------------------------- headless server

TRY_IT_NOW = REPO_ROOT / "example_workflows" / "RhymeFlow try it now, bundled test bed, no download (Async Sampler).json"


@pytest.fixture(scope="module")
def testbed(comfyui):
    """The shipped test-bed checkpoint as UNETLoader loads it, after ModelSamplingSD3 at its sampling shift (``model_io.SAMPLE_SHIFT``)."""
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3

    from rhymeflow_core.testbed import model_io

    path = model_io.checkpoint_path()
    if not path.exists():
        pytest.skip(f"trained test-bed checkpoint {path} not present")
    return ModelSamplingSD3().patch(comfyui.sd.load_diffusion_model(str(path)), model_io.SAMPLE_SHIFT)[0]


@pytest.fixture(scope="module")
def server(comfyui, tmp_path_factory):
    """One headless ComfyUI per test module, with this repo as ``custom_nodes/rhymeflow`` (see ``server_harness``)."""
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "rhymeflow").symlink_to(REPO_ROOT, target_is_directory=True)
    weights = server_harness.testbed_dir()
    from rhymeflow_core.testbed import model_io

    if weights != model_io.DEFAULT_DIR.resolve() and model_io.checkpoint_path(weights).exists():
        (base / "models" / "diffusion_models").mkdir(parents=True)
        (base / "models" / "diffusion_models" / model_io.CHECKPOINT_NAME).symlink_to(model_io.checkpoint_path(weights))
    srv = server_harness.Server(comfyui.root, base)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def object_info(server) -> dict:
    return server.get("/object_info")


@pytest.fixture(scope="module")
def checkpoint(server):
    from rhymeflow_core.testbed import model_io

    folder = server_harness.testbed_dir()
    if not model_io.checkpoint_path(folder).exists():
        pytest.skip(f"no test-bed checkpoint in {folder} (train it: python -m rhymeflow_core.testbed.train)")
    return folder


@pytest.fixture(scope="module")
def testbed_prompt(object_info) -> dict:
    return server_harness.ui_to_api(json.loads(TRY_IT_NOW.read_text()), object_info)
