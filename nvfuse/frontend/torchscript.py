"""TorchScript frontend: a traced or scripted function or module -> nvfuse's graph IR.

Input: a `torch.jit.ScriptModule` or `torch.jit.ScriptFunction` (from `torch.jit.trace` or
`torch.jit.script`) whose graph has no control flow.
Output: a `torch.fx.GraphModule` whose `forward` takes exactly the user's inputs (a module's
`self` is dropped) and returns the same tuple/list structure.  Its call_function nodes target
aten `OpOverload`s (plus `operator.getitem` to pick one result of a multi-output op); parameters
and buffers are `get_attr` nodes on the *same* tensor objects as the scripted module's, so later
in-place weight updates are seen; tensor constants are registered as buffers named
`_tensor_constant<N>` (the name graph passes use to tell constants from weights).

The TorchScript graph is copied and cleaned with the JIT's own passes first; the original is never
touched.  A node kind this module cannot express raises `NvfuseError` naming the kind and source.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx

from nvfuse.errors import NvfuseError
from nvfuse.frontend.norms import value_and_index_ops
from nvfuse.graph.passes import CONSTANT_PREFIX  # tensor constants' names: foldable, not weights

__all__ = ["graph_module_from_script", "is_torchscript"]

# c10::ScalarType, c10::MemoryFormat and c10::Layout enumerators: TorchScript passes them as ints.
_SCALAR_TYPES: dict[int, torch.dtype] = {
    0: torch.uint8, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.int64,
    5: torch.float16, 6: torch.float32, 7: torch.float64, 8: torch.complex32,
    9: torch.complex64, 10: torch.complex128, 11: torch.bool, 15: torch.bfloat16,
    23: torch.float8_e5m2, 24: torch.float8_e4m3fn, 27: torch.uint16, 28: torch.uint32,
    29: torch.uint64,
}
_MEMORY_FORMATS = {
    0: torch.contiguous_format, 1: torch.preserve_format,
    2: torch.channels_last, 3: torch.channels_last_3d,
}
_LAYOUTS = {0: torch.strided}
# JIT TensorType.scalarType() names, for prim::dtype on a typed value.
_SCALAR_TYPE_NAMES = {
    "Byte": torch.uint8, "Char": torch.int8, "Short": torch.int16, "Int": torch.int32,
    "Long": torch.int64, "Half": torch.float16, "Float": torch.float32, "Double": torch.float64,
    "ComplexFloat": torch.complex64, "ComplexDouble": torch.complex128, "Bool": torch.bool,
    "BFloat16": torch.bfloat16,
}


def is_torchscript(obj: object) -> bool:
    """True for traced/scripted modules and functions (what this frontend accepts)."""
    return isinstance(obj, (torch.jit.ScriptModule, torch.jit.ScriptFunction))


def graph_module_from_script(
    obj: torch.jit.ScriptModule | torch.jit.ScriptFunction,
    example_inputs: Sequence[Any] | None = None,
) -> torch.fx.GraphModule:
    """Convert a control-flow-free TorchScript function or module to the graph IR.

    `example_inputs` is optional; when given, their dtypes/devices type the graph inputs so that
    `x.dtype` / `x.device` on an input of a *scripted* graph can be resolved (traced graphs carry
    those types already).
    """
    if not is_torchscript(obj):
        raise NvfuseError(f"TorchScript frontend: expected a ScriptModule or ScriptFunction, "
                          f"got {type(obj).__name__}")
    graph = _cleaned_copy(obj)
    return _Converter(obj, graph, example_inputs).run()


def _cleaned_copy(obj: Any) -> torch._C.Graph:
    """A copy of obj's graph after the JIT's own cleanup passes (never the original graph)."""
    graph = obj.graph.copy()
    torch._C._jit_pass_inline(graph)  # submodule calls and script functions become plain nodes
    torch._C._jit_pass_dce(graph)
    torch._C._jit_pass_cse(graph)
    torch._C._jit_pass_constant_propagation(graph)
    # Shape peepholes would bake a traced graph's sizes in (x.size(0) -> 2); sizes stay dynamic.
    torch._C._jit_pass_peephole(graph, True)
    torch._C._jit_pass_dce(graph)
    return graph


@dataclass(frozen=True)
class _ModuleRef:
    """A (sub)module value: `path` is its dotted name under the root, "" for `self`."""

    path: str
    module: Any


@dataclass(frozen=True)
class _NumTensor:
    """prim::NumToTensor result, kept as its scalar until an op needs it as a tensor."""

    scalar: Any
    dtype: torch.dtype


@dataclass(frozen=True)
class _SizeList:
    """aten::size(x) -> int[]; indexing it becomes aten.sym_size.int(x, i)."""

    tensor: torch.fx.Node
    rank: int | None


def _source(node: torch._C.Node) -> str:
    """The most useful line of a node's source range (or "unknown source")."""
    text = str(node.sourceRange()).strip()
    if not text:
        return "unknown source"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0]


def _unsupported(node: torch._C.Node, why: str = "") -> NvfuseError:
    extra = f": {why}" if why else ""
    return NvfuseError(
        f"TorchScript frontend: node {node.kind()} ({_source(node)}) is not supported{extra}"
    )


def _placeholder_name(debug_name: str) -> str:
    name = re.sub(r"\.\d+$", "", debug_name)  # "x.1" -> "x"
    name = re.sub(r"\W", "_", name)
    return name if name and not name[0].isdigit() else f"arg_{name}"


def _coerce_enum(value: Any, real_type: str) -> Any:
    """TorchScript ints standing for dtype / memory format / layout -> torch objects."""
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    for tag, table in (("ScalarType", _SCALAR_TYPES), ("MemoryFormat", _MEMORY_FORMATS),
                       ("Layout", _LAYOUTS)):
        if tag in real_type:
            if value not in table:
                raise NvfuseError(f"TorchScript frontend: unknown {tag} code {value}")
            return table[value]
    return value


def _same_literal(a: Any, b: Any) -> bool:
    """Literal equality that never calls a tensor's or Node's __eq__ and keeps 1 != 1.0 != True."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_literal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (torch.fx.Node, torch.Tensor)) or isinstance(b, (torch.fx.Node, torch.Tensor)):
        return False
    return type(a) is type(b) and a == b


_VALUE_AND_INDEX = value_and_index_ops()
# Composite overloads TorchScript keeps whole and make_fx turns into their implementation: spelled
# as the FX frontend spells them, so the op table and the passes see one op, whatever the frontend.
_AS_TRACED = {
    torch.ops.aten.min.other: torch.ops.aten.minimum.default,
    torch.ops.aten.max.other: torch.ops.aten.maximum.default,
}


def _known_non_bool(node: torch._C.Node) -> bool:
    """Whether the node's first input is a tensor typed with a non-bool dtype (eager refuses
    bool argmax, so max.dim of bools stays whole; so does a scripted graph's, whose values
    carry no dtype)."""
    t = next(iter(node.inputs())).type()
    scalar = t.scalarType() if isinstance(t, torch._C.TensorType) else None
    return scalar is not None and scalar != "Bool"


def _lookup_overload(node: torch._C.Node) -> torch._ops.OpOverload:
    text = node.schema()
    if text == "(no schema)":
        raise _unsupported(node, "no operator schema matches its inputs")
    schema = torch._C.parse_schema(text)
    namespace, name = schema.name.split("::", 1)
    try:
        packet = getattr(getattr(torch.ops, namespace), name)
        return getattr(packet, schema.overload_name or "default")
    except (AttributeError, RuntimeError) as exc:
        raise _unsupported(node, f"no torch.ops overload for {text}") from exc


class _Converter:
    """Walks the cleaned TorchScript graph once, building the FX graph and its owning module."""

    def __init__(self, obj: Any, graph: torch._C.Graph, example_inputs: Sequence[Any] | None):
        self.obj = obj
        self.ts_graph = graph
        self.example_inputs = list(example_inputs) if example_inputs is not None else None
        self.fx = torch.fx.Graph()
        self.root = torch.nn.Module()
        self.env: dict[int, Any] = {}            # torch._C.Value.unique() -> converted value
        self.input_types: dict[int, Any] = {}    # value id -> example tensor (dtype/device)
        self.attr_nodes: dict[str, torch.fx.Node] = {}   # one get_attr per tensor path
        self.constant_ids: dict[int, str] = {}   # id(tensor constant) -> attribute name

    # -- driver -------------------------------------------------------------------------------
    def run(self) -> torch.fx.GraphModule:
        self._convert_inputs()
        for node in self.ts_graph.nodes():
            self._convert_node(node)
        outputs = [self._value(v) for v in self.ts_graph.outputs()]
        result = outputs[0] if len(outputs) == 1 else tuple(outputs)
        self.fx.output(self._materialize_all(result))
        self.fx.lint()
        name = getattr(self.obj, "original_name", None) or getattr(self.obj, "name", "Script")
        class_name = re.sub(r"\W", "_", f"{name}Graph")
        return torch.fx.GraphModule(self.root, self.fx, class_name=class_name)

    def _convert_inputs(self) -> None:
        inputs = list(self.ts_graph.inputs())
        if isinstance(self.obj, torch.jit.ScriptModule):
            self.env[inputs[0].unique()] = _ModuleRef("", self.obj)
            inputs = inputs[1:]
        if self.example_inputs is not None and len(self.example_inputs) != len(inputs):
            raise NvfuseError(f"TorchScript frontend: graph takes {len(inputs)} inputs, "
                              f"got {len(self.example_inputs)} example inputs")
        for i, value in enumerate(inputs):
            self.env[value.unique()] = self.fx.placeholder(_placeholder_name(value.debugName()))
            if self.example_inputs is not None and isinstance(self.example_inputs[i], torch.Tensor):
                self.input_types[value.unique()] = self.example_inputs[i]

    def _convert_node(self, node: torch._C.Node) -> None:
        kind = node.kind()
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, node)
        elif kind.startswith("prim::") or list(node.blocks()):
            raise _unsupported(node)
        else:
            self._convert_op(node)

    # -- values -------------------------------------------------------------------------------
    def _value(self, value: torch._C.Value) -> Any:
        return self.env[value.unique()]

    def _set(self, node: torch._C.Node, result: Any) -> None:
        self.env[node.output().unique()] = result

    def _materialize(self, value: Any) -> Any:
        """Turn frontend-only placeholders into graph values an aten op can take."""
        if isinstance(value, _NumTensor):
            return self.fx.call_function(torch.ops.aten.scalar_tensor.default, (value.scalar,),
                                         {"dtype": value.dtype})
        if isinstance(value, _SizeList):
            return self.fx.call_function(torch.ops.aten.sym_size.default, (value.tensor,))
        if isinstance(value, _ModuleRef):
            raise NvfuseError(f"TorchScript frontend: module {value.path or 'self'} used as a "
                              f"value is not supported")
        return value

    def _materialize_all(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return type(value)(self._materialize_all(v) for v in value)
        if isinstance(value, dict):
            return {k: self._materialize_all(v) for k, v in value.items()}
        return self._materialize(value)

    def _tensor_attr(self, path: str, tensor: torch.Tensor) -> torch.fx.Node:
        """One get_attr node per attribute path; the root module holds the same tensor object."""
        if path not in self.attr_nodes:
            owner = self.root
            *prefix, field = path.split(".")
            for item in prefix:
                if not hasattr(owner, item):
                    owner.add_module(item, torch.nn.Module())
                owner = getattr(owner, item)
            if isinstance(tensor, torch.nn.Parameter):
                owner.register_parameter(field, tensor)
            else:
                owner.register_buffer(field, tensor)
            self.attr_nodes[path] = self.fx.get_attr(path)
        return self.attr_nodes[path]

    def _constant(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            name = self.constant_ids.get(id(value))
            if name is None:
                index = len(self.constant_ids)
                while hasattr(self.root, f"{CONSTANT_PREFIX}{index}"):
                    index += 1
                name = f"{CONSTANT_PREFIX}{index}"
                self.constant_ids[id(value)] = name
            return self._tensor_attr(name, value)
        if isinstance(value, list):
            return [self._constant(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._constant(v) for v in value)
        return value

    # -- aten (and other schema'd) operators --------------------------------------------------
    def _convert_op(self, node: torch._C.Node) -> None:
        op = _lookup_overload(node)
        op = _AS_TRACED.get(op, op)
        schema_args = op._schema.arguments
        ts_inputs = list(node.inputs())
        if len(ts_inputs) > len(schema_args):
            raise _unsupported(node, "more inputs than its schema has arguments")
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for arg, value in zip(schema_args, ts_inputs, strict=False):
            real_type = str(arg.real_type)
            converted = _coerce_enum(self._materialize_all(self._value(value)), real_type)
            default = _coerce_enum(arg.default_value, real_type) if arg.has_default_value() \
                else _NO_DEFAULT
            # Defaults are dropped so graphs from every frontend spell an op the same way
            # (CSE and peepholes match on args/kwargs).
            if arg.kwarg_only:
                if not _same_literal(converted, default):
                    kwargs[arg.name] = converted
            else:
                args.append((converted, default))
        while args and _same_literal(args[-1][0], args[-1][1]):
            args.pop()
        if op in _VALUE_AND_INDEX and _known_non_bool(node):
            self._value_and_index(node, op, [a for a, _ in args])
            return
        fx_node = self.fx.call_function(op, tuple(a for a, _ in args), kwargs)
        fx_node.meta["stack_trace"] = _source(node)
        outputs = list(node.outputs())
        if len(outputs) == 1:
            self.env[outputs[0].unique()] = fx_node
            return
        for i, out in enumerate(outputs):
            if out.uses():
                self.env[out.unique()] = self.fx.call_function(operator.getitem, (fx_node, i))

    def _value_and_index(self, node: torch._C.Node, op: Any, args: list[Any]) -> None:
        """max.dim / min.dim as the (amax, argmax) / (amin, argmin) pair the FX frontend
        decomposes them into (nvfuse/frontend/norms.py), so both fuse into one kernel."""
        values_op, indices_op = _VALUE_AND_INDEX[op]
        x, dim, *keep = args
        for out, target, d in zip(node.outputs(), (values_op, indices_op), ([dim], dim)):
            if out.uses():
                fx_node = self.fx.call_function(target, (x, d, *keep))
                fx_node.meta["stack_trace"] = _source(node)
                self.env[out.unique()] = fx_node

    # -- prim handlers ------------------------------------------------------------------------
    def _prim_constant(self, node: torch._C.Node) -> None:
        out = node.output()
        if str(out.type()) == "NoneType":
            self._set(node, None)
            return
        try:
            value = out.toIValue()
        except RuntimeError as exc:
            raise _unsupported(node, f"constant of type {out.type()}") from exc
        if not isinstance(value, (type(None), bool, int, float, complex, str, torch.device,
                                  torch.Tensor, list, tuple, torch.dtype)):
            raise _unsupported(node, f"constant of type {out.type()}")
        self._set(node, self._constant(value))

    def _prim_get_attr(self, node: torch._C.Node) -> None:
        owner = self._value(node.input())
        if not isinstance(owner, _ModuleRef):
            raise _unsupported(node, "attribute of a non-module value")
        name = node.s("name")
        path = f"{owner.path}.{name}" if owner.path else name
        attr = getattr(owner.module, name)
        if isinstance(attr, torch.Tensor):
            self._set(node, self._tensor_attr(path, attr))
        elif isinstance(attr, (torch.jit.ScriptModule, torch.nn.Module)):
            self._set(node, _ModuleRef(path, attr))
        elif isinstance(attr, (type(None), bool, int, float, str, list, tuple)):
            self._set(node, self._constant(attr))
        else:
            raise _unsupported(node, f"attribute {path} of type {type(attr).__name__}")

    def _prim_list_construct(self, node: torch._C.Node) -> None:
        self._set(node, [self._value(v) for v in node.inputs()])

    def _prim_tuple_construct(self, node: torch._C.Node) -> None:
        self._set(node, tuple(self._value(v) for v in node.inputs()))

    def _prim_dict_construct(self, node: torch._C.Node) -> None:
        # torch.jit.trace(strict=False) of a module returning a dict: key, value, key, value...
        items = [self._value(v) for v in node.inputs()]
        keys = items[0::2]
        if not all(isinstance(k, (str, int, float, bool)) for k in keys):
            raise _unsupported(node, "dict key that is not a constant")
        self._set(node, dict(zip(keys, items[1::2])))

    def _prim_unpack(self, node: torch._C.Node) -> None:
        source = self._value(node.input())
        outputs = list(node.outputs())
        if isinstance(source, _SizeList):
            source = [self._sym_size(source.tensor, i) for i in range(len(outputs))]
        for i, out in enumerate(outputs):
            self.env[out.unique()] = self._index(source, i)

    def _prim_tuple_index(self, node: torch._C.Node) -> None:
        source, index = (self._value(v) for v in node.inputs())
        if not isinstance(index, int):
            raise _unsupported(node, "tuple index that is not a constant")
        self._set(node, self._index(source, index))

    def _aten_getitem(self, node: torch._C.Node) -> None:
        source, index = (self._value(v) for v in node.inputs())
        if isinstance(source, _SizeList) and isinstance(index, int):
            self._set(node, self._sym_size(source.tensor, index))
        elif isinstance(source, (list, tuple)) and isinstance(index, int):
            self._set(node, source[index])
        elif isinstance(source, dict) and index in source:
            self._set(node, source[index])
        elif isinstance(source, torch.fx.Node) and source.op == "placeholder" \
                and isinstance(index, str):
            # a dict input (torch.jit.trace(strict=False)): index the Python dict itself
            self._set(node, self.fx.call_function(operator.getitem, (source, index)))
        else:
            self._convert_op(node)

    def _index(self, source: Any, index: int) -> Any:
        if isinstance(source, (list, tuple)):
            return source[index]
        if isinstance(source, torch.fx.Node):  # an op returning Tensor[] or a tuple
            return self.fx.call_function(operator.getitem, (source, index))
        raise NvfuseError(f"TorchScript frontend: cannot index {type(source).__name__}")

    def _sym_size(self, tensor: torch.fx.Node, dim: Any) -> torch.fx.Node:
        return self.fx.call_function(torch.ops.aten.sym_size.int, (tensor, dim))

    def _aten_size(self, node: torch._C.Node) -> None:
        inputs = [self._value(v) for v in node.inputs()]
        if len(inputs) == 2:
            self._set(node, self._sym_size(inputs[0], inputs[1]))
        else:
            tensor_type = next(node.inputs()).type()
            rank = tensor_type.dim() if isinstance(tensor_type, torch.TensorType) else None
            self._set(node, _SizeList(inputs[0], rank))

    def _aten_len(self, node: torch._C.Node) -> None:
        source = self._value(node.input())
        if isinstance(source, (list, tuple)):
            self._set(node, len(source))
        elif isinstance(source, _SizeList) and source.rank is not None:
            self._set(node, source.rank)
        else:
            self._convert_op(node)

    def _prim_num_to_tensor(self, node: torch._C.Node) -> None:
        scalar = self._value(node.input())
        out_type = node.output().type()
        dtype_name = out_type.scalarType() if isinstance(out_type, torch.TensorType) else None
        # Eager NumToTensor: int -> int64, float -> float64, bool -> bool (0-dim, on the CPU).
        by_input = {"float": torch.float64, "bool": torch.bool}.get(str(node.input().type()),
                                                                   torch.int64)
        dtype = _SCALAR_TYPE_NAMES.get(dtype_name or "", by_input)
        self._set(node, _NumTensor(scalar, dtype))

    def _aten_to_scalar(self, node: torch._C.Node) -> None:
        """aten::Int / Float / ScalarImplicit: undo a NumToTensor, else run the real op."""
        source = self._value(node.input())
        if isinstance(source, _NumTensor):
            scalar = source.scalar
            if node.kind() == "aten::Int" and isinstance(scalar, float):
                scalar = int(scalar)
            elif node.kind() == "aten::Float" and isinstance(scalar, int):
                scalar = float(scalar)
            if isinstance(scalar, torch.fx.Node) and node.kind() == "aten::Float":
                self._convert_op(node)  # int-valued graph scalar: keep the conversion op
                return
            self._set(node, scalar)
        else:
            self._convert_op(node)

    def _typed(self, node: torch._C.Node) -> Any:
        """The JIT type of node's input, typed from example inputs when the graph has none."""
        value = node.input()
        example = self.input_types.get(value.unique())
        return example if example is not None else value.type()

    def _prim_dtype(self, node: torch._C.Node) -> None:
        typed = self._typed(node)
        if isinstance(typed, torch.Tensor):
            self._set(node, typed.dtype)
            return
        name = typed.scalarType() if isinstance(typed, torch.TensorType) else None
        if name not in _SCALAR_TYPE_NAMES:
            raise _unsupported(node, "dtype of a value whose type is unknown "
                                     "(pass example_inputs, or trace instead of script)")
        self._set(node, _SCALAR_TYPE_NAMES[name])

    def _prim_device(self, node: torch._C.Node) -> None:
        typed = self._typed(node)
        if isinstance(typed, torch.Tensor):
            self._set(node, typed.device)
            return
        device = typed.device() if isinstance(typed, torch.TensorType) else None
        if device is None:
            raise _unsupported(node, "device of a value whose type is unknown "
                                     "(pass example_inputs, or trace instead of script)")
        self._set(node, device)


_NO_DEFAULT = object()

_HANDLERS = {
    "prim::Constant": _Converter._prim_constant,
    "prim::GetAttr": _Converter._prim_get_attr,
    "prim::ListConstruct": _Converter._prim_list_construct,
    "prim::TupleConstruct": _Converter._prim_tuple_construct,
    "prim::DictConstruct": _Converter._prim_dict_construct,
    "prim::ListUnpack": _Converter._prim_unpack,
    "prim::TupleUnpack": _Converter._prim_unpack,
    "prim::TupleIndex": _Converter._prim_tuple_index,
    "prim::NumToTensor": _Converter._prim_num_to_tensor,
    "prim::dtype": _Converter._prim_dtype,
    "prim::device": _Converter._prim_device,
    "aten::size": _Converter._aten_size,
    "aten::len": _Converter._aten_len,
    "aten::__getitem__": _Converter._aten_getitem,
    "aten::Int": _Converter._aten_to_scalar,
    "aten::Float": _Converter._aten_to_scalar,
    "aten::ScalarImplicit": _Converter._aten_to_scalar,
}
