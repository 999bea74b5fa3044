"""GPU tier: the transformer models of tests/models on the device (marker `gpu`): inference,
a training step with every gradient checked, in float32, strict (no silent fallback)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch._dynamo

import nvfuse
from nvfuse import config

pytestmark = pytest.mark.gpu
pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from test_transformers import MODELS, _ids, _no_dropout, check_training_step  # noqa: E402


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
    check_training_step(_no_dropout(MODELS[name]()).train().cuda(), _ids(1).cuda(),
                        grad_atol=1e-4)
