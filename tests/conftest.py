"""Core test configuration: the repo root on sys.path, and one torch thread per test process.

One thread keeps tests from fighting a background job for the 2 cores (OpenMP oversubscription
slows both sides by several times) and makes timings irrelevant to correctness.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

torch.set_num_threads(1)
