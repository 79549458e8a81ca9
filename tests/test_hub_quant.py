"""The quantization lab's measurement of a Hub model through the stand-in Hub: downloaded with progress
into the HF cache by shared.loading, measured, refused on a public server when unlisted, and given room
in the server's model budget (other models unloaded first) while it is loaded."""
import sys
import weakref

import pytest

from conftest import ROOT
from hubstub import FIVE, GPT2, forget_hub_models, hub  # noqa: F401
from shared import loading, modelcache
from shared.modelcache import ModelCache
from shared.models import ModelUnavailable


@pytest.fixture
def qm():
    sys.path.insert(0, str(ROOT / "spaces" / "quantization_comparer"))
    import quant_configs
    import quant_measure

    quant_configs.resolve_model.cache_clear()  # each test has its own stand-in Hub and HF cache
    yield quant_measure
    quant_configs.resolve_model.cache_clear()


def test_a_hub_model_downloads_with_progress_and_is_measured(hub, qm):
    said = []
    data = qm.measure(GPT2, ["fp32"], progress=lambda f, text: said.append(text), device="cpu",
                      new_tokens=4, reference_tokens=32)
    row = data["results"]["fp32"]
    assert data["source"] == "hub" and "error" not in row, row
    assert row["measured_bytes"] > 0 and abs(row["error_pct"]) < 5
    assert row["perplexity"] > 1 and len(row["continuation_ids"]) == 4
    assert any("Downloading" in text or "download" in text.lower() for text in said), said
    assert len([r for r in hub.served(GPT2) if r[0] == "GET" and r[2] == "model.safetensors"]) == 1


def test_a_public_server_does_not_measure_unlisted_ids(hub, qm, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/lab")
    with pytest.raises(ModelUnavailable, match="loads only the models in its list"):
        qm.start_measurement(GPT2, ["fp32"])
    assert [r for r in hub.served(GPT2) if r[0] == "GET" and r[2] == "model.safetensors"] == []


def test_a_measurement_makes_room_in_the_model_budget(hub, qm, monkeypatch):
    monkeypatch.setattr(loading, "_models", ModelCache())
    monkeypatch.setenv(modelcache.BUDGET_VAR, "0.010")  # 10 MB: one 6.5 MB tiny GPT-2 at a time
    hub.prepare(FIVE[0])
    first = weakref.ref(loading.load_causal_lm(FIVE[0], fallback=False).model)
    assert first() is not None
    qm.measure(GPT2, ["fp32"], device="cpu", new_tokens=2, reference_tokens=16)
    assert first() is None  # unloaded to make room, not held beside the measured model
    assert any("unloaded" in e for e in loading.model_cache().events)
    forget_hub_models()
