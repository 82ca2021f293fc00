"""The test bed: a small Wan-architecture DiT (4 heads) trained here on videos made from real photographs, with a lossy linear pseudo-VAE."""
