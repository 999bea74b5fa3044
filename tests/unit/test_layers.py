"""nvfuse's import graph: no cycles, and no module imports one of a higher layer.

Imports are read with `ast` from every module, function-level imports included (a lazy import
is still a dependency).  The layers, lowest first; a module belongs to the longest prefix
listed.  Each layer may import its own and lower layers only.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LAYERS: list[tuple[str, ...]] = [
    ("nvfuse.config", "nvfuse.errors", "nvfuse.dtypes", "nvfuse.counters", "nvfuse.version"),
    ("nvfuse.fusion",),                                # fusion IR, op table, partition
    ("nvfuse.graph",),                                 # aten graph passes (ask the op table)
    ("nvfuse.frontend",),                              # traced objects -> aten graphs
    ("nvfuse.schedule",),                              # params and heuristics per kind
    ("nvfuse.lower",),                                 # kernel IR and its passes
    ("nvfuse.codegen",),                               # CUDA C++ emitter
    ("nvfuse.interpret",),                             # kernel IR on numpy
    ("nvfuse.runtime",),                               # NVRTC, caches, launch, dumps
    ("nvfuse.schedules",),                             # the schedule registry
    ("nvfuse.pipeline",),                              # the compiler driver
    ("nvfuse.runtime.executor", "nvfuse.runtime.horizontal",  # runs a group, a bundle;
     "nvfuse.runtime.replay", "nvfuse.runtime.graphs"),       # replays a plan; CUDA graphs
    ("nvfuse.api",),                                   # nvfuse.fuse / FusedModule
    ("nvfuse.explain", "nvfuse.frontend.dynamo"),      # reports; the torch.compile entry point
    ("nvfuse",),                                       # the public package
    ("nvfuse.demo",),                                  # uses the public package
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "nvfuse").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `from pkg import name`: the package
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _layer(name: str) -> int:
    best, layer = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), i
    assert layer >= 0, f"{name} is in no layer: add it to LAYERS"
    return layer


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_no_import_points_up() -> None:
    upward = sorted(f"{a} -> {b}" for a, deps in _graph().items() for b in deps
                    if _layer(b) > _layer(a))
    assert upward == []


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []
