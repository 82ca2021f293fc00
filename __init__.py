"""RhymeFlow for ComfyUI: the pack entry point.

ComfyUI imports this file as a package from ``custom_nodes/<folder>``. It registers the V3 nodes through
``comfy_entrypoint`` (no ``NODE_CLASS_MAPPINGS``: ComfyUI would then ignore ``comfy_entrypoint``), serves
``web/``, lists the test-bed checkpoint under ``diffusion_models`` so UNETLoader offers
``testbed_wan.safetensors``, and loads the step-map route. Nothing here imports ComfyUI at module level
except inside guards, so the folder also imports as a plain package.
"""
import logging
import os

WEB_DIRECTORY = "./web"
TESTBED_WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rhymeflow_core", "testbed", "weights")

log = logging.getLogger("RhymeFlow")

try:
    import folder_paths
except ImportError:  # not inside ComfyUI
    folder_paths = None
if folder_paths is not None:
    folder_paths.add_model_folder_path("diffusion_models", TESTBED_WEIGHTS)

try:
    from .nodes import routes  # noqa: F401  (registers /rhymeflow/step_map on import)
except Exception as exc:  # noqa: BLE001 - a broken route must not stop the nodes from loading
    log.warning("RhymeFlow: step-map route not loaded: %s", exc)


async def comfy_entrypoint():
    from comfy_api.latest import ComfyExtension

    from .nodes import node_list

    class RhymeFlowExtension(ComfyExtension):
        async def get_node_list(self):
            return node_list()

    return RhymeFlowExtension()
