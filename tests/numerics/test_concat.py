"""cat / stack / constant pad fused as index remaps, end to end through the interpreter (strict,
outputs poisoned) against eager: every dim position, 1 to 4 pieces of unequal sizes, pieces that
are inputs, computed values and broadcast values, every dtype, positive / negative / zero pads
with values, the Llama rotary pattern as one kernel, the partition rules that leave a cat
eager, kernel reuse across sizes, and every generated kernel compiled by NVRTC for sm_80 and
sm_90."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from cases import compare

import nvfuse
from nvrtc_batch import compile_all
from nvfuse.runtime import executor

f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
i32, i64, b8 = torch.int32, torch.int64, torch.bool
ALL = (f32, f16, bf16, f64, i32, i64, b8)

_generated: dict[str, str] = {}  # kernel name -> source


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch, interpret: None) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def _make(shape: tuple[int, ...], dtype: torch.dtype, seed: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(seed.encode()))
    if dtype is b8:
        return torch.rand(shape, generator=g) > 0.5
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=g, dtype=f64) * 2).to(dtype)
    return torch.randint(-1000, 1000, shape, generator=g, dtype=i64).to(dtype)


def _run(fn: Callable[..., object], inputs: tuple[torch.Tensor, ...], dtype: torch.dtype,
         groups: int = 1, tol: tuple[float, float] | None = None) -> nvfuse.FusedModule:
    expected = fn(*inputs)
    fm = nvfuse.fuse(fn, inputs)
    nvfuse.reset_stats()
    actual = fm(*inputs)
    assert len(fm.fusion_groups) == groups, [g.ops for g in fm.fusion_groups]
    assert nvfuse.stats()["fallbacks"] == 0
    # every group ran as a kernel; independent ones may share a launch (horizontal)
    assert nvfuse.stats()["launches"] == _fused_launches(fn, inputs)
    if not isinstance(expected, tuple):
        expected, actual = (expected,), (actual,)
    for a, e in zip(actual, expected):
        compare(a, e, dtype, tol)
    _generated.update((k.name, k.source) for k in fm.kernels)
    return fm


def _twice(x: torch.Tensor) -> torch.Tensor:
    """A pointwise op meaningful for every dtype (bool: logical not)."""
    return ~x if x.dtype is b8 else x * 2


# -- cat: dims, piece counts, inputs / computed / broadcast pieces --------------------------------
CAT_DIMS = [((3, 4, 5), (2, 4, 5), 0), ((2, 3, 4), (2, 5, 4), 1), ((2, 3, 4), (2, 3, 1), 2),
            ((2, 3, 4), (2, 3, 7), -1), ((4, 2, 3), (4, 6, 3), -2)]


def _cat_shapes(a: tuple[int, ...], b: tuple[int, ...], dim: int) -> tuple[int, ...]:
    """A third piece's shape: like `a`, with 4 along the cat dim."""
    c = list(a)
    c[dim] = 4
    return tuple(c)


@pytest.mark.parametrize("dtype", ALL, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize(("sa", "sb", "dim"), CAT_DIMS)
def test_cat_of_computed_values(sa: tuple[int, ...], sb: tuple[int, ...], dim: int,
                                dtype: torch.dtype) -> None:
    a, b = _make(sa, dtype, "a"), _make(sb, dtype, "b")
    _run(lambda x, y: _twice(torch.cat((_twice(x), y), dim)), (a, b), dtype)


@pytest.mark.parametrize("dtype", (f32, f16, i64), ids=lambda d: str(d)[6:])
@pytest.mark.parametrize(("sa", "sb", "dim"), CAT_DIMS)
def test_cat_of_inputs_three_and_four_pieces(sa: tuple[int, ...], sb: tuple[int, ...], dim: int,
                                             dtype: torch.dtype) -> None:
    a, b, c = _make(sa, dtype, "a"), _make(sb, dtype, "b"), _make(_cat_shapes(sa, sb, dim),
                                                                  dtype, "c")
    _run(lambda x, y, z: torch.cat((x, y, z), dim), (a, b, c), dtype)
    _run(lambda x, y, z: torch.cat((z - 1, x, y * 3, z), dim), (a, b, c), dtype)


def test_cat_pieces_with_broadcast_operands() -> None:
    a, c, b, s = (_make((4, 3), f32, "a"), _make((4, 1), f32, "c"), _make((4, 2), f32, "b"),
                  _make((1, 5), f32, "s"))
    # a piece computed from a broadcast operand, and a result broadcast with another input
    _run(lambda x, y, z, w: torch.cat((x + y, z.exp()), 1) * w, (a, c, b, s), f32)
    # the same input as two pieces, and a piece value also used (broadcast) after the cat
    _run(lambda y, z: torch.cat((y * 2, z, y * 2), 1) + y * 2, (c, b), f32)


def test_cat_promotes_mixed_dtypes_as_eager() -> None:
    a, b = _make((3, 4), bf16, "a"), _make((3, 2), f32, "b")
    _run(lambda x, y: torch.cat((x * 2, y), 1), (a, b), f32)
    i, h = _make((3, 4), i32, "i"), _make((2, 4), f16, "h")
    _run(lambda x, y: torch.cat((x, y + 1), 0), (i, h), f16)


def test_cat_of_permuted_and_strided_pieces() -> None:
    a, b = _make((4, 3), f32, "a"), _make((2, 8), f32, "b")
    _run(lambda x, y: torch.cat((x.t(), y[:, ::2]), 0) + 1, (a, b), f32)


def test_zero_size_and_single_pieces() -> None:
    a, e = _make((3, 4), f32, "a"), _make((3, 0), f32, "e")
    _run(lambda x, y: torch.cat((x * 2, y), 1), (a, e), f32)
    _run(lambda x: torch.cat((x * 2,), 1), (a,), f32)


@pytest.mark.parametrize(("na", "nb", "lanes"), [(8, 16, 4), (6, 10, 2), (4, 3, 1)])
def test_cat_along_the_inner_dim_vectorizes_when_segments_allow(na: int, nb: int,
                                                                lanes: int) -> None:
    a, b = _make((3, na), f32, "a"), _make((3, nb), f32, "b")
    fm = _run(lambda x, y: torch.cat((x, y.exp()), 1) + 1, (a, b), f32)
    assert fm.kernels[0].signature[1].lanes == lanes


@pytest.mark.parametrize("dtype", (f32, f16, bf16, i64, b8), ids=lambda d: str(d)[6:])
def test_cat_off_the_inner_dim_is_vectorized(dtype: torch.dtype) -> None:
    # a KV-cache append (cat along the sequence dim) and a cat of rows scaled by a broadcast row
    k, new = _make((2, 3, 10, 16), dtype, "k"), _make((2, 3, 1, 16), dtype, "n")
    fm = _run(lambda x, y: torch.cat((x, y), 2), (k, new), dtype)
    a, b, r = (_make((2, 64), dtype, "a"), _make((3, 64), dtype, "b"), _make((64,), dtype, "r"))
    fm2 = _run(lambda x, y, z: _twice(torch.cat((x, _twice(y)), 0)) & z if dtype is b8
               else torch.cat((x, y * 2), 0) * z, (a, b, r), dtype)
    for f in (fm, fm2):
        assert f.kernels[0].signature[1].lanes > 1


# -- stack -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ALL, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_stack_at_every_position(dim: int, dtype: torch.dtype) -> None:
    a, b, c = (_make((3, 5), dtype, s) for s in "abc")
    _run(lambda x, y, z: _twice(torch.stack((x, _twice(y), z), dim)), (a, b, c), dtype)


def test_stack_of_broadcast_pieces() -> None:
    a, b, r = _make((3, 5), f32, "a"), _make((3, 5), f32, "b"), _make((5,), f32, "r")
    _run(lambda x, y, z: torch.stack((x + z, y), 1), (a, b, r), f32)


# -- constant pad ----------------------------------------------------------------------------
PADS = [(1, 2), (0, 0), (-1, 2), (2, -3), (-1, -2), (0, 0, 3, 1), (0, 0, -1, 2),
        (0, 0, 0, 0, 1, 1)]


@pytest.mark.parametrize("dtype", ALL, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("pad", PADS, ids=str)
def test_constant_pad(pad: tuple[int, ...], dtype: torch.dtype) -> None:
    x = _make((3, 4, 6), dtype, "x")
    value = True if dtype is b8 else 7 if not dtype.is_floating_point else -2.5
    _run(lambda t: F.pad(_twice(t), pad, value=value), (x,), dtype)
    _run(lambda t: _twice(torch.constant_pad_nd(t, pad)), (x,), dtype)


# -- slice_backward / slice_scatter (the backward of slicing) ---------------------------------
A = torch.ops.aten
END = 9223372036854775807  # what traces write for an open slice end
SLICES = [(0, 4), (4, END), (2, 5), (-3, -1), (0, 8), (3, 3)]


@pytest.mark.parametrize("dtype", ALL, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize(("start", "end"), SLICES, ids=str)
def test_slice_backward_and_slice_scatter(start: int, end: int, dtype: torch.dtype) -> None:
    width = len(range(8)[slice(start, end)])
    g, s = _make((2, 3, width), dtype, "g"), _make((2, 3, 8), dtype, "s")
    _run(lambda x: _twice(A.slice_backward(_twice(x), [2, 3, 8], 2, start, end, 1)), (g,), dtype)
    _run(lambda x, y: _twice(torch.slice_scatter(_twice(x), y, -1, start, end)), (s, g), dtype)


def test_rotate_half_backward_pads_fuse_together() -> None:
    # what AOTAutograd writes for the gradient of torch.cat((-x2, x1), -1) * sin
    g, sin = _make((2, 3, 5, 8), f32, "g"), _make((5, 8), f32, "sin")

    def grad(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        m = t * s
        return (A.slice_backward(m[..., 4:], [2, 3, 5, 8], 3, 0, 4, 1)
                + A.slice_backward(-m[..., :4], [2, 3, 5, 8], 3, 4, END, 1))

    # two kernels: m, then both pads and the add (m's slices are views between them)
    _run(grad, (g, sin), f32, groups=2)


def test_decomposed_slice_backwards_fuse_without_their_full() -> None:
    # core decompositions write slice_backward as slice_scatter into full(0): a pad
    g, sin = _make((2, 3, 5, 8), bf16, "g"), _make((5, 8), bf16, "sin")

    def grad(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        m = t * s
        zeros = [torch.full([2, 3, 5, 8], 0.0, dtype=bf16) for _ in range(2)]
        return (torch.slice_scatter(zeros[0], m[..., 4:], 3, 0, 4)
                + torch.slice_scatter(zeros[1], -m[..., :4], 3, 4, END))

    fm = _run(grad, (g, sin), bf16, groups=2)
    assert "aten::constant_pad_nd" in fm.fusion_groups[1].ops


# -- the patterns ----------------------------------------------------------------------------
def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


@pytest.mark.parametrize("dtype", (f32, f16, bf16), ids=lambda d: str(d)[6:])
def test_llama_rotary_embedding_is_one_kernel(dtype: torch.dtype) -> None:
    q, cos, sin = (_make((2, 3, 7, 16), dtype, "q"), _make((7, 16), dtype, "cos"),
                   _make((7, 16), dtype, "sin"))
    fn = lambda q, c, s: q * c + _rotate_half(q) * s
    # halves: eager rounds q * c and the product to half before adding; nvfuse rounds once, so
    # a sum that cancels differs by an ulp of its (larger) terms
    tol = (5e-2, 1e-2) if dtype in (f16, bf16) else None
    fm = _run(fn, (q, cos, sin), dtype, tol=tol)
    assert "aten::cat" in fm.fusion_groups[0].ops
    # the halves (8 elements) hold whole 16-byte vectors
    assert fm.kernels[0].signature[1].lanes == 16 // q.element_size()


def test_rotary_frequencies_cat_then_cos_and_sin() -> None:
    freqs = _make((7, 8), f32, "f")
    _run(lambda f: (torch.cat((f, f), -1).cos(), torch.cat((f, f), -1).sin()), (freqs,), f32)


@pytest.mark.parametrize("dtype", (f32, bf16, i64), ids=lambda d: str(d)[6:])
def test_several_concatenations_in_one_kernel(dtype: torch.dtype) -> None:
    a, b, c = (_make((2, 3, 4), dtype, s) for s in "abc")
    # the backward of rotate_half: complementary zero pads, added
    _run(lambda x, y: F.pad(x, (0, 4)) + F.pad(-y, (4, 0)), (a, b), dtype)
    # concatenations along different dims and of different ranks, broadcast together
    p, q, r = _make((2, 5), dtype, "p"), _make((3, 5), dtype, "q"), _make((3, 5), dtype, "r")
    _run(lambda x, y, z: torch.cat((x, y), 0) * F.pad(z, (0, 0, 1, 1)), (p, q, r), dtype)
    d, e = _make((2, 1, 4), dtype, "d"), _make((3, 4), dtype, "e")
    _run(lambda x, y, z, w: torch.cat((x, y), 1) - torch.cat((z[0], w), 0),
         (a, d, c, e[:1]), dtype)
    _run(lambda x, y, z: torch.stack((x, y), 0) * torch.cat((z, z), 0), (a, b, c[:1]), dtype)


def test_new_sizes_reuse_the_kernel() -> None:
    fn = lambda x, y: torch.cat((x * 2, y), 1)
    fm = nvfuse.fuse(fn, (_make((3, 4), f32, "a"), _make((3, 2), f32, "b")))
    for rows, na, nb in [(3, 4, 3), (5, 7, 9), (2, 3, 30)]:  # odd ends: scalar
        x, y = _make((rows, na), f32, "x"), _make((rows, nb), f32, "y")
        compare(fm(x, y), fn(x, y), f32)
    assert len(fm.kernels) == 1


# -- what stays eager ------------------------------------------------------------------------
def _eager_ops(fn: Callable[..., object], inputs: tuple[torch.Tensor, ...]) -> list[list[str]]:
    fm = nvfuse.fuse(fn, inputs)
    expected = fn(*inputs)
    actual = fm(*inputs)
    for a, e in zip(actual if isinstance(actual, tuple) else (actual,),
                    expected if isinstance(expected, tuple) else (expected,)):
        compare(a, e, e.dtype)
    return [list(g.ops) for g in fm.fusion_groups]


# A cat that cannot hold its pieces' producers is grouped in a later partition round, where
# those pieces are inputs computed by another group (nvfuse/fusion/partition.py).
def _cat_apart(groups: list[list[str]], op: str) -> None:
    with_cat = [g for g in groups if "aten::cat" in g]
    assert with_cat and all(op not in g for g in with_cat), groups


def test_integer_division_in_a_piece_keeps_the_cat_apart() -> None:
    a, b = _make((3, 4), i64, "a"), torch.randint(1, 9, (3, 4))
    groups = _eager_ops(lambda x, y: torch.cat((x // y, y), 0), (a, b))
    _cat_apart(groups, "aten::floor_divide")


def test_piece_also_stored_at_its_own_shape_keeps_the_cat_apart() -> None:
    a, b = _make((3, 4), f32, "a"), _make((3, 2), f32, "b")
    groups = _eager_ops(lambda x, y: (torch.cat((x * 2, y), 1), x * 2), (a, b))
    _cat_apart(groups, "aten::mul")


def test_a_concatenation_of_a_concatenation_fuses_the_inner_one() -> None:
    a, b = _make((3, 4), f32, "a"), _make((3, 2), f32, "b")
    groups = _eager_ops(lambda x, y: torch.cat((torch.cat((x, y), 1) * 2, x), 1), (a, b))
    assert all(g.count("aten::cat") <= 1 for g in groups), groups  # the outer one apart


def test_integer_division_shared_with_a_piece_keeps_the_cat_apart() -> None:
    # x // y is computed once for its own output and would be recomputed inside the piece
    x, y = _make((3, 4), i64, "x"), torch.randint(1, 9, (3, 4))
    groups = _eager_ops(lambda a, b: (torch.cat((a // b + 1, b), 0), (a // b) * 2), (x, y))
    _cat_apart(groups, "aten::floor_divide")


def test_pad_of_two_dims_stays_eager() -> None:
    groups = _eager_ops(lambda x: F.pad(x * 2, (1, 1, 1, 1)), (_make((3, 4), f32, "x"),))
    assert all("aten::constant_pad_nd" not in g for g in groups)


# -- NVRTC ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the tests above (they generate the kernels)")
    compile_all(_generated, arch, "concat")


def _fused_launches(fn: Callable[..., object], inputs: tuple[torch.Tensor, ...]) -> int:
    """The launches explain plans for the fused groups (eager ops left out)."""
    return sum(g.kernels - len(g.eager) for g in nvfuse.explain(fn, *inputs).graphs)
