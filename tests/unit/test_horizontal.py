"""Horizontal fusion: independent groups bundled by the plan (fusion/horizontal.py), launched
together (runtime/horizontal.py, schedule/horizontal.py, lower/horizontal.py), through the
interpreter against eager."""

from __future__ import annotations

import math
import operator
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import fx

import nvfuse
from nvfuse import config, pipeline
from nvfuse.codegen.cuda import emit_cuda
from nvfuse.dtypes import DType
from nvfuse.fusion.horizontal import bundle_groups
from nvfuse.lower import kir
from nvfuse.lower.horizontal import combine, param_bytes
from nvfuse.runtime.horizontal import HorizontalGroup
from nvfuse.schedule import horizontal as hschedule


def _independent(a, b, c, d, e):
    """Five independent groups: pointwise in three dtypes and layouts, a row reduction, and a
    reduction whose rows differ (another block size)."""
    return (a.sin() * 2, (b.float() * 3).exp(), c.sum(-1), d.cos() + 1,
            torch.softmax(e, -1))


def _inputs(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1000, generator=g),
            torch.randn(37, 5, generator=g).half(),
            torch.randn(6, 300, generator=g),
            torch.randn(3, 7, generator=g)[:, ::2],
            torch.randn(4, 2000, generator=g))


def _bundles(fm: nvfuse.FusedModule) -> list[HorizontalGroup]:
    gm = fm._latest.gm
    return [gm.get_submodule(n.target) for n in gm.graph.nodes
            if n.op == "call_module" and isinstance(gm.get_submodule(n.target), HorizontalGroup)]


def _launches_per_call(fm: nvfuse.FusedModule, inputs: tuple[torch.Tensor, ...]) -> int:
    nvfuse.reset_stats()
    fm(*inputs)
    return nvfuse.stats()["launches"]


def test_independent_groups_share_launches_and_match_eager(interpret: None) -> None:
    xs = _inputs()
    fm = nvfuse.fuse(_independent, xs)
    (bundle,) = _bundles(fm)
    assert len(bundle.members) == 5
    for seed in (0, 1, 2):  # the first call prepares, the next ones replay
        xs = _inputs(seed)
        for out, ref in zip(fm(*xs), _independent(*xs)):
            torch.testing.assert_close(out, ref)
    report = nvfuse.explain(_independent, *xs)
    launches = _launches_per_call(fm, xs)
    assert launches == report.kernels_per_step < 5
    assert any(k.name.startswith("horizontal_") for k in fm.kernels)


def test_explain_reports_the_shared_launch(interpret: None) -> None:
    report = nvfuse.explain(_independent, *_inputs())
    (graph,) = report.graphs
    assert graph.shared and all(len(s) > 1 for s in graph.shared)
    assert "one launch (horizontal): groups" in str(report)
    assert graph.kernels == len(graph.groups) - sum(len(s) - 1 for s in graph.shared)


def test_flag_turns_horizontal_fusion_off(interpret: None,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVFUSE_HORIZONTAL", "0")
    config.reload()
    xs = _inputs()
    fm = nvfuse.fuse(_independent, xs)
    assert not _bundles(fm)
    assert _launches_per_call(fm, xs) == 5
    assert nvfuse.explain(_independent, *xs).kernels_per_step == 5


def _chained(a, b):
    x = a.exp()
    y = torch.mm(x, b)    # eager between: the second group reads it
    return x.sum(0), y.relu(), b.cos()


def test_dependent_groups_are_not_bundled(interpret: None) -> None:
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(8, 8, generator=g), torch.randn(8, 8, generator=g)
    fm = nvfuse.fuse(_chained, (a, b))
    for bundle in _bundles(fm):
        names = {m.name for m in bundle.members}
        # exp/sum group and relu group are linked through the matmul: never together
        ops = [op for m in bundle.members for op in m.ops]
        assert not ("aten::exp" in ops and "aten::relu" in ops), names
    for out, ref in zip(fm(a, b), _chained(a, b)):
        torch.testing.assert_close(out, ref)


def _random_and_empty(a, b, c):
    return F.dropout(a, 0.5, training=True) * 2, b.exp(), c * 3


def test_random_members_and_empty_outputs(interpret: None) -> None:
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(500, generator=g), torch.randn(64, generator=g)
    c = torch.randn(0, 5, generator=g)
    fm = nvfuse.fuse(_random_and_empty, (a, b, c))
    (bundle,) = _bundles(fm)
    torch.manual_seed(0)
    first = fm(a, b, c)
    torch.manual_seed(1)
    second = fm(a, b, c)
    kept = first[0] != 0
    torch.testing.assert_close(first[0][kept], (a * 4)[kept])  # dropout scales by 1/(1-p)
    assert 0.3 < kept.float().mean() < 0.7
    assert not torch.equal(first[0], second[0])  # a fresh seed per launch
    torch.testing.assert_close(first[1], b.exp())
    assert first[2].shape == (0, 5)


def test_member_that_cannot_run_falls_back_alone(interpret: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVFUSE_STRICT", "0")
    config.reload()
    xs = _inputs()
    fm = nvfuse.fuse(_independent, xs)
    (bundle,) = _bundles(fm)
    broken = bundle.members[1]

    def refuse(*args, **kwargs):
        raise RuntimeError("refused for the test")

    monkeypatch.setattr(broken, "ready", refuse)
    monkeypatch.setattr(broken, "_run_kernel", refuse)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for out, ref in zip(fm(*xs), _independent(*xs)):
            torch.testing.assert_close(out, ref)
    assert nvfuse.stats()["fallbacks"] == 1


def test_failed_shared_build_launches_members_alone(interpret: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise RuntimeError("NVRTC refused it")

    monkeypatch.setattr(pipeline, "build_horizontal", fail)
    xs = _inputs()
    fm = nvfuse.fuse(_independent, xs)
    with pytest.raises(RuntimeError, match="NVRTC refused it"):  # strict: raised
        fm(*xs)
    monkeypatch.setenv("NVFUSE_STRICT", "0")
    config.reload()
    fm = nvfuse.fuse(_independent, xs)
    with pytest.warns(RuntimeWarning, match="launch one by one"):
        outs = fm(*xs)
    for out, ref in zip(outs, _independent(*xs)):
        torch.testing.assert_close(out, ref)
    assert _launches_per_call(fm, xs) == 5


def test_horizontal_source_compiles_with_nvrtc(interpret: None) -> None:
    pytest.importorskip("cupy")
    from nvfuse.runtime.cache import compile_source

    xs = _inputs()
    fm = nvfuse.fuse(_independent, xs)
    fm(*xs)
    shared = [k for k in fm.kernels if k.name.startswith("horizontal_")]
    assert shared
    for k in shared:
        assert len(compile_source(k.source, "sm_90")) > 0


# -- the pieces --------------------------------------------------------------------------------

def _kernel(name: str, block: int, n_scalars: int, body: tuple[kir.Stmt, ...] = ()) -> kir.Kernel:
    idx = DType.INT32
    scalars = tuple(kir.Param(f"s{i}", idx) for i in range(n_scalars))
    tensors = (kir.TensorParam("in0", DType.FLOAT32, False, 4),
               kir.TensorParam("out0", DType.FLOAT32, True, 4))
    return kir.Kernel(name, tensors, scalars, body, block, kir.Const(1, idx), idx)


def test_bundle_buckets_by_block_and_argument_space() -> None:
    def member(name: str, block: int, grid: int) -> hschedule.Member:
        return hschedule.Member(block, grid, param_bytes(_kernel(name, block, 2)))

    small = [member(f"k{i}", 128, 3) for i in range(200)]
    other = [member("r0", 256, 2), member("r1", 256, 2)]
    lone = [member("r2", 512, 1), member("e", 128, 0)]
    launches = hschedule.bundle(small + other + lone, hschedule.LEGACY_PARAM_BYTES)
    assert [200, 201] in launches
    covered = sorted(i for b in launches for i in b)
    assert covered == list(range(202))  # the 512-thread kernel and the empty one stay alone
    for b in launches:
        size = sum(([*small, *other])[i].param_bytes for i in b)
        assert size <= hschedule.LEGACY_PARAM_BYTES
    # 200 members of 28 argument bytes each: more than one launch's 4 KB, one launch's 32 KB
    assert len([b for b in launches if b[0] < 200]) == 2
    assert len([b for b in hschedule.bundle(small) if b[0] < 200]) == 1
    reductions = [hschedule.Member(256, 4, 64, shared_bytes=3000) for _ in range(5)]
    assert [len(b) for b in hschedule.bundle(reductions)] == [2, 2]  # 8 KB of shared memory


def test_combine_refuses_a_narrow_member_that_synchronises() -> None:
    wide = _kernel("wide", 256, 1)
    narrow_sync = _kernel("narrow", 128, 1, (kir.Sync(),))
    with pytest.raises(ValueError, match="synchronises its block"):
        combine("h", [wide, narrow_sync])
    narrow = _kernel("narrow", 128, 1)
    k = combine("h", [wide, narrow])
    assert k.block == 256
    assert [p.name for p in k.scalars] == ["h0_s0", "h0_first_block", "h1_s0", "h1_first_block"]
    assert [t.name for t in k.tensors] == ["h0_in0", "h0_out0", "h1_in0", "h1_out0"]
    assert all(p.dtype is DType.INT32 for p in k.scalars)


def _adam(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor,
          v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    m = m * 0.9 + g * 0.1
    v = v * 0.999 + g * g * 0.001
    return p - 0.01 * m / (v.sqrt() + 1e-8), m, v


_SEARCH = re.compile(r"( *)if \(\(\(\(int\)blockIdx\.x\) < h(\d+)_first_block\)\) \{$")
_OWNS = re.compile(r"( *)if \(\(\(h(\d+)_first_block <= \(\(int\)blockIdx\.x\)\) && ")


@pytest.mark.parametrize("count", [2, 3, 5, 8, 148])
def test_member_group_finds_a_blocks_member_by_binary_search(interpret: None,
                                                              count: int) -> None:
    """`count` members of one pointwise kernel (148: GPT-2 small's AdamW step) with a member of
    another kernel between two of them: the group's emitted code compares blockIdx.x with
    ceil(log2 count) first blocks on its way to any member's own test (each if/else level of
    the search one compare), prints each member's test once, in member order, and compiles
    with NVRTC."""
    xs = [torch.randn(1000) for _ in range(4)]
    fm = nvfuse.fuse(_adam, xs)
    fm(*xs)
    (member,) = [k.kernel_ir for k in fm.kernels]
    other = _kernel("other", member.block, 1)
    members = [member] * (count // 2) + [other] + [member] * (count - count // 2)
    k = combine("h", members)
    (group,) = k.groups
    assert len(group.positions) == count
    source = emit_cuda(k)
    lines = source[source.index("// members 0, "):source.index("if (nvf_member)")].splitlines()
    searches = [m for m in map(_SEARCH.match, lines) if m]
    root = len(searches[0].group(1))
    depth = {int(m.group(2)): (len(m.group(1)) - root) // 2
             for m in map(_OWNS.match, lines) if m}
    assert list(depth) == [i for i, m in enumerate(members) if m is member]
    assert len(searches) == count - 1
    assert max(depth.values()) == math.ceil(math.log2(count))
    assert min(depth.values()) == math.floor(math.log2(count))
    assert "else if" not in source  # no chain left
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="NVRTC (CuPy) is not installed")
    from nvfuse.runtime.nvrtc import compile_to_cubin

    assert compile_to_cubin(source, "sm_90", f"search_{count}.cu")[:4] == b"\x7fELF"


def _graph_with_groups(order: list[tuple[str, list[str]]]) -> tuple[fx.GraphModule, list[str]]:
    """A partitioned-looking graph: each (name, inputs) a group returning one output; names
    starting with 'eager' are eager ops (torch.neg)."""
    graph = fx.Graph()
    root = torch.nn.Module()
    values: dict[str, fx.Node] = {"x": graph.placeholder("x"), "y": graph.placeholder("y")}
    groups = []
    for name, inputs in order:
        args = tuple(values[i] for i in inputs)
        if name.startswith("eager"):
            values[name] = graph.call_function(torch.ops.aten.neg.default, args)
            continue
        if name.startswith("write"):
            values[name] = graph.call_function(torch.ops.aten.add_.Tensor, args)
            continue
        sub = fx.symbolic_trace(_Identity(len(args)))
        root.add_module(name, sub)
        node = graph.call_module(name, args)
        values[name] = graph.call_function(operator.getitem, (node, 0))
        groups.append(name)
    graph.output(tuple(values[n] for n, _ in order))
    return fx.GraphModule(root, graph), groups


class _Identity(torch.nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, *args):
        return (args[0].clone(),)


def test_bundling_keeps_dependences_and_barriers() -> None:
    gm, groups = _graph_with_groups([
        ("a", ["x"]), ("e1", ["x"]), ("b", ["y"]),   # a, b independent: bundled
        ("c", ["a"]),                               # reads a: not with a
        ("eager1", ["x"]), ("d", ["eager1"]),        # reads an eager op after a: not with a
        ("write1", ["x", "y"]),                     # a write: closes every bundle
        ("f", ["y"]), ("g", ["x"]),                 # after the write: bundled together
    ])
    bundles = dict(bundle_groups(gm, groups))
    members = sorted(bundles.values())
    assert ("a", "b", "e1") in members or ("a", "e1", "b") in members
    assert ("f", "g") in members
    for m in members:
        assert not {"a", "c"} <= set(m)
        assert not ({"f", "g"} & set(m) and {"a", "b", "c", "d", "e1"} & set(m))
    gm.graph.lint()
    x, y = torch.randn(3), torch.randn(3)
    names = ["a", "e1", "b", "c", "eager1", "d", "write1", "f", "g"]
    expect = {"a": x, "e1": x, "b": y, "c": x, "eager1": -x, "d": -x, "f": y, "g": x + y}
    xs, ys = x.clone(), y.clone()
    out = gm(xs, ys)
    for name, value in zip(names, out):
        if name in expect:
            torch.testing.assert_close(value, expect[name], msg=name)


def test_launch_dump_names_the_members(interpret: None, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NVFUSE_DUMP", "launch,horizontal")
    config.reload()
    xs = _inputs()
    fm = nvfuse.fuse(_independent, xs)
    fm(*xs)
    err = capsys.readouterr().err
    assert "members=['fused_" in err and "first blocks=(0, " in err
    assert "horizontal_0: fused_" in err  # the plan's bundles
