"""The training labs' Hub path through the stand-in Hub: the LoRA trainer's and the DPO labeler's base
model downloads with progress through shared.loading, the shared comparison copy lives in the bounded
model cache, and a public server refuses an unlisted id before fetching anything."""
import sys

import pytest

from conftest import ROOT
from hubstub import GPT2, forget_hub_models, hub  # noqa: F401
from shared import loading
from shared.models import ModelUnavailable


def weight_gets(hub, repo):
    return [r for r in hub.served(repo) if r[0] == "GET" and r[2] == "model.safetensors"]


@pytest.fixture
def lora_models():
    sys.path.insert(0, str(ROOT / "spaces" / "lora_trainer"))
    import lora_models

    yield lora_models
    forget_hub_models()


@pytest.fixture
def dpo_train():
    sys.path.insert(0, str(ROOT / "spaces" / "dpo_labeler"))
    import dpo_train

    return dpo_train


def test_lora_base_downloads_with_progress_and_the_comparison_copy_is_bounded(hub, lora_models):
    src = lora_models.source(GPT2)
    assert src.choice.source == "hub"
    said = []
    model = lora_models.load_for_training(src, device="cpu", progress=lambda f, text: said.append(text))
    assert model.config.n_layer == 2 and any("Downloading" in text for text in said), said
    bundle = lora_models.comparison_model(src)
    assert bundle is lora_models.comparison_model(src)  # one shared copy
    assert any(key[0] == "lora_compare" and key[1] == GPT2 for key in loading.model_cache().keys())
    assert len(weight_gets(hub, GPT2)) == 1  # the second load read the local HF cache
    del bundle
    assert loading.unload(lambda key: key[0] == "lora_compare") == 1


def test_lora_refuses_an_unlisted_id_on_a_public_server(hub, lora_models, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/lab")
    with pytest.raises(ModelUnavailable, match="loads only the models in its list"):
        lora_models.source(GPT2)
    assert weight_gets(hub, GPT2) == []


def test_dpo_training_copy_comes_from_the_hub_through_shared_loading(hub, dpo_train):
    model, tokenizer, name = dpo_train.fresh_base(GPT2)
    assert model.config.n_layer == 2 and tokenizer.pad_token_id is not None and name == GPT2
    assert len(weight_gets(hub, GPT2)) == 1
    again, _, _ = dpo_train.fresh_base(GPT2)
    assert again is not model and len(weight_gets(hub, GPT2)) == 1  # a private copy, from the HF cache


def test_every_lab_refuses_the_800_gb_model_fast_and_fetches_nothing(hub, lora_models, dpo_train):
    import time

    from hubstub import HUGE

    for lab in ("diffusion_demo", "quantization_comparer"):
        sys.path.insert(0, str(ROOT / "spaces" / lab))
    import diffusion_hub
    import quant_configs
    import quant_measure

    quant_configs.resolve_model.cache_clear()
    asks = {"LoRA trainer": lambda: lora_models.source(HUGE),
            "DPO labeler": lambda: dpo_train.fresh_base(HUGE),
            "diffusion demo": lambda: diffusion_hub.choose(HUGE),
            "quantization comparer": lambda: quant_measure.plan(HUGE, ["fp32"])}
    for lab, ask in asks.items():
        start = time.monotonic()
        with pytest.raises(Exception) as err:
            ask()
        assert time.monotonic() - start < 2.0, lab
        assert "too big" in str(err.value) or "does not fit" in str(err.value), (lab, str(err.value))
    assert [r for r in hub.served(HUGE) if not r[2].endswith(".json")] == []  # no weight file fetched
    quant_configs.resolve_model.cache_clear()
