"""The test bed: a small Wan-architecture DiT trained here on procedural videos, with an exact pseudo-VAE."""
