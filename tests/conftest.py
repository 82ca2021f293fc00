"""Core test configuration: the repo root on sys.path, one torch thread, and the root is not a test package.

One thread keeps tests from fighting a background job for the 2 cores (OpenMP oversubscription
slows both sides by several times). The repo root is a ComfyUI package whose ``__init__.py`` imports
ComfyUI; pytest would import it as the tests' parent package, so it is collected as a plain folder.
"""
import sys
from pathlib import Path

import pytest

_REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_REPO_ROOT))

import torch  # noqa: E402

torch.set_num_threads(1)


class _RepoRootIsNotATestPackage:
    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path, parent):
        if Path(path).resolve() == _REPO_ROOT:
            return pytest.Dir.from_parent(parent, path=path)


def pytest_configure(config):
    if not config.pluginmanager.has_plugin("rhymeflow-repo-root-as-dir"):
        config.pluginmanager.register(_RepoRootIsNotATestPackage(), "rhymeflow-repo-root-as-dir")
