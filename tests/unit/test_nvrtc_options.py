"""NVRTC's compile-time options (nvfuse/runtime/nvrtc.py `SPEED_OPTIONS`): chosen by the loaded
NVRTC's version, never able to break a compile, and producing the very same cubin."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvfuse.codegen.templates import inline_helpers
from nvfuse.errors import CompileError
from nvfuse.runtime import nvrtc

pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="NVRTC (CuPy) is not installed")

GOLDEN = sorted((Path(__file__).parents[1] / "golden" / "expected").glob("*.cu"))
HELPERS = ("nvf_types.cuh", "nvf_math.cuh", "nvf_memory.cuh", "nvf_reduce.cuh", "nvf_cluster.cuh",
           "nvf_random.cuh")
# Uses the CUDA runtime's error type, one of the declarations --minimal leaves out.
RUNTIME_TYPES = """\
extern "C" __global__ void uses_runtime_types(int* y) {
  cudaError_t ok = cudaSuccess;
  y[threadIdx.x] = (int)ok + 1;
}
"""


def _without_speed(source: str, arch: str) -> bytes:
    from cupy_backends.cuda.libs import nvrtc as cupy_nvrtc  # type: ignore[import-untyped]

    prog = cupy_nvrtc.createProgram(source, "plain.cu", (), ())
    try:
        cupy_nvrtc.compileProgram(prog, (f"--gpu-architecture={arch}", *nvrtc.COMPILE_OPTIONS))
        return nvrtc._cubin_image(cupy_nvrtc, prog)
    finally:
        cupy_nvrtc.destroyProgram(prog)


@pytest.mark.parametrize(("version", "expected"), [
    ((11, 8), ()), ((12, 3), ()), ((12, 4), ("--minimal",)), ((12, 8), ("--minimal",)),
    ((13, 0), ("--minimal",)),
])
def test_speed_options_follow_the_nvrtc_version(monkeypatch: pytest.MonkeyPatch,
                                                version: tuple[int, int],
                                                expected: tuple[str, ...]) -> None:
    monkeypatch.setattr(nvrtc, "_version_tuple", lambda: version)
    monkeypatch.setattr(nvrtc, "_speed_refused", False)
    assert nvrtc.speed_options() == expected


def test_loaded_nvrtc_gets_minimal_where_it_knows_it() -> None:
    major, minor = (int(p) for p in nvrtc.nvrtc_version().split("."))
    assert ("--minimal" in nvrtc.speed_options()) == ((major, minor) >= (12, 4))


def test_an_option_nvrtc_rejects_never_breaks_a_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvrtc, "SPEED_OPTIONS", (("--no-such-nvrtc-option", (0, 0)),))
    monkeypatch.setattr(nvrtc, "_speed_refused", False)
    assert nvrtc.speed_options() == ("--no-such-nvrtc-option",)
    cubin = nvrtc.compile_to_cubin(RUNTIME_TYPES, "sm_90")
    assert cubin == _without_speed(RUNTIME_TYPES, "sm_90")
    assert nvrtc.speed_options() == ()  # refused once: not offered again in this process


def test_a_source_needing_what_minimal_omits_still_compiles() -> None:
    assert nvrtc.speed_options(), "this NVRTC predates --minimal"
    assert nvrtc.compile_to_cubin(RUNTIME_TYPES, "sm_90") == _without_speed(RUNTIME_TYPES,
                                                                             "sm_90")
    assert nvrtc.speed_options()  # a compile error is not a refused option


def test_a_broken_source_reports_the_full_compiles_log() -> None:
    broken = 'extern "C" __global__ void broken(float* y) { y[0] = undeclared_name; }\n'
    with pytest.raises(CompileError) as info:
        nvrtc.compile_to_cubin(broken, "sm_90", "broken.cu")
    assert "undeclared_name" in info.value.log and info.value.source == broken
    assert "NVRTC_ERROR_COMPILATION" in str(info.value)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_golden_kernels_compile_to_the_same_cubin_with_the_speed_options(arch: str) -> None:
    """The reason the speed options stay out of the cache key: not one byte changes."""
    assert len(GOLDEN) >= 20
    for path in GOLDEN:
        kernels = path.read_text()  # the goldens keep the kernels; the helpers go in front
        if "__cluster_dims__(" in kernels and arch == "sm_80":
            continue  # a cluster kernel is built for sm_90 and later only
        source = inline_helpers(HELPERS, kernels) + kernels
        assert nvrtc.compile_to_cubin(source, arch, path.name) == _without_speed(source, arch), (
            path.name)


def test_bench_host_splits_a_compile_into_its_phases() -> None:
    from bench import host

    front, nvvm, ptxas = host._phases_ms(host.EMPTY_KERNEL)
    assert front > 0 and front + nvvm + ptxas > front  # medians: a phase may read ~0 alone
    assert host._plain_ms(host.EMPTY_KERNEL) > 0
    report = {"meta": {"date": "2026-01-01"}, "host": [], "tracing_ms": 1.0,
              "compile": {"first_nvrtc_call_ms": 1.0, "empty_kernel_ms": 20.0,
                          "empty_kernel_nvfuse_options_ms": 16.0, "nvfuse_options": "--minimal",
                          "bench_kernels": 2, "median_kernel_ms": 40.0, "median_over_empty": 2.0,
                          "phases_ms_front_end_nvvm_ptxas": {"empty kernel": [11.0, 2.0, 5.0]},
                          "two_kernel_plan_serial_ms": 1.0, "two_kernel_plan_parallel_ms": 1.0,
                          "slowest_of_the_two_ms": 1.0, "cores": 2, "options_median_ms": {}}}
    text = host.to_markdown(report)
    assert "| empty kernel, plain NVRTC defaults | 20.0 |" in text
    assert "| empty kernel | 11.0 | 2.0 | 5.0 |" in text


def test_bench_host_reads_nvrtcs_time_trace() -> None:
    from bench import host

    spans = host._trace_ms(host.EMPTY_KERNEL)
    if spans is None:
        pytest.skip("this NVRTC has no --fdevice-time-trace")
    assert [label for label, _ in host.TRACE_SPANS] == list(spans)
    assert spans["front end"] > 0 and spans["NVVM"] > 0 and spans["ptxas"] > 0
    # a part never exceeds the whole it belongs to
    assert spans["of which header files"] <= spans["front end"]
    assert spans["of which module linker"] + spans["of which optimizer"] <= spans["NVVM"]
    assert spans["of which PTX parsing"] <= spans["ptxas"]
    report = {"meta": {"date": "2026-01-01"}, "host": [], "tracing_ms": 1.0,
              "compile": {"first_nvrtc_call_ms": 1.0, "empty_kernel_ms": 20.0,
                          "bench_kernels": 2, "median_kernel_ms": 40.0, "median_over_empty": 2.0,
                          "floor_options": "--Ofast-compile=mid", "floor_median_ms": 30.0,
                          "floor_over_empty": 1.5, "nvrtc_time_trace_ms": {"empty kernel": spans},
                          "two_kernel_plan_serial_ms": 1.0, "two_kernel_plan_parallel_ms": 1.0,
                          "slowest_of_the_two_ms": 1.0, "cores": 2, "options_median_ms": {}}}
    text = host.to_markdown(report)
    floor = "| median bench kernel, NVRTC's floor (--Ofast-compile=mid) | 30.0 (1.5x empty) |"
    assert floor in text
    assert f"| empty kernel | {spans['front end']} |" in text
