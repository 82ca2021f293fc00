"""Custom socket types shared by the RhymeFlow nodes."""
from comfy_api.latest import io

CATEGORY = "RhymeFlow"
ADVANCED = {"advanced": True}  # input option the frontend hides behind "show advanced" (0.8.2 has no kwarg for it)

Keyframes = io.Custom("RHYMEFLOW_KEYFRAMES")
