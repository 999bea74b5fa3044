"""Random numbers in fused kernels: Philox4x32-10 known answers, the CUDA helper equal to the
interpreter bit for bit (host build), and dropout / rand_like / bernoulli semantics."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nvfuse
from nvfuse.codegen.templates import read_template
from nvfuse.interpret.random import philox4x32, rand_uniform


def _words(*values: int) -> tuple[np.ndarray, ...]:
    return tuple(np.array([v], dtype=np.uint64) for v in values)


@pytest.mark.parametrize(("counter", "key", "expected"), [
    # Random123's published known-answer vectors for philox4x32_10
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_philox_known_answers(counter: tuple, key: tuple, expected: tuple) -> None:
    out = philox4x32(_words(*counter), key)
    assert tuple(int(w[0]) for w in out) == expected


def test_device_helper_matches_interpreter_bit_for_bit(tmp_path) -> None:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not installed")
    idx = [0, 1, 2, 12345, 2**31 + 7, 2**40 + 3]
    seeds = [0, 1, 2**62 - 5, 987654321]
    driver = read_template("nvf_random.cuh") + "\n#include <cstdio>\nint main() {\n"
    for s in seeds:
        for stream in (0, 3):
            for i in idx:
                driver += f'  printf("%a\\n", nvf_rand_uniform({i}LL, {s}LL, {stream}LL));\n'
    driver += "  return 0;\n}\n"
    src = tmp_path / "rng.cu"
    src.write_text(driver)
    exe = tmp_path / "rng"
    subprocess.run([nvcc, "-x", "cu", str(src), "-o", str(exe)], check=True, capture_output=True)
    printed = [float.fromhex(v) for v in subprocess.run(
        [str(exe)], check=True, capture_output=True, text=True).stdout.split()]
    expected = [float(v) for s in seeds for stream in (0, 3)
                for v in rand_uniform(np.array(idx), s, stream)]
    assert printed == expected


def _dropout_twice(x: torch.Tensor) -> torch.Tensor:
    return F.dropout(x, 0.3, training=True) * 2


def test_dropout_is_one_kernel_with_the_right_rate_and_scale(interpret: None) -> None:
    x = torch.rand(300, 400) + 0.5  # no zeros: a zero output means dropped
    fm = nvfuse.fuse(_dropout_twice, (x,))
    assert len(fm.fusion_groups) == 1
    out = fm(x)
    kept = out != 0
    n = x.numel()
    assert abs(kept.float().mean().item() - 0.7) < 4 * (0.7 * 0.3 / n) ** 0.5
    torch.testing.assert_close(out[kept], (x * 2 / 0.7)[kept])
    assert nvfuse.stats()["launches"] == 1


def test_same_seed_same_result_and_calls_differ(interpret: None) -> None:
    x = torch.rand(64, 64) + 0.5
    fm = nvfuse.fuse(_dropout_twice, (x,))
    torch.manual_seed(7)
    a = fm(x)
    torch.manual_seed(7)
    b = fm(x)
    c = fm(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_two_dropouts_draw_independent_masks(interpret: None) -> None:
    fn = lambda x: (F.dropout(x, 0.5, training=True), F.dropout(x, 0.5, training=True))
    x = torch.rand(128, 128) + 0.5
    fm = nvfuse.fuse(fn, (x,))
    a, b = fm(x)
    # one kernel for both groups (their IR is equal), launched together with a seed each
    assert len([k for k in fm.kernels if not k.name.startswith("horizontal_")]) == 1
    agree = ((a != 0) == (b != 0)).float().mean().item()
    assert 0.45 < agree < 0.55  # independent: half the positions agree


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_rand_like_stays_below_one_in_every_dtype(dtype: torch.dtype, interpret: None) -> None:
    x = torch.zeros(256, 256, dtype=dtype) + 1
    fm = nvfuse.fuse(lambda t: torch.rand_like(t) * t, (x,))
    r = fm(x)
    assert r.dtype == dtype and len(fm.fusion_groups) == 1
    assert 0 <= r.min().item() and r.max().item() < 1
    assert abs(r.double().mean().item() - 0.5) < 0.01


def test_bernoulli_rate(interpret: None) -> None:
    x = torch.rand(200, 200)
    fm = nvfuse.fuse(lambda t: torch.bernoulli(t * 0 + 0.25), (x,))
    assert abs(fm(x).mean().item() - 0.25) < 0.01


def test_training_backward_applies_the_forward_mask(interpret: None) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    w = torch.rand(256, requires_grad=True)
    x = torch.rand(64, 256) + 0.5
    fn = lambda t: F.dropout(t * w, 0.4, training=True)
    out = torch.compile(fn, backend="nvfuse")(x)
    out.sum().backward()
    kept = (out != 0).float()
    torch.testing.assert_close(out, (x * w / 0.6 * kept).detach())
    torch.testing.assert_close(w.grad, (x * kept / 0.6).sum(0))
    assert nvfuse.stats()["launches"] >= 2 and nvfuse.stats()["fallbacks"] == 0


def test_dropout_after_softmax_is_one_kernel(interpret: None) -> None:
    fn = lambda x: F.dropout(torch.softmax(x * 0.5, -1), 0.1, training=True)
    x = torch.randn(16, 64)
    fm = nvfuse.fuse(fn, (x,))
    out = fm(x)
    assert len(fm.kernels) == 1 and nvfuse.stats()["fallbacks"] == 0
    kept = out != 0
    torch.testing.assert_close(out[kept], (torch.softmax(x * 0.5, -1) / 0.9)[kept])
    for arch in ("sm_80", "sm_90"):
        nvfuse.compile_source(fm.kernels[0].source, arch)


def test_first_compiled_call_draws_what_later_calls_draw(interpret: None) -> None:
    """torch.compile's graphs are traced on their first real call; tracing runs the random ops,
    which used to advance torch's generator, so the first call's mask differed from every later
    call's for the same seed."""
    import torch._dynamo

    torch._dynamo.reset()
    w = torch.rand(64, requires_grad=True)
    compiled = torch.compile(lambda t: F.dropout(t * w, 0.5, training=True), backend="nvfuse")
    x = torch.rand(32, 64) + 0.5
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        outs.append(compiled(x))
    assert torch.equal(outs[0], outs[1])
