"""The README's usage example runs as written (CPU, through the interpreter) and the front page
stays short."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _usage_example() -> str:
    text = (ROOT / "README.md").read_text()
    usage = text[text.index("## Usage"):]
    match = re.search(r"```python\n(.*?)```", usage, re.S)
    assert match is not None, "README's Usage section has no python example"
    return match.group(1)


def test_readme_usage_example_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVFUSE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["NVFUSE_CACHE_DIR"] = str(tmp_path / "cache")
    result = subprocess.run([sys.executable, "-c", _usage_example()], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "kernels per step" in result.stdout and "__global__" in result.stdout


def test_readme_front_page_is_short() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 150
    for doc in ("docs/architecture.md", "docs/adding.md"):
        assert (ROOT / doc).is_file()
