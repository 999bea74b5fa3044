"""GPU tier: the transformer models of tests/models on the device (marker `gpu`): inference,
a training step with every gradient checked, in float32, strict (no silent fallback)."""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch._dynamo

import nvfuse
from nvfuse import config

pytestmark = pytest.mark.gpu
pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from test_transformers import MODELS, _ids, _no_dropout  # noqa: E402


@pytest.fixture(autouse=True)
def _strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVFUSE_STRICT", "1")
    monkeypatch.delenv("NVFUSE_INTERPRET", raising=False)
    config.reload()
    torch._dynamo.reset()
    torch.manual_seed(0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_inference_on_device(name: str) -> None:
    model = _no_dropout(MODELS[name]()).eval().cuda()
    ids = _ids().cuda()
    compiled = torch.compile(model, backend="nvfuse")
    with torch.no_grad():
        torch.testing.assert_close(compiled(input_ids=ids).logits, model(input_ids=ids).logits,
                                   rtol=1e-4, atol=1e-4)
    assert nvfuse.stats()["launches"] > 0 and nvfuse.stats()["fallbacks"] == 0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_training_step_on_device(name: str) -> None:
    model = _no_dropout(MODELS[name]()).train().cuda()
    reference = copy.deepcopy(model)
    ids = _ids(1).cuda()
    compiled = torch.compile(model, backend="nvfuse")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = compiled(input_ids=ids, labels=ids).loss
        loss.backward()
        expected = reference(input_ids=ids, labels=ids).loss
        expected.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)
    for (pname, p), q in zip(model.named_parameters(), reference.parameters()):
        if q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-4, msg=pname)
    assert nvfuse.stats()["launches"] > 0 and nvfuse.stats()["fallbacks"] == 0
