"""GPU tier for `python -m bench --launch` (marker `gpu`, skipped without CUDA): the launch
report measures every variant, the driver launch alone costs less than the whole cached call,
and the files are written."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.launch import run_launch

pytestmark = [pytest.mark.gpu]


def test_launch_report(tmp_path: Path) -> None:
    report = run_launch(str(tmp_path))
    times = {row["what"]: row["us"] for row in report["rows"]}
    assert len(times) == 4 and all(us > 0 for us in times.values())
    call = times["nvfuse bias+gelu+residual (1 kernel, cached call)"]
    assert times["driver launch alone (packed, same kernel)"] < call
    assert len(list(tmp_path.glob("launch-*.json"))) == 1
    assert len(list(tmp_path.glob("launch-*.md"))) == 1
