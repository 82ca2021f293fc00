"""RhymeFlow core: pure torch, importable and testable without ComfyUI."""
