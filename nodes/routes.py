"""HTTP route for the step-map widget: ``GET /rhymeflow/step_map?steps=30&frames=21&preset=paper&...``.

The answer is ``rhymeflow_core.step_map_query.planned_step_map`` as JSON: the planned frames x steps
role map from the sampler's own ``build_step_map``, the FLOP-ideal speed-up, and an ``error`` string
(HTTP 400) when the settings are invalid, which the widget shows in place of the map. Inside ComfyUI the
scheduler's sigmas and the model file's dims come from ComfyUI itself (``plan_inputs.py``).

Importing this module never requires ComfyUI: ``register_routes()`` returns False when ComfyUI's
``server.PromptServer`` (or its aiohttp) is not there, and the pure logic lives in the core.
"""
from __future__ import annotations

import logging

try:  # inside the pack (ComfyUI imports it as a package)
    from ..rhymeflow_core.step_map_query import planned_step_map
except ImportError:  # repo root on sys.path (tests, tools)
    from rhymeflow_core.step_map_query import planned_step_map

log = logging.getLogger("RhymeFlow")

ROUTE = "/rhymeflow/step_map"
_registered = False


async def handle_step_map(request):
    """aiohttp handler: the query string in, the planned step map (or its error) out."""
    from aiohttp import web

    from .plan_inputs import comfy_sigmas, model_file_dims  # imports ComfyUI: only ever called inside it

    body = planned_step_map(dict(request.query), sigmas_fn=comfy_sigmas, dims_fn=model_file_dims)
    return web.json_response(body, status=400 if body.get("error") else 200)


def register_routes(server=None) -> bool:
    """Add the route to ComfyUI's ``PromptServer`` (idempotent); False when there is no server to add it to.

    Routes added to ``PromptServer.instance.routes`` before the app starts are also served under
    ``/api`` by ComfyUI, which is where the frontend's ``api.fetchApi`` sends requests.
    """
    global _registered
    if _registered:
        return True
    if server is None:
        try:
            from server import PromptServer
        except ImportError:  # no ComfyUI: nothing to register with
            return False
        server = getattr(PromptServer, "instance", None)
    if server is None or not hasattr(server, "routes"):
        return False
    server.routes.get(ROUTE)(handle_step_map)
    _registered = True
    return True


if not register_routes():
    log.debug("RhymeFlow: ComfyUI's PromptServer not found; %s not registered", ROUTE)
