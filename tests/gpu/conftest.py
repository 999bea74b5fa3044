"""The GPU tier's shared fixture: `strict_poisoned` runs kernels on the device (never the
interpreter), strictly (a fallback is an error), with every output filled with garbage before
its kernel runs, so an element a kernel fails to write can never pass as correct."""

from __future__ import annotations

import pytest

from nvfuse import config
from nvfuse.runtime import executor


@pytest.fixture
def strict_poisoned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)
    monkeypatch.setenv("NVFUSE_STRICT", "1")
    monkeypatch.delenv("NVFUSE_INTERPRET", raising=False)
    config.reload()
