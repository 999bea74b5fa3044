"""Real models, small random-weight configurations (no downloads), through the interpreter:
GPT-2, Llama (RMSNorm, SiLU-gated MLP, rotary embeddings) and BERT from `transformers`.
Inference: outputs match eager.  Training through torch.compile(backend="nvfuse"): the loss and
every parameter's gradient match eager.  TorchScript: nvfuse.fuse(torch.jit.trace(model)).
Every case also checks that groups really ran as kernels and nothing fell back."""

from __future__ import annotations

import warnings
from typing import Any
from collections.abc import Callable

import pytest
import torch
import torch._dynamo

import model_checks
import nvfuse
from model_checks import assert_fused_without_fallback

T = pytest.importorskip("transformers")
VOCAB = 97


def _gpt2(**kw: Any) -> torch.nn.Module:
    return T.GPT2LMHeadModel(T.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=VOCAB,
                                          n_positions=64, bos_token_id=0, eos_token_id=0, **kw))


def _llama(**kw: Any) -> torch.nn.Module:
    return T.LlamaForCausalLM(T.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, vocab_size=VOCAB, max_position_embeddings=64, bos_token_id=0,
        eos_token_id=0, **kw))


def _bert(**kw: Any) -> torch.nn.Module:
    return T.BertForMaskedLM(T.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=VOCAB, max_position_embeddings=64, **kw))


MODELS: dict[str, Callable[..., torch.nn.Module]] = {"gpt2": _gpt2, "llama": _llama, "bert": _bert}


def _no_dropout(model: torch.nn.Module) -> torch.nn.Module:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def _setup(interpret: None) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_inference_matches_eager(name: str) -> None:
    model = _no_dropout(MODELS[name]()).eval()
    ids = _ids()
    compiled = torch.compile(model, backend="nvfuse")
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        actual = compiled(input_ids=ids).logits
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    assert_fused_without_fallback()


def check_training_step(model: torch.nn.Module, ids: torch.Tensor, grad_atol: float) -> None:
    """One language-modelling step (labels = ids) through torch.compile(backend="nvfuse")
    against a copy run eagerly: the loss and every parameter's gradient match."""
    model_checks.check_training_step(
        model, (ids,), lambda m, inputs: m(input_ids=inputs[0], labels=inputs[0]).loss,
        rtol=1e-4, atol=1e-5, grad_rtol=1e-3, grad_atol=grad_atol)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_training_loss_and_gradients_match_eager(name: str) -> None:
    check_training_step(_no_dropout(MODELS[name]()).train(), _ids(1), grad_atol=1e-5)


class _Logits(torch.nn.Module):
    """Traces cleanly: tensor in, tensor out (transformers returns dict-like outputs)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, use_cache=False).logits


@pytest.mark.parametrize("name", sorted(MODELS))
def test_torchscript_trace(name: str) -> None:
    model = _Logits(_no_dropout(MODELS[name]())).eval()
    ids = _ids(2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (ids,))
        fm = nvfuse.fuse(traced)
        actual = fm(ids)
        expected = model(ids)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    assert fm.fusion_groups
    assert_fused_without_fallback()
