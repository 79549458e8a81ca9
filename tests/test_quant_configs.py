"""quant_configs: the shipped configs and their sources, names and Hub ids resolved offline, and
every kind of name that is not a model refused with a message."""
import sys
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parent.parent / "spaces" / "quantization_comparer"
sys.path.insert(0, str(LAB))

import quant_configs as qc  # noqa: E402
from shared.models import ModelUnavailable  # noqa: E402


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_every_shipped_config_has_a_source_line():
    sources = (qc.CONFIG_DIR / "SOURCES.md").read_text()
    assert len(qc.shipped()) >= 20
    for name, cfg in qc.shipped().items():
        assert f"{name}.json" in sources and cfg["_name_or_path"] in sources


def test_hub_id_of_a_shipped_config_resolves_offline():
    ref = qc.resolve_model("meta-llama/Llama-3.1-8B")
    assert ref.name == "Llama-3.1-8B" and ref.source == "shipped config"


@pytest.mark.parametrize("name", ["", "   ", "not a model !!", "x" * 500, "someone/unknown-model-xyz", 42, None])
def test_unknown_or_garbage_models_offline(name):
    with pytest.raises(ModelUnavailable):
        qc.resolve_model(name)
