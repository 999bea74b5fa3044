"""Helpers of the GPU tier: its cases and checks are the numerics tier's, run on the device."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType


def numerics(name: str) -> ModuleType:
    """A module of tests/numerics (its cases and helpers are shared with this tier)."""
    folder = str(Path(__file__).resolve().parents[1] / "numerics")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)
