"""The generated CUDA itself, executed on the CPU: thread-local kernels (pointwise, horizontal
bundles of pointwise members) are compiled by the host C++ compiler with CUDA's qualifiers
defined away and run block by block, thread by thread, in place of the interpreter.  This
checks what the GPU would run -- the emitted text, not the kernel IR -- against eager, on a
machine without a GPU.  Kernels whose threads meet (barriers, shared memory, warp exchanges)
are out of its reach: the interpreter and the GPU tier cover them.  Skipped without g++."""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from typing import Any

import pytest
import torch

import nvfuse
from nvfuse.codegen.cuda import emit_cuda
from nvfuse.dtypes import DType
from nvfuse.interpret.machine import run_kernel
from nvfuse.lower import kir
from nvfuse.lower.horizontal import combine
from nvfuse.runtime import executor

GXX = shutil.which("g++")
pytestmark = pytest.mark.skipif(GXX is None, reason="no g++ to compile the CUDA for the host")

_PRELUDE = """\
#include <cmath>
#include <cstdint>
using std::isnan; using std::isinf;
struct nvf_host_dim3 { unsigned x, y, z; };
static nvf_host_dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
"""

_BLOCK_WIDE = (kir.Sync, kir.Shared, kir.BlockReduce, kir.WarpReduce, kir.WelfordReduce,
               kir.ArgReduce, kir.ClusterReduce, kir.ClusterSync)


def _thread_local(node: Any) -> bool:
    if isinstance(node, _BLOCK_WIDE):
        return False
    if isinstance(node, tuple):
        return all(_thread_local(n) for n in node)
    if hasattr(node, "__dataclass_fields__"):
        return all(_thread_local(getattr(node, f)) for f in node.__dataclass_fields__)
    return True


def _driver(k: kir.Kernel, descending: bool = False) -> str:
    """`nvf_run(pointers, scalars, grid)`: every block and thread of `k` in turn (blocks in
    descending order if asked: then a thread writing a later block's element is not
    overwritten by that block)."""
    args = [f"({'' if t.is_output else 'const '}{t.dtype.c_type}*)ptrs[{i}]"
            for i, t in enumerate(k.tensors)]
    args += [f"({p.dtype.c_type})scalars[{i}]" for i, p in enumerate(k.scalars)]
    return (f'extern "C" void nvf_run(void** ptrs, long long* scalars, unsigned grid) {{\n'
            f"  blockDim.x = {k.block}; gridDim.x = grid;\n"
            f"  for (unsigned i = 0; i < grid; ++i)\n"
            f"    for (unsigned t = 0; t < {k.block}; ++t) {{\n"
            f"      blockIdx.x = {'grid - 1 - i' if descending else 'i'}; threadIdx.x = t;\n"
            f"      {k.name}({', '.join(args)});\n"
            f"    }}\n}}\n")


class HostCuda:
    """Stands in for `Stage.launch`: compiles each kernel's CUDA source with g++ (cached per
    source) and runs it on the CPU tensors."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.libs: dict[str, Any] = {}
        self.ran: list[Any] = []  # the CompiledKernels run, in order

    def library(self, source: str, k: kir.Kernel, descending: bool = False) -> Any:
        key = hashlib.sha256(f"{descending}{source}".encode()).hexdigest()[:16]
        if key not in self.libs:
            cpp = os.path.join(self.workdir, f"{key}.cpp")
            so = os.path.join(self.workdir, f"{key}.so")
            with open(cpp, "w") as f:
                f.write(_PRELUDE + source + _driver(k, descending))
            done = subprocess.run([GXX, "-std=c++17", "-O1", "-shared", "-fPIC",  # type: ignore[list-item]
                                   "-w", cpp, "-o", so], capture_output=True, text=True)
            assert done.returncode == 0, f"g++ refused {k.name}:\n{done.stderr[:4000]}"
            self.libs[key] = ctypes.CDLL(so)
        return self.libs[key]

    def __call__(self, stage: executor.Stage, tensors: list[torch.Tensor],
                 scalars: tuple[int, ...]) -> None:
        k = stage.kernel.kernel_ir
        assert _thread_local(k.body), f"{k.name}: its threads meet; not runnable here"
        lib = self.library(stage.kernel.source, k)
        ptrs = (ctypes.c_void_p * max(1, len(tensors)))(*[t.data_ptr() for t in tensors])
        vals = (ctypes.c_longlong * max(1, len(scalars)))(*scalars)
        lib.nvf_run(ptrs, vals, ctypes.c_uint(stage.grid))
        self.ran.append(stage.kernel)


@pytest.fixture
def host_cuda(interpret: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    with tempfile.TemporaryDirectory() as d:
        runner = HostCuda(d)
        monkeypatch.setattr(executor.Stage, "launch",
                            lambda self, tensors, scalars: runner(self, tensors, scalars))
        yield runner


def adam_like(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
              step: torch.Tensor) -> tuple[torch.Tensor, ...]:
    m = m * 0.9 + g * 0.1
    v = v * 0.999 + g * g * 0.001
    update = (m / (1 - 0.9 ** step)) / ((v / (1 - 0.999 ** step)).sqrt() + 1e-8)
    return p - 0.01 * update, m, v


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_pointwise_cuda_runs_on_the_host_like_eager(host_cuda: HostCuda,
                                                    dtype: torch.dtype) -> None:
    """A vectorised pointwise kernel with a lane-invariant part and a tail (1001 elements)."""
    args = (*(torch.randn(1001).to(dtype) for _ in range(3)), torch.rand(1001).to(dtype),
            torch.tensor(3.0))
    fm = nvfuse.fuse(adam_like, args)
    for step in (2.0, 5.0):
        args = (*args[:4], torch.tensor(step))
        for got, want in zip(fm(*args), adam_like(*args)):
            torch.testing.assert_close(got, want, rtol=2e-2 if dtype != torch.float32 else 1e-5,
                                       atol=2e-2 if dtype != torch.float32 else 1e-5)
    assert host_cuda.ran


def test_horizontal_members_of_one_kernel_share_one_code_path_and_match_eager(
        host_cuda: HostCuda) -> None:
    """An optimizer-like step over several parameters: the members running the same kernel are
    one code path in the emitted source (its body printed once), a member of another kernel
    keeps its own; every member's result matches eager, tails included."""
    sizes = (1000, 999, 4096, 7, 3000)
    n = len(sizes)

    def step(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p, g, m, v, t = (tensors[i * n:(i + 1) * n] for i in range(5))
        out = []
        for i in range(n):
            out += adam_like(p[i], g[i], m[i], v[i], t[i])
        out.append(tensors[-1].exp())  # another member kernel in the bundle
        return tuple(out)

    def make() -> list[torch.Tensor]:
        return ([torch.randn(s) for s in sizes] + [torch.randn(s) for s in sizes]
                + [torch.randn(s) for s in sizes] + [torch.rand(s) for s in sizes]
                + [torch.tensor(float(k + 2)) for k in range(n)] + [torch.randn(5)])

    fm = nvfuse.fuse(step, make())
    for _ in range(2):
        args = make()
        for got, want in zip(fm(*args), step(*args)):
            torch.testing.assert_close(got, want)
    horizontal = {k.name: k for k in host_cuda.ran if k.kernel_ir.groups}
    assert len(horizontal) == 1, [k.name for k in host_cuda.ran]
    (k,) = horizontal.values()
    (group,) = k.kernel_ir.groups
    assert len(group.positions) == len(sizes)
    assert len(k.kernel_ir.body) == 2 * (len(sizes) + 1)  # and the exp member, inlined
    assert k.source.count("// members ") == 1
    body = k.source[k.source.index("// members "):]
    # the member body printed once: one sqrt in its vector path, one in its tail
    assert body.count("sqrtf(") == 2, body


def _marker(name: str, block: int) -> kir.Kernel:
    """A thread-local member kernel whose every output element says who wrote it: thread t of
    block b, g = b * block + t < n, stores
        out0[g] = (((in0[0] * 64 + tag) * 8 + gridDim.x) * 128 + t) * 512 + g,
    so a block that took another member's pointers, scalars, first block or grid writes other
    values (or nothing, its g negative), and a thread past a narrower member's block writes the
    element of the block after it, with its own t."""
    i32, b8 = DType.INT32, DType.BOOL

    def op(o: str, a: kir.Expr, b: kir.Expr | int) -> kir.Expr:
        return kir.IndexOp(o, a, kir.Const(b, i32) if isinstance(b, int) else b, i32)

    n, tag, g = kir.Param("n", i32), kir.Param("tag", i32), kir.Var("g", i32)
    tid = kir.Special("threadIdx.x", i32)
    who = op("+", op("*", op("+", op("*", op("+", op("*", op("+", op(
        "*", kir.Elem("a", kir.Const(0, i32), i32), 64), tag), 8),
        kir.Special("gridDim.x", i32)), 128), tid), 512), g)
    body = (
        kir.Declare("g", i32, init=op("+", op("*", kir.Special("blockIdx.x", i32), block), tid)),
        kir.If(kir.IndexOp("&&", kir.IndexOp("<=", kir.Const(0, i32), g, b8),
                           kir.IndexOp("<", g, n, b8), b8), (
            kir.Declare("a", i32, lanes=1),
            kir.Load("a", i32, "in0", kir.Const(0, i32), 1, False),
            kir.Declare("r", i32, lanes=1),
            kir.Assign(kir.Elem("r", kir.Const(0, i32), i32), who),
            kir.Store("out0", i32, g, "r", 1, False))))
    tensors = (kir.TensorParam("in0", i32, False, 4), kir.TensorParam("out0", i32, True, 4))
    return kir.Kernel(name, tensors, (n, tag), body, block, op("/", op("+", n, block - 1), block),
                      i32)


def _marked(a: int, tag: int, grid: int, block: int, n: int) -> torch.Tensor:
    g = torch.arange(n, dtype=torch.int32)
    return (((a * 64 + tag) * 8 + grid) * 128 + g % block) * 512 + g


@pytest.mark.parametrize("count", range(1, 21))
def test_member_group_search_selects_every_blocks_member(count: int) -> None:
    """`count` members of kernel `a` (128 threads) with members of another kernel `b` and of a
    narrower kernel `c` (64 threads, so its blocks test threadIdx.x too) before, between and
    after them, grids of 0 to 7 blocks: the emitted CUDA (the groups' binary searches over
    first blocks), run on the host block by block, writes what the interpreter (every member
    its own body) writes and what each member should, element for element."""
    a, b, c = _marker("a", 128), _marker("b", 128), _marker("c", 64)
    members = [b]
    for i in range(count):
        members.append(a)
        members += [b] * (i % 2 == 0) + [c] * (i % 3 == 1)
    members.append(c)
    k = combine(f"search_{count}", members)
    assert sorted(len(gr.positions) for gr in k.groups if members[(gr.positions[0] - 1) // 2]
                  is a) == ([count] if count > 1 else [])
    sizes = [0 if i % 7 == 3 else 1 + i * 53 % 400 if m.block == 64 else 1 + i * 97 % 500
             for i, m in enumerate(members)]
    grids = [-(-s // m.block) for s, m in zip(sizes, members)]
    firsts = [sum(grids[:i]) for i in range(len(members))]
    values: dict[str, int] = {}
    for i, (s, first) in enumerate(zip(sizes, firsts)):
        values.update({f"h{i}_n": s, f"h{i}_tag": i + 1, f"h{i}_first_block": first})
    (scalars,) = kir.bind_scalars([k], values)
    ins = [torch.tensor([i % 7 + 1], dtype=torch.int32) for i in range(len(members))]

    def outputs() -> list[torch.Tensor]:
        return [torch.full((s,), -1, dtype=torch.int32) for s in sizes]

    host, interpreted = outputs(), outputs()
    with tempfile.TemporaryDirectory() as d:
        lib = HostCuda(d).library(emit_cuda(k), k, descending=True)
        tensors = [t for pair in zip(ins, host) for t in pair]
        ptrs = (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])
        vals = (ctypes.c_longlong * len(scalars))(*scalars)
        lib.nvf_run(ptrs, vals, ctypes.c_uint(sum(grids)))
    run_kernel(k, [t for pair in zip(ins, interpreted) for t in pair], scalars, sum(grids))
    for i, m in enumerate(members):
        want = _marked(i % 7 + 1, i + 1, grids[i], m.block, sizes[i])
        assert torch.equal(interpreted[i], want), f"interpreter, member {i} ({m.name})"
        assert torch.equal(host[i], want), f"emitted CUDA, member {i} ({m.name}): {host[i]}"


_UNARY = {
    "exp": torch.exp, "log": lambda x: torch.log(x.abs() + 0.1), "tanh": torch.tanh,
    "sigmoid": torch.sigmoid, "gelu": torch.nn.functional.gelu,
    "gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"), "erf": torch.erf,
    "rsqrt": lambda x: torch.rsqrt(x.abs() + 0.1), "silu": torch.nn.functional.silu,
    "sin": torch.sin, "floor": torch.floor, "round": torch.round, "abs": torch.abs,
    "relu": torch.relu, "softplus": torch.nn.functional.softplus, "expm1": torch.expm1,
    "log1p": lambda x: torch.log1p(x.abs()), "sqrt": lambda x: torch.sqrt(x.abs()),
    "reciprocal": lambda x: 1 / (x.abs() + 0.5), "atan": torch.atan, "cube": lambda x: x ** 3,
    "clamp": lambda x: x.clamp(-0.5, 0.5), "nan_to_num": lambda x: torch.nan_to_num(x / 0.0),
}
_BINARY = {
    "add": torch.add, "mul": torch.mul, "div": torch.div, "max": torch.maximum,
    "min": torch.minimum, "pow": lambda a, b: torch.pow(a.abs() + 0.1, b), "atan2": torch.atan2,
    "fmod": torch.fmod, "remainder": torch.remainder, "hypot": torch.hypot,
    "where": lambda a, b: torch.where(a > b, a, b),
    "floor_div": lambda a, b: torch.div(a, b, rounding_mode="floor"),
}
_INTEGER = ("add", "mul", "max", "min", "fmod", "remainder", "floor_div", "where")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64,
                                   torch.int32, torch.int64, torch.int8, torch.uint8])
def test_ops_as_emitted_cuda_match_eager(host_cuda: HostCuda, dtype: torch.dtype) -> None:
    """Every op of the table above, per dtype, as the CUDA text nvfuse emits (257 elements:
    vector lanes and a tail), run on the host against eager."""
    gen = torch.Generator().manual_seed(0)
    floating = dtype.is_floating_point
    half = dtype in (torch.float16, torch.bfloat16)
    tol = {"rtol": 1e-2, "atol": 1e-2} if half else {"rtol": 1e-5, "atol": 1e-6}
    failures = []

    def check(name: str, f: Any, args: tuple[torch.Tensor, ...]) -> None:
        try:
            got = nvfuse.fuse(f, args)(*args)
            torch.testing.assert_close(got, f(*args), equal_nan=True,
                                       **(tol if floating else {"rtol": 0, "atol": 0}))
        except AssertionError as e:
            failures.append(f"{name}: {str(e)[:300]}")

    if floating:
        for name, f in _UNARY.items():
            check(name, f, (torch.randn(257, generator=gen).to(dtype),))
        for name, f in _BINARY.items():
            check(name, f, tuple(torch.randn(257, generator=gen).to(dtype) for _ in range(2)))
    else:
        low = 0 if dtype == torch.uint8 else -50
        for name in _INTEGER:
            a = torch.randint(low, 50, (257,), generator=gen).to(dtype)
            b = torch.randint(1, 9, (257,), generator=gen).to(dtype)
            check(name, _BINARY[name], (a, b))
    assert not failures, "\n".join(failures)
    assert len(host_cuda.libs) >= (len(_UNARY) + len(_BINARY) if floating else len(_INTEGER))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_per_row_output_beside_full_outputs_keeps_vector_lanes(host_cuda: HostCuda,
                                                               dtype: torch.dtype) -> None:
    """A kernel writing a [N, 1] value beside [N, C] ones (cross-entropy's backward) keeps its
    vector lanes: lane 0 of the thread at a row's first column stores the row's value once;
    the interpreter and the emitted CUDA both match eager."""
    def f(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c = (b * 3).exp()
        return a * c, c + 1, (a - c).sigmoid()

    for _ in range(2):
        a, b = torch.randn(6, 64).to(dtype), torch.randn(6, 1).to(dtype)
        fm = nvfuse.fuse(f, (a, b))
        for got, want in zip(fm(a, b), f(a, b)):
            torch.testing.assert_close(got, want)
    (k,) = {k.name: k for k in host_cuda.ran}.values()
    assert k.signature[1].lanes > 1 and k.signature[1].outputs[1] == "10"  # type: ignore[union-attr]
    with pytest.MonkeyPatch.context() as m:  # the same kernel through the interpreter
        m.setattr(executor.Stage, "launch", _interpreted)
        a, b = torch.randn(6, 64).to(dtype), torch.randn(6, 1).to(dtype)
        for got, want in zip(nvfuse.fuse(f, (a, b))(a, b), f(a, b)):
            torch.testing.assert_close(got, want)


def _interpreted(stage: executor.Stage, tensors: list[torch.Tensor],
                 scalars: tuple[int, ...]) -> None:
    from nvfuse.interpret.machine import run_kernel

    run_kernel(stage.kernel.kernel_ir, tensors, scalars, stage.grid)
