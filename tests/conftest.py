"""Shared test setup: the `gpu` marker, a clean config/stats per test, and seeded generators."""

from __future__ import annotations

import pytest
import torch

import nvfuse
from nvfuse import config


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_config(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """Every test starts with a private disk cache and re-reads flags after it sets them."""
    monkeypatch.setenv("NVFUSE_CACHE_DIR", str(tmp_path_factory.mktemp("nvfuse-cache")))
    config.reload()
    nvfuse.reset_stats()
    yield
    monkeypatch.undo()
    config.reload()


@pytest.fixture
def interpret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run kernels through the interpreter, strictly (no silent eager fallback)."""
    monkeypatch.setenv("NVFUSE_INTERPRET", "1")
    monkeypatch.setenv("NVFUSE_STRICT", "1")
    config.reload()
