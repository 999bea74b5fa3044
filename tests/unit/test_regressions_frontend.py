"""Regressions in the FX frontend and the public API found by a differential fuzzer (issue 10):
mutations through aliases, eager's errors, output layouts, example inputs, dump file names.
Every case is compared with eager on random inputs, mutated inputs included."""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

import nvfuse


def _same_layout_copy(t: torch.Tensor) -> torch.Tensor:
    """A copy of t with its own storage and the same sizes, strides and offset."""
    out = torch.empty(0, dtype=t.dtype)
    out.set_(t.untyped_storage().clone(), t.storage_offset(), t.shape, t.stride())
    return out


def _check_against_eager(fn: Callable[..., Any], *inputs: torch.Tensor) -> None:
    """fn through nvfuse (traced on other copies) matches eager: outputs, or eager's error,
    and the inputs as fn leaves them."""
    eager_in = [_same_layout_copy(t) for t in inputs]
    fused_in = [_same_layout_copy(t) for t in inputs]
    try:
        expected = fn(*eager_in)
    except Exception as e:  # eager refuses: nvfuse must raise the same error
        with pytest.raises(type(e)) as info:
            nvfuse.fuse(fn, [_same_layout_copy(t) for t in inputs])(*fused_in)
        assert str(info.value) == str(e)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an eager fallback may warn
        got = nvfuse.fuse(fn, [_same_layout_copy(t) for t in inputs])(*fused_in)
    torch.testing.assert_close(got, expected, equal_nan=True)
    for a, b in zip(fused_in, eager_in):
        torch.testing.assert_close(a, b, equal_nan=True)


# -- item 8: in-place writes through aliases ----------------------------------------------------
def test_fill_through_an_expanded_view_writes_each_location_once(interpret: None) -> None:
    def fn(t: torch.Tensor) -> torch.Tensor:
        t.expand(3, -1, -1).fill_(1.5)
        return t * 2

    _check_against_eager(fn, torch.randn(1, 4, 5))


@pytest.mark.parametrize("alias", ["type_as", "to", "to_dtype", "contiguous", "view_as"])
def test_in_place_op_on_a_non_view_alias_writes_the_input(interpret: None, alias: str) -> None:
    def fn(t: torch.Tensor) -> torch.Tensor:
        u = {"type_as": lambda: t.type_as(t), "to": lambda: t.to(t.device),
             "to_dtype": lambda: t.to(torch.float32), "contiguous": lambda: t.contiguous(),
             "view_as": lambda: t.view_as(t)}[alias]()
        u.add_(1)
        return t * 2

    _check_against_eager(fn, torch.randn(3, 4))


def test_first_call_at_a_new_shape_writes_the_input_once(interpret: None) -> None:
    """Tracing runs the program: it used to write the caller's tensors on top of the run."""
    def fn(t: torch.Tensor) -> torch.Tensor:
        t.add_(1)
        return t * 2

    x = torch.randn(3)
    before = x.clone()
    fm = nvfuse.fuse(fn, (x,))
    torch.testing.assert_close(x, before)  # fuse() itself leaves its example alone
    for n in (4, 4, 5):
        y = torch.randn(n)
        expected_y = y + 1
        torch.testing.assert_close(fm(y), expected_y * 2)
        torch.testing.assert_close(y, expected_y)


def test_output_that_is_the_written_input_aliases_it(interpret: None) -> None:
    def fn(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return t.mul_(2), t[1].add_(1)

    x = torch.randn(3, 4)
    expected = fn(x.clone())
    got = nvfuse.fuse(fn, (x.clone(),))(x)
    torch.testing.assert_close(got, expected)
    assert got[0] is x  # eager returns the input itself
    assert got[1].untyped_storage().data_ptr() == x.untyped_storage().data_ptr()


def test_write_into_an_input_that_shares_memory_with_another(interpret: None) -> None:
    def fn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a.add_(1)
        return b * 2

    base = torch.randn(4, 5)
    fm = nvfuse.fuse(fn, (torch.randn(4, 5), torch.randn(4, 5)))
    expected_base = base.clone()
    expected = fn(expected_base, expected_base)
    got = fm(base, base)  # planned on separate tensors, called with one
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(base, expected_base)
    _check_against_eager(lambda a: fn(a, a[1:]), torch.randn(4, 5))


_VIEWS: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [
    ("itself", lambda t: t),
    ("row", lambda t: t[1]),
    ("column_slice", lambda t: t[:, 1:3]),
    ("transpose", lambda t: t.t()),
    ("flat", lambda t: t.reshape(-1)),
    ("diagonal", lambda t: t.diagonal()),
    ("expand", lambda t: t.unsqueeze(0).expand(2, -1, -1)),
    ("expand_col", lambda t: t[:, :1].expand(-1, 3)),
    ("unfold", lambda t: t.unfold(1, 2, 1)),
    ("type_as", lambda t: t.type_as(t)),
    ("to_same", lambda t: t.to(t.dtype)),
    ("strided", lambda t: t[::2, ::2]),
    ("as_strided_overlap", lambda t: t.as_strided((3, 3), (1, 1))),
]
_WRITES: list[tuple[str, Callable[[torch.Tensor], Any]]] = [
    ("add_", lambda v: v.add_(1.5)),
    ("mul_", lambda v: v.mul_(-2)),
    ("fill_", lambda v: v.fill_(0.25)),
    ("zero_", lambda v: v.zero_()),
    ("clamp_", lambda v: v.clamp_(-0.5, 0.5)),
    ("sigmoid_", lambda v: v.sigmoid_()),
    ("masked_fill_", lambda v: v.masked_fill_(v > 0, 3.0)),
    ("copy_", lambda v: v.copy_(torch.ones_like(v) * 0.75)),
    ("twice", lambda v: v.add_(1).mul_(3)),
]
_RESULTS: list[tuple[str, Callable[[torch.Tensor, torch.Tensor], Any]]] = [
    ("input", lambda t, v: t * 2 + 1),
    ("view", lambda t, v: v * 3),
    ("sum", lambda t, v: t.sum(-1)),
    ("both", lambda t, v: (t.exp(), v - 1)),
]
_LAYOUTS: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [
    ("contiguous", lambda x: x),
    ("transposed", lambda x: x.t().contiguous().t()),
    ("sliced", lambda x: torch.randn(x.shape[0], x.shape[1] + 2)[:, 1:-1].copy_(x)),
]


@pytest.mark.parametrize("seed", range(40))
def test_random_in_place_programs_through_views_match_eager(interpret: None, seed: int) -> None:
    """A differential test: random (layout, view, in-place op, result) programs, outputs and
    the written input against eager (eager's own error where eager refuses)."""
    rng = random.Random(seed)
    layout = rng.choice(_LAYOUTS)[1]
    view = rng.choice(_VIEWS)[1]
    writes = rng.sample(_WRITES, 2)
    result = rng.choice(_RESULTS)[1]
    gen = torch.Generator().manual_seed(seed)
    x = layout(torch.randn(rng.choice([3, 4]), rng.choice([4, 5]), generator=gen))

    def fn(t: torch.Tensor) -> Any:
        v = view(t)
        for _, write in writes:
            write(v)
        return result(t, v)

    _check_against_eager(fn, x)


# -- item 10: eager's own errors, never a recursion ----------------------------------------------
@pytest.mark.parametrize("case", ["relu_bool", "relu_complex", "rshift_bool", "addcmul_uint8",
                                  "sigmoid_int_inplace"])
def test_program_eager_refuses_raises_eagers_error(interpret: None, case: str) -> None:
    fn, x = {
        "relu_bool": (torch.relu, torch.randn(3, 4) > 0),
        "relu_complex": (torch.relu, torch.randn(3, 4, dtype=torch.complex64)),
        "rshift_bool": (lambda t: t >> 1, torch.randn(3, 4) > 0),
        "addcmul_uint8": (lambda t: torch.addcmul(t, t, t, value=0.5),
                          torch.randint(0, 9, (3, 4), dtype=torch.uint8)),
        "sigmoid_int_inplace": (lambda t: t.sigmoid_(), torch.randint(0, 9, (3, 4))),
    }[case]
    _check_against_eager(fn, x)


# -- item 9: outputs in eager's memory layout -----------------------------------------------------
_LAYOUT_OPS: dict[str, Callable[[torch.Tensor], Any]] = {
    "layer_norm": lambda x: torch.nn.functional.layer_norm(x, (x.shape[-1],)),
    "layer_norm_affine": lambda x: torch.nn.functional.layer_norm(
        x, (x.shape[-1],), torch.linspace(0.5, 1.5, x.shape[-1]),
        torch.linspace(-0.1, 0.1, x.shape[-1])),
    "masked_fill_on_clone": lambda x: x.float().clone().masked_fill_(x > 0, 2.0),
    "masked_fill": lambda x: x.masked_fill(x > 0, 2.0),
    "in_place_chain": lambda x: x.clone().add_(1).mul_(x),
    "softmax": lambda x: torch.softmax(x * 2, -1),
    "var_mean": lambda x: torch.var_mean(x, -1),
    "where": lambda x: torch.where(x > 0, x, 0.5),
    "contiguous": lambda x: (x * 2).contiguous(),
    "minus_amax": lambda x: x - x.amax(-1, keepdim=True),
    "lerp": lambda x: torch.lerp(x, x * 2, 0.3),
    "half": lambda x: x.to(torch.float16) * 2,
}
_LAYOUT_INPUTS: dict[str, Callable[[], torch.Tensor]] = {
    "permuted": lambda: torch.randn(4, 6, 8).permute(0, 2, 1),
    "permuted_outer": lambda: torch.randn(4, 6, 8).permute(2, 0, 1),
    "channels_last": lambda: torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),
    "sliced": lambda: torch.randn(4, 10)[:, 2:8],
    "transposed": lambda: torch.randn(5, 7).t(),
}


@pytest.mark.parametrize("layout", sorted(_LAYOUT_INPUTS))
@pytest.mark.parametrize("op", sorted(_LAYOUT_OPS))
def test_outputs_have_eagers_strides(interpret: None, op: str, layout: str) -> None:
    fn, x = _LAYOUT_OPS[op], _LAYOUT_INPUTS[layout]()
    expected = fn(x)
    got = nvfuse.fuse(fn, (x,))(x)
    torch.testing.assert_close(got, expected)
    for g, e in zip(*((t,) if isinstance(t, torch.Tensor) else t for t in (got, expected))):
        assert g.stride() == e.stride()


def test_layer_norm_of_a_permuted_input_stays_one_kernel(interpret: None) -> None:
    x = torch.randn(4, 6, 8).permute(0, 2, 1)
    fm = nvfuse.fuse(lambda t: torch.nn.functional.layer_norm(t, (6,)) * 2, (x,))
    out = fm(x)
    assert out.is_contiguous() and len(fm.kernels) == 1
    torch.testing.assert_close(out, torch.nn.functional.layer_norm(x, (6,)) * 2)


# -- item 15: example inputs ----------------------------------------------------------------------
def test_a_bare_tensor_is_one_example_input(interpret: None) -> None:
    x = torch.randn(4, 6)
    fm = nvfuse.fuse(lambda t: torch.sigmoid(t) * 2, x)
    torch.testing.assert_close(fm(x), torch.sigmoid(x) * 2)
    assert len(fm.kernels) == 1 and nvfuse.stats()["fallbacks"] == 0


def _two(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a * b + 1


def test_wrong_count_of_example_inputs_is_a_type_error(interpret: None) -> None:
    x = torch.randn(4, 6)
    with pytest.raises(TypeError, match=r"_two takes 2 input\(s\), got 1 example input\(s\)"):
        nvfuse.fuse(_two, (x,))
    with pytest.raises(TypeError, match=r"_two takes 2 input\(s\), got 3 example input\(s\)"):
        nvfuse.fuse(_two, (x, x, x))
    with pytest.raises(TypeError, match=r"Linear takes 1 input\(s\), got 2"):
        nvfuse.fuse(torch.nn.Linear(6, 3), (x, x))


def test_wrong_count_of_call_arguments_is_a_type_error(interpret: None) -> None:
    x = torch.randn(4, 6)
    fm = nvfuse.fuse(_two, (x, x))
    with pytest.raises(TypeError, match=r"_two takes 2 input\(s\), got 1$"):
        fm(x)
    with pytest.raises(TypeError, match=r"_two takes 2 input\(s\), got 3$"):
        fm(x, x, x)


def test_defaulted_parameters_may_be_given_or_not(interpret: None) -> None:
    def scaled(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        return a * 2 if b is None else a * b

    x, y = torch.randn(4, 6), torch.randn(4, 6)
    fm = nvfuse.fuse(scaled, (x,))
    torch.testing.assert_close(fm(x), x * 2)
    torch.testing.assert_close(fm(x, y), x * y)
    with pytest.raises(TypeError, match=r"scaled takes 1 to 2 input\(s\), got 3$"):
        fm(x, y, y)


# -- item 16: dump files, one per graph, group and kernel -----------------------------------------
def test_dump_dir_keeps_every_graph_group_and_kernel(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any, interpret: None) -> None:
    from nvfuse import config
    from nvfuse.runtime import kernels

    monkeypatch.setenv("NVFUSE_DUMP", "graph,fusion_ir,cuda,ptx")
    monkeypatch.setenv("NVFUSE_DUMP_DIR", str(tmp_path))
    config.reload()
    kernels.clear()

    def two_groups(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.relu(torch.sigmoid(x) @ w) * 3  # the matmul splits two groups

    x, w = torch.randn(8, 16), torch.randn(16, 4)
    fm = nvfuse.fuse(two_groups, (x, w))
    fm(x, w)
    nvfuse.fuse(lambda t: torch.tanh(t) - 1, (x,))(x)  # a second graph
    assert len(fm.fusion_groups) == 2
    names = sorted(p.name for p in tmp_path.iterdir())
    graphs = [n for n in names if n.endswith(".graph.txt")]
    groups = [n for n in names if n.endswith(".fusion_ir.txt")]
    sources = [n for n in names if n.endswith(".cuda.txt")]
    ptx = [n for n in names if n.endswith(".ptx.txt")]
    assert len(graphs) == 2 and len(groups) == 3 and len(sources) == 3 and len(ptx) == 3
    assert not any("launch_bounds" in n for n in names)
    for kernel in fm.kernels:  # each kernel's files carry its own name
        assert (tmp_path / f"{kernel.name}.cuda.txt").read_text().rstrip("\n") == \
            kernel.source.rstrip("\n")
        assert ".entry " + kernel.name in (tmp_path / f"{kernel.name}.ptx.txt").read_text()


def test_compile_error_names_the_kernel_of_emitted_source() -> None:
    bad = ('extern "C" __global__ void __launch_bounds__(128)\n'
           'nvfuse_pw_bad(float* x) {\n  x[0] = undefined_name;\n}\n')
    with pytest.raises(nvfuse.CompileError) as info:
        nvfuse.compile_source(bad, "sm_90")
    assert "nvfuse_pw_bad" in str(info.value) and "__launch_bounds__.cu" not in str(info.value)


# -- item 11: a reshape that needs a copy stays a copy --------------------------------------------
@pytest.mark.parametrize("case", range(4))
def test_reshape_of_an_expanded_input_is_not_moved_as_a_view(interpret: None, case: int) -> None:
    """FakeTensor's `view` accepts a stride-0 dim next to a size-1 dim of stride 1, which
    eager's refuses: the view pass moved such a view onto the input, and the plan crashed."""
    x, fn = [
        (torch.randn(4, 1, 1).expand(4, 1, 3).transpose(0, -1),
         lambda t: torch.exp(t).reshape(-1).view(-1)[::2] * 2),
        (torch.randn(4, 1, 1).expand(4, 1, 3).transpose(0, -1),
         lambda t: (t * 2).reshape(-1) + 1),
        (torch.randn(1, 1, 5).expand(3, 1, 5).transpose(0, 1).transpose(1, 2),
         lambda t: torch.sigmoid(t).reshape(-1, 1) * t.reshape(1, -1)),
        (torch.randn(2, 1, 4).expand(2, 3, 4).transpose(1, 2)[:, :, :1],
         lambda t: torch.exp(t).reshape(-1) - 1),
    ][case]
    _check_against_eager(fn, x)


def test_copy_into_a_temporary_does_not_alias_the_source(interpret: None) -> None:
    def fn(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        u = t.clone()
        u.copy_(x)
        return u * 1 if t.dim() == 0 else u

    t, x = torch.randn(3, 4), torch.randn(3, 4)
    out = nvfuse.fuse(fn, (t, x))(t, x)
    torch.testing.assert_close(out, x)
    assert out.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    _check_against_eager(lambda a: a.clone().copy_(a[1:2]).t(), torch.randn(3, 4))


def test_script_with_data_dependent_values_writes_its_input_once(interpret: None) -> None:
    """Annotating such a graph runs it for real: on copies, or the input is written twice."""
    def fn(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t.add_(1)
        idx = torch.nonzero(t > 1.5)
        return t * 2, idx.shape[0] * torch.ones(1)

    x = torch.randn(3, 4)
    expected_x = x.clone()
    expected = fn(expected_x)
    got = nvfuse.fuse(torch.jit.script(fn))(x)
    torch.testing.assert_close(x, expected_x)
    torch.testing.assert_close(got, expected)


def test_a_graph_aot_autograd_refuses_runs_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    """An in-place fill of an empty narrow of an expanded input: make_fx refuses it, and so
    does AOTAutograd inside the torch.compile fallback (its functionalization checks the
    written tensor for overlap).  The backend hands the graph back to run as captured: eager's
    result, a warning, no BackendCompilerFailed (NVFUSE_STRICT=1 raises instead)."""
    from nvfuse import config

    monkeypatch.setenv("NVFUSE_INTERPRET", "1")
    monkeypatch.delenv("NVFUSE_STRICT", raising=False)
    config.reload()

    def fn(a: torch.Tensor) -> torch.Tensor:
        return a.narrow(2, 0, 0).fill_(1.5)

    a = torch.ones(1, 1, 1).expand(1, 1, 2)
    fm = nvfuse.fuse(fn, (a.clone(),))
    torch._dynamo.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fm(a)
    assert out.shape == fn(a).shape == (1, 1, 0)
    assert any("AOTAutograd cannot trace" in str(w.message) for w in caught)


def test_a_frame_dynamo_cannot_trace_runs_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    """make_fx refuses a matmul of bool and int64, so the call goes through torch.compile,
    whose fake tensors refuse it too; eager multiplies the empty operands.  The frame runs
    eagerly (eager's result), and where eager itself raises the caller gets eager's error;
    NVFUSE_STRICT=1 raises Dynamo's error instead.  (Fuzzer seed 17607.)"""
    from nvfuse import config

    monkeypatch.setenv("NVFUSE_INTERPRET", "1")
    monkeypatch.delenv("NVFUSE_STRICT", raising=False)
    config.reload()

    def fn(a: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, a.sum([0, 1, 2], keepdim=True))

    empty = torch.zeros(0, 1, 1, dtype=torch.bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # make_fx's refusal is announced
        torch._dynamo.reset()
        got = nvfuse.fuse(fn, (empty.clone(),))(empty)
        torch.testing.assert_close(got, fn(empty))
        _check_against_eager(fn, torch.ones(2, 3, 3, dtype=torch.bool))  # eager's own error
        monkeypatch.setenv("NVFUSE_STRICT", "1")
        config.reload()
        torch._dynamo.reset()
        with pytest.raises(RuntimeError):  # Dynamo's TorchRuntimeError
            nvfuse.fuse(fn, (empty.clone(),))(empty)
    monkeypatch.delenv("NVFUSE_STRICT")
    config.reload()


# -- a returned view of a written input, at the input's own storage offset ----------------------
def _at_offset(shape: tuple[int, ...], dtype: torch.dtype, offset: int, seed: int = 0,
               transposed: bool = False) -> torch.Tensor:
    """Random values in a fresh storage, `offset` elements in (transposed: column-major)."""
    n = math.prod(shape)
    g = torch.Generator().manual_seed(seed)
    storage = torch.randn(n + offset + 2, generator=g, dtype=torch.float64).to(dtype)
    strides = (1, shape[0]) if transposed else torch.empty(shape).stride()
    out = torch.empty(0, dtype=dtype)
    out.set_(storage.untyped_storage(), offset, shape, strides)
    return out


RETURNED_VIEWS: dict[str, Callable[[torch.Tensor, torch.Tensor], Any]] = {
    "itself": lambda x, y: x.add_(y),
    "unsqueezed": lambda x, y: x.sub_(y, alpha=2).unsqueeze(0),
    "sliced": lambda x, y: x.mul_(y)[..., 1:],
    "row_written": lambda x, y: (x[0].add_(1), x * 2),
    "two_views": lambda x, y: (x.add_(y)[..., :1], x.unsqueeze(-1)),
}


@pytest.mark.parametrize(("name", "shape"), [
    (name, shape) for name in sorted(RETURNED_VIEWS) for shape in [(), (5,), (3, 4)]
    if shape or name in ("itself", "unsqueezed")])  # the others index a dim
@pytest.mark.parametrize("dtypes", [(torch.float32, torch.float32), (torch.float16, torch.float32)],
                         ids=["f32", "f16_written_with_f32"])
def test_a_returned_view_of_a_written_input_is_at_its_offset(
        interpret: None, name: str, shape: tuple[int, ...],
        dtypes: tuple[torch.dtype, torch.dtype]) -> None:
    # functionalization counts offsets from its own storage (a 0-dim input written with a
    # cast came back at offset 0); and the view's offset is absolute, so a plan traced at one
    # offset must not serve another (fuzzer seed 557518)
    fn = RETURNED_VIEWS[name]
    dtype, other = dtypes
    y = _at_offset(shape, other, 0, seed=1)
    layouts = [(0, False), (1, False), (3, False)] + ([(2, True)] if len(shape) == 2 else [])
    fm = nvfuse.fuse(fn, (_at_offset(shape, dtype, 0), y))
    for offset, transposed in layouts:
        x, ref_x = (_at_offset(shape, dtype, offset, transposed=transposed) for _ in range(2))
        got, expected = fm(x, y), fn(ref_x, y)
        got = got if isinstance(got, tuple) else (got,)
        expected = expected if isinstance(expected, tuple) else (expected,)
        assert torch.equal(x, ref_x)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b)
            assert a.stride() == b.stride()
            aliases = b.untyped_storage().data_ptr() == ref_x.untyped_storage().data_ptr()
            assert (a.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()) == aliases
            if aliases:
                assert a.storage_offset() == b.storage_offset(), (offset, transposed)
