"""The NER lab's Hub tagger (dslim/bert-base-NER) through the stand-in Hub, which serves a tiny BERT
token classifier under that id: the lab sees it as available, downloads it and tags with it."""
import sys

import pytest

from conftest import ROOT
from hubstub import REGISTRY_NER, forget_hub_models, hub  # noqa: F401


@pytest.fixture
def ner_models():
    sys.path.insert(0, str(ROOT / "spaces" / "ner_tagger"))
    import ner_models

    yield ner_models
    forget_hub_models()  # the bounded cache keeps it: leave no stand-in model under the real id


def test_hub_tagger_downloads_and_tags(hub, ner_models):
    hub.prepare(REGISTRY_NER)
    tagger = ner_models.HubTagger()
    ok, why = tagger.status()
    assert ok and "Hub" in why
    text = "Ada Lovelace was born in London and worked with Charles Babbage."
    entities = tagger.tag(text)  # the tiny model calls every word piece B-PER
    assert entities and {e["coarse"] for e in entities} == {"PER"}
    for e in entities:
        assert 0 <= e["start"] < e["end"] <= len(text) and text[e["start"]:e["end"]] == e["text"]
    assert [r for r in hub.served(REGISTRY_NER) if r[0] == "GET" and r[2] == "model.safetensors"]
    assert ner_models.BERT.load() is ner_models.BERT.load()  # one copy, from the bounded cache


def test_hub_tagger_refused_on_a_shared_server_when_not_listed(hub, ner_models, monkeypatch):
    monkeypatch.setenv("GENAI_LAB_PUBLIC", "1")
    monkeypatch.setattr(ner_models.HubTagger, "hub_id", "tiny-org/tiny-bert-ner")
    with pytest.raises(ner_models.TaggerError, match="loads only the models in its list"):
        ner_models.HubTagger().load()
