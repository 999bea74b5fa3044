"""Smoke test of `python -m bench`: the whole case table at --size tiny on the CPU (kernels through
nvfuse's interpreter), in-process, into a tmp dir.  Checks the JSON schema exactly, that every
case ran, that nvfuse matched eager everywhere it is expected to, and that the MD file exists.
Times are not checked: the CPU run makes no timing claims."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import report
from bench.__main__ import run_suite
from bench.cases import CASES, KINDS
from nvfuse import config

META_TYPES = {"gpu": str, "torch": str, "cupy": str, "nvrtc": str, "date": str,
              "copy_bw_gbps": float}
ROW_TYPES = {"case": str, "kind": str, "dtype": str, "shape": str, "bytes": int,
             "eager_ms": float, "inductor_ms": float, "nvfuse_ms": float}


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory):
    """One tiny CPU run shared by the tests below (the table takes seconds, not minutes)."""
    mp = pytest.MonkeyPatch()
    out = tmp_path_factory.mktemp("bench-results")
    mp.setenv("NVFUSE_INTERPRET", "1")
    mp.setenv("NVFUSE_CACHE_DIR", str(tmp_path_factory.mktemp("bench-nvfuse-cache")))
    config.reload()
    try:
        run, results = run_suite(size="tiny", out_dir=str(out), device="cpu")
    finally:
        mp.undo()
        config.reload()
    return run, results, out


def test_json_schema_is_exact(suite) -> None:
    _, results, out = suite
    [path] = list(Path(out).glob("*-cpu-interpreter.json"))
    data = json.loads(path.read_text())
    assert set(data) == {"meta", "cases"}
    assert set(data["meta"]) == set(META_TYPES)
    for key, typ in META_TYPES.items():
        assert type(data["meta"][key]) is typ, key
    assert data["meta"]["gpu"] == "cpu-interpreter"
    assert data["meta"]["copy_bw_gbps"] > 0
    assert data["cases"], "no rows"
    for row in data["cases"]:
        assert set(row) == set(ROW_TYPES), row
        for key, typ in ROW_TYPES.items():
            assert type(row[key]) is typ, (row["case"], key)
        assert row["kind"] in KINDS
        if row["kind"] == "compile":
            assert row["eager_ms"] == 0.0
        else:
            assert row["bytes"] > 0, row["case"]
    assert [r["case"] for r in data["cases"]] == [r["case"] for r in results["cases"]]


def test_every_case_appears(suite) -> None:
    _, results, _ = suite
    names = {row["case"] for row in results["cases"]}
    for case in CASES:
        assert case.name in names
        if case.kind == "compile":
            assert f"{case.name}-warm-disk" in names


def test_nvfuse_matches_eager(suite) -> None:
    """The harness checks every variant against eager before timing it (a mismatch or a failure
    records NaN and a reason): nvfuse, training through its dynamo backend included, must pass
    every case, and eager must run every case."""
    run, results, _ = suite
    assert not run.failures, run.failures
    for row in results["cases"]:
        assert math.isfinite(row["eager_ms"]), row["case"]
        assert math.isfinite(row["nvfuse_ms"]), row["case"]


def test_markdown_written(suite) -> None:
    _, results, out = suite
    md = Path(out) / f"{report.stem(results)}.md"
    assert md.exists()
    text = md.read_text()
    for case in CASES:
        assert f"| {case.name} |" in text


def test_derived_metrics() -> None:
    row = {"case": "x", "kind": "pointwise", "dtype": "float32", "shape": "1", "bytes": 2_000_000,
           "eager_ms": 0.004, "inductor_ms": 0.002, "nvfuse_ms": 0.001}
    d = report.derived(row, copy_bw=4000.0)
    assert d["gbps"] == pytest.approx(2000.0)
    assert d["pct_copy"] == pytest.approx(50.0)
    assert d["x_eager"] == pytest.approx(4.0) and d["x_inductor"] == pytest.approx(2.0)
    assert report.geomean([1.0, 4.0, math.nan]) == pytest.approx(2.0)
    assert report.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"


def test_only_selects_by_substrings_in_order() -> None:
    from bench.__main__ import select

    names = [c.name for c in select("softmax-w32k-bf16,bias-gelu,softmax-w32k")]
    assert names[0] == "softmax-w32k-bf16"
    assert names[1:3] == [c.name for c in CASES if "bias-gelu" in c.name][:2]
    assert len(names) == len(set(names))  # each case once
    assert "softmax-w32k-fp32" in names and "log-softmax-w32k-fp32" in names
    assert [c.name for c in select(None)] == [c.name for c in CASES]


def test_budget_leaves_cases_out_and_says_so(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVFUSE_INTERPRET", "1")
    monkeypatch.setenv("NVFUSE_CACHE_DIR", str(tmp_path / "cache"))
    config.reload()
    try:
        _, results = run_suite(size="tiny", only="bias-add-rows,bias-add-cols",
                               out_dir=str(tmp_path), device="cpu", budget_s=0.0)
    finally:
        monkeypatch.undo()
        config.reload()
    assert results["cases"] == []  # no time at all: no case starts
    assert "bias-add-rows-fp32, bias-add-cols-fp32" in results["meta"]["left_out"]
    assert "Not run: " in next(tmp_path.glob("*.md")).read_text()
