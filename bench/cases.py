"""The benchmark case table and the correctness check every case passes before it is timed.

Contract:
    CASES: list[Case]; each Case has a name, a kind (one of KINDS), the dtype it runs in, `fn`
    (a plain function of tensors, traced by nvfuse.fuse and torch.compile) and
    `make_inputs(size, device)` with size "tiny" (a few elements, for the CPU interpreter and the
    smoke test) or "full" (the GPU sizes: traffic from ~1 MB to several GB).
    `mutates=True`: `fn` updates its inputs in place (an optimizer step), so every correctness
    check runs on copies; `min_bytes(inputs)` then gives the traffic floor.
    `train=True`: the benchmark is forward + backward.  make_inputs then returns the forward
    inputs (those to differentiate have requires_grad) followed by the upstream gradient; see
    `train_step`.
    check_close(out, ref, dtype) -> None when `out` matches eager's `ref`, else why not.

Overhead cases run tiny tensors at every size; compile cases use the full shapes (shapes don't
change what is compiled, only the signature does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from nvfuse.demo import bias_gelu_residual, box_iou

Kind = Literal["pointwise", "reduction", "normalization", "training", "optimizer", "overhead",
               "compile"]
KINDS: tuple[str, ...] = ("pointwise", "reduction", "normalization", "training", "optimizer",
                          "overhead", "compile")
Size = Literal["tiny", "full"]
Inputs = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Case:
    name: str
    kind: Kind
    dtype: torch.dtype
    fn: Callable[..., Any]
    make_inputs: Callable[[str, str], Inputs]
    train: bool = False
    # The least bytes a call must move, where inputs + outputs is not it (an in-place update
    # reads and writes the same tensors): None counts every input and output once.
    min_bytes: Callable[[Inputs], int] | None = None
    mutates: bool = False  # the call updates its inputs: each check runs on fresh copies
    # where bench --model plans the full-size call (bench/model/plan.py): "meta" tensors, or
    # "cpu" where torch's meta tensors take another path than a device's
    plan_device: str = "meta"


# -- the functions ------------------------------------------------------------------------------


def swiglu(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.silu(a) * b


def chain10(x: torch.Tensor) -> torch.Tensor:
    """Ten pointwise ops: eager writes and re-reads nine intermediates."""
    y = torch.sigmoid(x * 1.25 + 0.5) * x
    y = torch.tanh(y - 0.125)
    y = y * y + x
    return torch.sqrt(torch.relu(y))


def bias_add(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return x + b


def rotary(q: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Llama's apply_rotary_pos_emb for one tensor: q * cos + rotate_half(q) * sin."""
    half = q.shape[-1] // 2
    return q * cos + torch.cat((-q[..., half:], q[..., :half]), dim=-1) * sin


def kv_append(cache: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    return torch.cat((cache, new), dim=2)


def sum_last(x: torch.Tensor) -> torch.Tensor:
    return x.sum(-1)


def sum_first(x: torch.Tensor) -> torch.Tensor:
    return x.sum(0)


def batch_norm_train(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, rm: torch.Tensor,
                     rv: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, rm, rv, w, b, training=True)


def group_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.group_norm(x, 32, w, b)


def softmax_last(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, -1)


def log_softmax_last(x: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(x, -1)


def layer_norm_residual(x: torch.Tensor, r: torch.Tensor, w: torch.Tensor, b: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-norm transformer step: the new residual stream and its layer norm."""
    s = x + r
    return s, F.layer_norm(s, (s.shape[-1],), w, b)


def rms_norm_residual(x: torch.Tensor, r: torch.Tensor, w: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    s = x + r
    return s, F.rms_norm(s, (s.shape[-1],), w)


def layer_norm_backward(dy: torch.Tensor, x: torch.Tensor, mean: torch.Tensor,
                        rstd: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> Any:
    """dx, dw, db from the forward's saved mean and rstd (the kernel autograd runs)."""
    return torch.ops.aten.native_layer_norm_backward(
        dy, x, [x.shape[-1]], mean, rstd, w, b, [True, True, True])


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, target)


def layer_norm_only(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), w, b)


def rms_norm_only(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), w)


def mlp_block(x: torch.Tensor, lw: torch.Tensor, lb: torch.Tensor, w1: torch.Tensor,
              b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """GPT-2's MLP sub-block: x + c_proj(gelu_tanh(c_fc(ln_2(x))))."""
    h = F.layer_norm(x, (x.shape[-1],), lw, lb)
    return x + F.linear(F.gelu(F.linear(h, w1, b1), approximate="tanh"), w2, b2)


def train_step(f: Callable[..., Any]) -> Callable[..., tuple[torch.Tensor, ...]]:
    """(forward inputs..., grad_out) -> (forward output, grads of every input needing grad)."""

    def step(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        *fwd, grad_out = args
        out = f(*fwd)
        wrt = [t for t in fwd if t.requires_grad]
        return (out, *torch.autograd.grad(out, wrt, grad_out))

    return step


ADAMW = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}


def adamw_step(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One AdamW step over n parameters, op for op the update torch.optim.AdamW(foreach=True,
    capturable=True) makes (step counts as tensors beside the params: no host sync, the form
    torch.compile and CUDA graphs take): `tensors` are the params, grads, first and second
    moments, then the step counts (n each); updates them in place, returns params and moments.
    Written out because torch's functional entry point checks devices differently across
    versions and refuses tensor step counts on the CPU."""
    n = len(tensors) // 5
    params, grads, m, v, steps = (list(tensors[i * n:(i + 1) * n]) for i in range(5))
    lr, (beta1, beta2), eps, wd = (ADAMW["lr"], ADAMW["betas"], ADAMW["eps"],
                                   ADAMW["weight_decay"])
    torch._foreach_add_(steps, 1)
    torch._foreach_mul_(params, 1 - lr * wd)
    torch._foreach_lerp_(m, grads, 1 - beta1)
    torch._foreach_mul_(v, beta2)
    torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
    correction1 = torch._foreach_pow(beta1, steps)
    correction2 = torch._foreach_pow(beta2, steps)
    torch._foreach_sub_(correction1, 1)
    torch._foreach_sub_(correction2, 1)
    torch._foreach_neg_(correction2)
    torch._foreach_div_(correction1, lr)
    torch._foreach_reciprocal_(correction1)      # -lr / (1 - beta1^t): minus the step size
    torch._foreach_sqrt_(correction2)
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, correction2)
    torch._foreach_add_(denom, eps)
    torch._foreach_div_(denom, correction1)
    torch._foreach_addcdiv_(params, m, denom)
    return (*params, *m, *v)


def gpt2_parameter_shapes(layers: int = 12, d: int = 768, vocab: int = 50257,
                          positions: int = 1024) -> list[tuple[int, ...]]:
    """The parameter shapes of GPT-2 small (148 tensors, 124M values at the defaults)."""
    shapes: list[tuple[int, ...]] = [(vocab, d), (positions, d)]
    for _ in range(layers):
        shapes += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,),
                   (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    return shapes + [(d,), (d,)]


def _adamw_inputs(size: str, device: str) -> Inputs:
    """GPT-2 small's parameters in float32 (the tiny size: one layer at d=32), random grads
    and moments (second moments positive), the step counts at 3."""
    torch.manual_seed(0)
    shapes = (gpt2_parameter_shapes() if size == "full"
              else gpt2_parameter_shapes(layers=1, d=32, vocab=96, positions=16))
    params = [_randn(s, F32, device, 0.02) for s in shapes]
    grads = [_randn(s, F32, device, 0.01) for s in shapes]
    m = [_randn(s, F32, device, 0.001) for s in shapes]
    v = [torch.rand(s, device=device) * 1e-5 for s in shapes]
    steps = [torch.full((), 3.0, device=device) for _ in shapes]
    return (*params, *grads, *m, *v, *steps)


def _adamw_bytes(inputs: Inputs) -> int:
    """Read params, grads and both moments, write params and both moments: 7 x 4 bytes a value."""
    values = sum(t.numel() for t in inputs[:len(inputs) // 5])
    return 7 * 4 * values


# -- inputs -------------------------------------------------------------------------------------


def _randn(shape: tuple[int, ...], dtype: torch.dtype, device: str, scale: float = 1.0,
           shift: float = 0.0) -> torch.Tensor:
    return (torch.randn(shape, device=device) * scale + shift).to(dtype)


def _randn_inputs(tiny: list[tuple[int, ...]], full: list[tuple[int, ...]], dtype: torch.dtype
                  ) -> Callable[[str, str], Inputs]:
    def make(size: str, device: str) -> Inputs:
        torch.manual_seed(0)
        return tuple(_randn(s, dtype, device) for s in (full if size == "full" else tiny))

    return make


def _boxes(size: str, device: str) -> Inputs:
    torch.manual_seed(0)
    n = 1 << 24 if size == "full" else 1000
    xy = [torch.rand(n, device=device) * 100 for _ in range(4)]
    wh = [torch.rand(n, device=device) * 30 + 1 for _ in range(4)]
    return (xy[0], xy[1], wh[0], wh[1], xy[2], xy[3], wh[2], wh[3])


def _norm_inputs(hidden: int, dtype: torch.dtype, with_bias: bool
                 ) -> Callable[[str, str], Inputs]:
    def make(size: str, device: str) -> Inputs:
        torch.manual_seed(0)
        rows, h = (8192, hidden) if size == "full" else (8, hidden // 128)
        ins = [_randn((rows, h), dtype, device), _randn((rows, h), dtype, device),
               _randn((h,), dtype, device, 0.1, 1.0)]
        if with_bias:
            ins.append(_randn((h,), dtype, device, 0.1))
        return tuple(ins)

    return make


def _ln_backward_inputs(size: str, device: str) -> Inputs:
    torch.manual_seed(0)
    rows, h = (8192, 4096) if size == "full" else (8, 32)
    dtype = torch.bfloat16
    x, dy = _randn((rows, h), dtype, device), _randn((rows, h), dtype, device)
    w, b = _randn((h,), dtype, device, 0.1, 1.0), _randn((h,), dtype, device, 0.1)
    _, mean, rstd = torch.ops.aten.native_layer_norm(x, [h], w, b, 1e-5)
    return (dy, x, mean, rstd, w, b)


def _ce_inputs(size: str, device: str) -> Inputs:
    torch.manual_seed(0)
    rows, vocab = (4096, 50304) if size == "full" else (8, 40)
    logits = _randn((rows, vocab), torch.bfloat16, device, 2.0)
    return (logits, torch.randint(0, vocab, (rows,), device=device))


def _train_inputs(tiny: list[tuple[int, ...]], full: list[tuple[int, ...]], dtype: torch.dtype,
                  grad: tuple[int, ...]) -> Callable[[str, str], Inputs]:
    """Forward inputs (those at the positions in `grad` require grad; a 1-d one is a norm's
    weight, near one) and the upstream gradient of the first input's shape."""

    def make(size: str, device: str) -> Inputs:
        torch.manual_seed(0)
        shapes = full if size == "full" else tiny
        fwd = [_randn(sh, dtype, device, 0.1, 1.0) if len(sh) == 1 else _randn(sh, dtype, device)
               for sh in shapes]
        fwd = [t.requires_grad_() if i in grad else t for i, t in enumerate(fwd)]
        return (*fwd, _randn(shapes[0], dtype, device))

    return make


def _ce_train_inputs(size: str, device: str) -> Inputs:
    logits, target = _ce_inputs(size, device)
    return (logits.requires_grad_(), target, torch.randn((), device=device).to(logits.dtype))


def _mlp_inputs(tokens: int, d: int, dtype: torch.dtype) -> Callable[[str, str], Inputs]:
    """GPT-2 small: d=768, 4d MLP, 8 x 1024 tokens; the tiny shape keeps the same structure."""

    def make(size: str, device: str) -> Inputs:
        torch.manual_seed(0)
        n, h = (tokens, d) if size == "full" else (16, 32)
        fwd = [_randn((n, h), dtype, device), _randn((h,), dtype, device, 0.1, 1.0),
               _randn((h,), dtype, device, 0.1), _randn((4 * h, h), dtype, device, 0.02),
               _randn((4 * h,), dtype, device, 0.02), _randn((h, 4 * h), dtype, device, 0.02),
               _randn((h,), dtype, device, 0.02)]
        return (*(t.requires_grad_() for t in fwd), _randn((n, h), dtype, device))

    return make


# -- the table ----------------------------------------------------------------------------------

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
_GELU_TINY, _GELU_FULL = [(8, 32), (32,), (8, 32)], [(8192, 4096), (4096,), (8192, 4096)]
_SOFTMAX_WIDTHS = {"1k": 1024, "4k": 4096, "32k": 32768, "128k": 131072}


def _softmax_cases() -> list[Case]:
    cases = []
    for dtype, tag in ((F32, "fp32"), (BF16, "bf16")):
        for label, width in _SOFTMAX_WIDTHS.items():
            make = _randn_inputs([(8, max(8, width // 1024))], [(4096, width)], dtype)
            cases.append(Case(f"softmax-w{label}-{tag}", "reduction", dtype, softmax_last, make))
    return cases


def _norm_cases() -> list[Case]:
    cases = []
    for hidden in (1024, 4096, 16384):
        cases.append(Case(f"layer-norm-residual-h{hidden}-bf16", "normalization", BF16,
                          layer_norm_residual, _norm_inputs(hidden, BF16, with_bias=True)))
    for hidden in (1024, 4096, 16384):
        cases.append(Case(f"rms-norm-residual-h{hidden}-bf16", "normalization", BF16,
                          rms_norm_residual, _norm_inputs(hidden, BF16, with_bias=False)))
    return cases


CASES: list[Case] = [
    # Compile cases first: the kernels they build must not be loaded by an earlier case.
    Case("compile-bias-gelu-residual", "compile", F16, bias_gelu_residual,
         _randn_inputs(_GELU_TINY, _GELU_FULL, F16)),
    Case("compile-box-iou", "compile", F32, box_iou, _boxes),
    Case("box-iou-fp32", "pointwise", F32, box_iou, _boxes),
    Case("bias-gelu-residual-fp16", "pointwise", F16, bias_gelu_residual,
         _randn_inputs(_GELU_TINY, _GELU_FULL, F16)),
    Case("bias-gelu-residual-bf16", "pointwise", BF16, bias_gelu_residual,
         _randn_inputs(_GELU_TINY, _GELU_FULL, BF16)),
    Case("swiglu-bf16", "pointwise", BF16, swiglu,
         _randn_inputs([(8, 44)] * 2, [(8192, 11008)] * 2, BF16)),
    Case("chain10-128k-fp32", "pointwise", F32, chain10,
         _randn_inputs([(100,)], [(1 << 17,)], F32)),
    Case("chain10-64m-fp32", "pointwise", F32, chain10,
         _randn_inputs([(1000,)], [(1 << 26,)], F32)),
    Case("bias-add-rows-fp32", "pointwise", F32, bias_add,
         _randn_inputs([(8, 32), (32,)], [(8192, 8192), (8192,)], F32)),
    Case("bias-add-cols-fp32", "pointwise", F32, bias_add,
         _randn_inputs([(8, 32), (8, 1)], [(8192, 8192), (8192, 1)], F32)),
    Case("rotary-llama-bf16", "pointwise", BF16, rotary,
         _randn_inputs([(1, 2, 4, 8), (4, 8), (4, 8)],
                       [(8, 32, 2048, 128), (2048, 128), (2048, 128)], BF16)),
    Case("kv-append-fp16", "pointwise", F16, kv_append,
         _randn_inputs([(1, 2, 3, 8), (1, 2, 1, 8)],
                       [(8, 32, 4095, 128), (8, 32, 1, 128)], F16)),
    Case("sum-last-fp32", "reduction", F32, sum_last,
         _randn_inputs([(8, 32)], [(16384, 8192)], F32)),
    Case("sum-first-fp32", "reduction", F32, sum_first,
         _randn_inputs([(8, 32)], [(16384, 8192)], F32)),
    *_softmax_cases(),
    Case("batch-norm-train-nchw-fp32", "normalization", F32, batch_norm_train,
         _randn_inputs([(4, 8, 3, 3), (8,), (8,), (8,), (8,)],
                       [(32, 256, 56, 56), (256,), (256,), (256,), (256,)], F32)),
    Case("group-norm-g32-fp32", "normalization", F32, group_norm,
         _randn_inputs([(2, 32, 3, 3), (32,), (32,)], [(32, 256, 56, 56), (256,), (256,)], F32)),
    Case("log-softmax-w32k-fp32", "reduction", F32, log_softmax_last,
         _randn_inputs([(8, 32)], [(4096, 32768)], F32)),
    *_norm_cases(),
    Case("layer-norm-backward-h4096-bf16", "normalization", BF16, layer_norm_backward,
         _ln_backward_inputs),
    Case("cross-entropy-v50k-bf16", "reduction", BF16, cross_entropy, _ce_inputs),
    Case("gpt2-mlp-fwd-bwd-bf16", "training", BF16, mlp_block, _mlp_inputs(8192, 768, BF16),
         train=True),
    # Long rows, backward passes and cross-entropy training (added after the cases above, which
    # stay as they are so that GPU runs remain comparable).
    Case("log-softmax-w128k-bf16", "reduction", BF16, log_softmax_last,
         _randn_inputs([(8, 160)], [(4096, 131072)], BF16)),
    Case("softmax-fwd-bwd-w32k-bf16", "training", BF16, softmax_last,
         _train_inputs([(8, 64)], [(4096, 32768)], BF16, grad=(0,)), train=True),
    Case("layer-norm-fwd-bwd-h4096-bf16", "training", BF16, layer_norm_only,
         _train_inputs([(8, 32), (32,), (32,)], [(8192, 4096), (4096,), (4096,)], BF16,
                       grad=(0, 1, 2)), train=True),
    Case("rms-norm-fwd-bwd-h16384-bf16", "training", BF16, rms_norm_only,
         _train_inputs([(8, 128), (128,)], [(8192, 16384), (16384,)], BF16, grad=(0, 1)),
         train=True),
    # Planned on the CPU: AOTAutograd gives nll_loss on meta tensors no gradient (torch 2.13's
    # aot_eager alike), so a meta plan would have no backward.
    Case("cross-entropy-fwd-bwd-v50k-bf16", "training", BF16, cross_entropy, _ce_train_inputs,
         train=True, plan_device="cpu"),
    # resnet's training batch norm, forward and backward (the running stats updated too).
    Case("batch-norm-fwd-bwd-nchw-fp32", "training", F32, batch_norm_train,
         _train_inputs([(4, 8, 3, 3), (8,), (8,), (8,), (8,)],
                       [(32, 256, 56, 56), (256,), (256,), (256,), (256,)], F32, grad=(0, 1, 2)),
         train=True),
    # The optimizer step of a training step: 148 tensors, 124M values, updated in place.
    Case("adamw-gpt2-small-fp32", "optimizer", F32, adamw_step, _adamw_inputs,
         min_bytes=_adamw_bytes, mutates=True),
    # Host overhead: one case per kind, always made with size "tiny" (bench/__main__.py).
    Case("overhead-pointwise", "overhead", F32, bias_gelu_residual,
         _randn_inputs(_GELU_TINY, _GELU_TINY, F32)),
    Case("overhead-reduction", "overhead", F32, softmax_last,
         _randn_inputs([(8, 32)], [(8, 32)], F32)),
    Case("overhead-normalization", "overhead", F32, layer_norm_residual,
         _norm_inputs(4096, F32, with_bias=True)),
    Case("overhead-training", "overhead", F32, mlp_block, _mlp_inputs(16, 32, F32), train=True),
]


# -- correctness --------------------------------------------------------------------------------

# ||out - ref|| / ||ref||: fused float32 lands far under 1e-5 (reordered reductions included);
# halves keep intermediates in float32 where eager rounds each op, a few ulps apart.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}


def flatten(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (tuple, list)):
        return [t for item in x for t in flatten(item)]
    return []


def check_close(out: Any, ref: Any, dtype: torch.dtype) -> str | None:
    outs, refs = flatten(out), flatten(ref)
    if len(outs) != len(refs):
        return f"{len(outs)} outputs, eager has {len(refs)}"
    tol = TOLERANCE.get(dtype, 1e-4)
    for i, (o, r) in enumerate(zip(outs, refs)):
        if o.shape != r.shape or o.dtype != r.dtype:
            return f"output {i}: {o.dtype}{list(o.shape)}, eager {r.dtype}{list(r.shape)}"
        if not r.is_floating_point():
            if not torch.equal(o, r):
                return f"output {i}: integer values differ"
            continue
        o, r = o.detach().float(), r.detach().float()
        if not torch.equal(o.isnan(), r.isnan()):
            return f"output {i}: NaN where eager has none (or the reverse)"
        o, r = o.nan_to_num(0.0), r.nan_to_num(0.0)
        err = (o - r).norm().item() / max(r.norm().item(), 1e-30)
        if not err <= tol:
            return f"output {i}: relative error {err:.3g} > {tol:g}"
    return None
