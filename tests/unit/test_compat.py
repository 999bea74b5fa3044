"""torch-version compatibility: vertical grouping without torch's skip_horizontal_fusion, and
the dynamo backend registered by `import nvfuse` alone (no installed entry point)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import fx
from torch.fx.passes.operator_support import OperatorSupport

from nvfuse.fusion import vertical

ROOT = Path(__file__).resolve().parents[2]


class _NotCumsum(OperatorSupport):
    """Every call_function node is fusible except cumsum (the toy 'eager' op)."""

    def is_node_supported(self, submodules: object, node: fx.Node) -> bool:
        return node.op == "call_function" and node.target is not torch.cumsum


def _random_graph(seed: int, size: int = 24) -> fx.GraphModule:
    rng = random.Random(seed)
    graph = fx.Graph()
    values = [graph.placeholder("x"), graph.placeholder("y")]
    for _ in range(size):
        kind = rng.choice(["add", "mul", "sin", "cumsum", "cumsum"])
        a = rng.choice(values[-6:])
        if kind in ("add", "mul"):
            b = rng.choice(values)
            values.append(graph.call_function(getattr(torch, kind), (a, b)))
        elif kind == "sin":
            values.append(graph.call_function(torch.sin, (a,)))
        else:
            values.append(graph.call_function(torch.cumsum, (a, 0)))
    used = {a for v in values for a in v.all_input_nodes}
    graph.output(tuple(v for v in values if v not in used))
    return fx.GraphModule(torch.nn.Module(), graph)


def _contracted_acyclic(gm: fx.GraphModule, groups: list[set[fx.Node]]) -> bool:
    owner = {n: i for i, g in enumerate(groups) for n in g}
    key = lambda n: ("g", owner[n]) if n in owner else ("n", n.name)
    succ: dict[object, set[object]] = {}
    for n in gm.graph.nodes:
        for u in n.users:
            if key(u) != key(n):
                succ.setdefault(key(n), set()).add(key(u))
    state: dict[object, int] = {}

    def visit(v: object) -> bool:
        state[v] = 1
        for w in succ.get(v, ()):
            if state.get(w) == 1 or (w not in state and not visit(w)):
                return False
        state[v] = 2
        return True

    return all(visit(v) for v in list(succ) if v not in state)


def _connected(group: set[fx.Node]) -> bool:
    start = next(iter(group))
    seen, stack = {start}, [start]
    while stack:
        n = stack.pop()
        for m in [*n.users, *n.all_input_nodes]:
            if m in group and m not in seen:
                seen.add(m)
                stack.append(m)
    return seen == group


@pytest.mark.parametrize("seed", range(40))
def test_vertical_groups_are_connected_acyclic_and_cover_supported(seed: int) -> None:
    gm = _random_graph(seed)
    groups = [set(p.nodes) for p in vertical.vertical_groups(gm, _NotCumsum())]
    supported = {n for n in gm.graph.nodes if _NotCumsum().is_node_supported({}, n)}
    assert set().union(*groups) == supported
    assert sum(len(g) for g in groups) == len(supported)  # disjoint
    assert all(_connected(g) for g in groups)  # no horizontal fusion
    assert _contracted_acyclic(gm, groups)
    # maximal along data edges: a producer and its user in different groups could not merge
    owner = {n: i for i, g in enumerate(groups) for n in g}
    for n in supported:
        for u in n.users:
            if u in owner and owner[u] != owner[n]:
                merged = [g for i, g in enumerate(groups) if i not in (owner[n], owner[u])]
                assert not _contracted_acyclic(gm, [*merged, groups[owner[n]] | groups[owner[u]]])


@pytest.mark.parametrize("seed", range(40))
def test_vertical_groups_match_propose_groups(seed: int) -> None:
    """Where torch can skip horizontal fusion (propose_groups asks torch's partitioner), nvfuse's
    own walk (what older torch gets) gives the same groups in the same order."""
    gm = _random_graph(seed)
    ours = [list(p.nodes) for p in vertical.vertical_groups(gm, _NotCumsum())]
    theirs = [list(p.nodes) for p in vertical.propose_groups(gm, _NotCumsum())]
    assert [set(g) for g in ours] == [set(g) for g in theirs]


def test_fusion_without_torch_skip_horizontal(monkeypatch: pytest.MonkeyPatch,
                                              interpret: None) -> None:
    """The fuser on nvfuse's own walk (as on torch < 2.13) fuses and matches eager."""
    import nvfuse

    monkeypatch.setattr(vertical, "TORCH_SKIPS_HORIZONTAL", False)

    def f(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = torch.sin(x) * 2 + y
        b = torch.cumsum(a, 0)
        return torch.relu(b) - a.sum(-1, keepdim=True), torch.cos(y) + 1

    x, y = torch.randn(8, 32), torch.randn(8, 32)
    fm = nvfuse.fuse(f, (x, y))
    for got, want in zip(fm(x, y), f(x, y)):
        torch.testing.assert_close(got, want)
    assert len(fm.fusion_groups) >= 2


def test_backend_registered_by_import_without_install(tmp_path: Path) -> None:
    """A fresh interpreter with only PYTHONPATH set (no entry point) compiles with
    backend="nvfuse" after `import nvfuse`."""
    script = textwrap.dedent("""
        import importlib.metadata as md
        real = md.entry_points
        def entry_points(**kw):  # hide an installed copy's entry point (.ci/run installs one)
            eps = real(**kw)
            if kw.get("group") == "torch_dynamo_backends":
                return md.EntryPoints(ep for ep in eps if ep.name != "nvfuse")
            return eps
        md.entry_points = entry_points
        import torch, nvfuse
        assert nvfuse.__file__.startswith(%r), nvfuse.__file__
        f = lambda x: torch.relu(x) * 2 + 1
        x = torch.randn(8, 16)
        torch.testing.assert_close(torch.compile(f, backend="nvfuse")(x), f(x))
        assert nvfuse.stats()["launches"] >= 1, nvfuse.stats()
        from nvfuse.frontend import dynamo
        assert dynamo.register() is False  # idempotent
        print("ok")
    """) % str(ROOT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVFUSE_")}
    env.update(PYTHONPATH=str(ROOT), NVFUSE_INTERPRET="1", NVFUSE_STRICT="1",
               NVFUSE_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


def _diamond(compares_first: bool) -> fx.GraphModule:
    """nan_to_num's shape: three compares of x feeding three nested selects; the two node
    orders are the one torch 2.13 traces and the one torch 2.11 traces."""
    graph = fx.Graph()
    x = graph.placeholder("x")
    aten = torch.ops.aten
    if compares_first:
        c1 = graph.call_function(aten.isnan.default, (x,))
        c2 = graph.call_function(aten.eq.Scalar, (x, float("-inf")))
        c3 = graph.call_function(aten.eq.Scalar, (x, float("inf")))
        w1 = graph.call_function(aten.where.self, (c1, x, x))
        w2 = graph.call_function(aten.where.self, (c2, x, w1))
        w3 = graph.call_function(aten.where.self, (c3, x, w2))
    else:
        c1 = graph.call_function(aten.isnan.default, (x,))
        w1 = graph.call_function(aten.where.self, (c1, x, x))
        c2 = graph.call_function(aten.eq.Scalar, (x, float("-inf")))
        w2 = graph.call_function(aten.where.self, (c2, x, w1))
        c3 = graph.call_function(aten.eq.Scalar, (x, float("inf")))
        w3 = graph.call_function(aten.where.self, (c3, x, w2))
    graph.output(w3)
    return fx.GraphModule(torch.nn.Module(), graph)


def _targets(gm: fx.GraphModule) -> list[str]:
    return [f"{n.op}:{n.target}:{[a.name for a in n.all_input_nodes]}" for n in gm.graph.nodes]


def test_canonical_order_ignores_the_tracers_order() -> None:
    from nvfuse.graph.order import order_nodes

    a, b = order_nodes(_diamond(True)), order_nodes(_diamond(False))
    assert [n.target for n in a.graph.nodes] == [n.target for n in b.graph.nodes]
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 1.5])
    torch.testing.assert_close(a(x), _diamond(True)(x), equal_nan=True)


def test_canonical_order_leaves_mutating_graphs_alone() -> None:
    from nvfuse.graph.order import order_nodes

    graph = fx.Graph()
    x = graph.placeholder("x")
    read = graph.call_function(torch.ops.aten.sin.default, (x,))
    graph.call_function(torch.ops.aten.add_.Tensor, (x, 1.0))
    graph.output(read)
    gm = fx.GraphModule(torch.nn.Module(), graph)
    assert _targets(order_nodes(gm)) == _targets(gm)


def test_outlined_group_order_does_not_depend_on_torchs_topo_sort() -> None:
    """torch < 2.13 copies a group's nodes breadth first; the outlined submodule must come out
    as torch 2.13 builds it (graph order, inputs at first use, outputs in node order)."""
    from torch.fx.passes.utils.fuser_utils import fuse_by_partitions

    from nvfuse.fusion import outline

    def make() -> tuple[fx.GraphModule, list[fx.Node]]:
        gm = _diamond(False)
        return gm, [n for n in gm.graph.nodes if n.op == "call_function"]

    gm, group = make()
    want, names = outline.outline_groups(gm, [set(group)], "fused_")
    gm2, group2 = make()
    position = {n.name: i for i, n in enumerate(gm2.graph.nodes)}
    breadth_first = [group2[i] for i in (0, 2, 4, 1, 3, 5)]  # also a topological order
    got = fuse_by_partitions(gm2, [dict.fromkeys(breadth_first)], prefix="fused_",
                             always_return_tuple=True)
    call = next(n for n in got.graph.nodes if n.op == "call_module")
    outline._normalize(got, call, position)
    assert _targets(getattr(got, names[0])) == _targets(getattr(want, names[0]))


@pytest.mark.parametrize("keeps", [True, False])
def test_clamp_one_nan_bound_follows_the_torch_semantics(keeps: bool, interpret: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """torch 2.11 returns x for clamp(x, min=nan) where 2.13 returns NaN; nvfuse asks the
    installed torch once (ONE_NAN_BOUND_KEEPS_INPUT) and lowers accordingly.  Both settings are
    checked here against what that torch version returns, on any installed torch."""
    import nvfuse
    from nvfuse.graph.ops import activations

    assert activations.ONE_NAN_BOUND_KEEPS_INPUT == (
        not torch.clamp(torch.tensor([2.0]), min=float("nan")).isnan().item())
    monkeypatch.setattr(activations, "ONE_NAN_BOUND_KEEPS_INPUT", keeps)
    x = torch.randn(4, 8) * 3 + 0.5
    x[0, 0] = float("nan")
    nan = torch.full_like(x, float("nan"))
    for fn in (lambda t: t.clamp(min=float("nan")) * 2, lambda t: t.clamp(max=float("nan")) * 2):
        got = nvfuse.fuse(fn, (x,))(x)
        torch.testing.assert_close(got, x * 2 if keeps else nan, equal_nan=True)
    both = lambda t: t.clamp(float("nan"), 1.0) * 2  # two bounds: NaN on every torch
    torch.testing.assert_close(nvfuse.fuse(both, (x,))(x), nan, equal_nan=True)
    xi = torch.randint(-9, 9, (4, 8))
    got = nvfuse.fuse(lambda t: t.clamp(min=float("nan")) + 1, (xi,))(xi)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, xi.float() + 1 if keeps else torch.full_like(got, torch.nan),
                               equal_nan=True)


_SCALE = 'extern "C" __global__ void scale(float* x) { x[threadIdx.x] *= 2.0f; }'


def _nvrtc_cubin_size(src: str, arch: str) -> int:
    """nvrtcGetCUBINSize of `src`, asked of NVRTC directly (through CuPy's library)."""
    import ctypes

    from cupy_backends.cuda.libs import nvrtc as cupy_nvrtc  # type: ignore[import-untyped]

    from nvfuse.runtime import nvrtc

    prog = cupy_nvrtc.createProgram(src, "scale.cu", (), ())
    try:
        cupy_nvrtc.compileProgram(prog, (f"--gpu-architecture={arch}", *nvrtc.COMPILE_OPTIONS))
        size = ctypes.c_size_t(0)
        assert nvrtc._loaded_nvrtc().nvrtcGetCUBINSize(ctypes.c_void_p(prog),
                                                       ctypes.byref(size)) == 0
        return size.value
    finally:
        cupy_nvrtc.destroyProgram(prog)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_cached_cubin_is_the_whole_image(arch: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """CuPy's getCUBIN drops the image's last byte; nvfuse stores and returns all of it."""
    from nvfuse import config
    from nvfuse.runtime import cache, nvrtc

    monkeypatch.setenv("NVFUSE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("NVFUSE_CACHE", raising=False)
    config.reload()
    cache.clear_memory_cache()
    try:
        cubin = cache.compile_source(_SCALE, arch)
        size = _nvrtc_cubin_size(_SCALE, arch)
        assert len(cubin) == size
        assert nvrtc.elf_end(cubin) == len(cubin)  # ends where its own headers say
        stored = Path(cache.entry_path(cache.cache_key(_SCALE, arch))).read_bytes()
        assert stored[cache._HEADER.size:] == cubin
        cache.clear_memory_cache()
        assert cache.compile_source(_SCALE, arch) == cubin  # read back whole from disk
    finally:
        cache.clear_memory_cache()


def test_cubin_without_the_raw_library_is_repaired(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where nvfuse cannot reach NVRTC's size query, CuPy's short image gets its byte back."""
    from nvfuse.runtime import nvrtc

    whole = nvrtc.compile_to_cubin(_SCALE, "sm_90")
    monkeypatch.setattr(nvrtc, "_loaded_nvrtc", lambda: None)
    assert nvrtc.compile_to_cubin(_SCALE, "sm_90") == whole


def test_cache_key_names_the_cubin_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries written before cubins were whole (CUBIN_KIND 1) are never looked up."""
    from nvfuse.runtime import cache

    new = cache.cache_key(_SCALE, "sm_90")
    monkeypatch.setattr(cache, "CUBIN_KIND", "1")
    assert cache.cache_key(_SCALE, "sm_90") != new


def test_side_effects_on_a_torch_whose_is_impure_takes_no_argument(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """torch releases before is_impure(impure_random=...) must not make every node impure."""
    from nvfuse.graph.aliasing import has_side_effects

    graph = fx.Graph()
    x = graph.placeholder("x")
    sin = graph.call_function(torch.ops.aten.sin.default, (x,))
    write = graph.call_function(torch.ops.aten.add_.Tensor, (x, 1.0))
    graph.output(sin)
    real = fx.Node.is_impure
    monkeypatch.setattr(fx.Node, "is_impure", lambda self: real(self))
    assert not has_side_effects(sin)
    assert has_side_effects(write)


@pytest.mark.parametrize("import_first", [False, True])
def test_backend_with_an_installed_entry_point(tmp_path: Path, import_first: bool) -> None:
    """Installed (an entry point dynamo discovers) the backend works whether or not nvfuse was
    imported first: loading the entry point imports nvfuse, whose own registration must then
    leave the name to dynamo (a second registration is an error there)."""
    site = tmp_path / "site"
    info = site / "nvfuse_entry-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nvfuse-entry\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "[torch_dynamo_backends]\nnvfuse = nvfuse.frontend.dynamo:nvfuse_backend\n")
    script = textwrap.dedent(f"""
        import torch
        if {import_first}:
            import nvfuse
        f = lambda x: torch.sigmoid(x) * 3 - 1
        x = torch.randn(8, 16)
        torch.testing.assert_close(torch.compile(f, backend="nvfuse")(x), f(x))
        import nvfuse
        assert nvfuse.stats()["launches"] >= 1, nvfuse.stats()
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVFUSE_")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), str(site)]), NVFUSE_INTERPRET="1",
               NVFUSE_STRICT="1", NVFUSE_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
