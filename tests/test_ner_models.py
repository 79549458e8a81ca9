"""ner_models: the real embedded taggers (spaCy, the shipped student) with exact char offsets, the
student's merged folder in a plain transformers pipeline, and Hub models that say why they are off."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spaces" / "ner_tagger"))

import ner_entities  # noqa: E402
import ner_models  # noqa: E402

SENTENCE = "Chief executive Paul Batchelor said AMP will open an office in Sydney, Australia."


def _offsets_ok(text, ents):
    assert isinstance(ents, list)
    for e in ents:
        assert set(e) == {"text", "start", "end", "label", "coarse"}
        assert text[e["start"]:e["end"]] == e["text"]
        assert e["coarse"] in ("PER", "ORG", "LOC", "MISC")


def test_offline_hub_models_say_why(monkeypatch):
    monkeypatch.setenv("GENAI_LAB_OFFLINE", "1")
    ok, why = ner_models.BERT.status()
    assert not ok and "offline" in why
    ok, why = ner_models.GLINER.status()
    assert not ok and why
    with pytest.raises(ner_entities.TaggerError):
        ner_models.tag("Paris", "bert-base-NER")


def test_offline_models_tag_with_char_offsets():


    for name in ner_models.OFFLINE:
        ents = ner_models.tag(SENTENCE, name)
        _offsets_ok(SENTENCE, ents)
        found = {(e["text"], e["coarse"]) for e in ents}
        assert ("Paul Batchelor", "PER") in found, (name, found)
        assert ("Sydney", "LOC") in found, (name, found)


def test_student_folder_loads_in_a_plain_transformers_pipeline():
    from transformers import pipeline

    import ner_align


    plain = pipeline("token-classification", model=str(ner_models.student_folder()), aggregation_strategy="simple",
                     device="cpu")(SENTENCE)
    model, tokenizer = ner_models.STUDENT.load()
    ours = ner_align.aggregate(ner_models.STUDENT.pieces(SENTENCE), "simple", tokenizer)
    assert [(e["start"], e["end"], e["entity_group"]) for e in plain] == \
           [(e["start"], e["end"], e["entity_group"]) for e in ours]


def test_the_merged_student_folder_is_built_whole_or_not_at_all(tmp_path, monkeypatch):
    """The merged student is written through shared.store.atomic_folder: a build that fails half-way
    leaves no folder a later load would take for a complete one."""
    import shared.paths
    from transformers import AutoTokenizer

    monkeypatch.setattr(shared.paths, "cache_dir", lambda *parts: tmp_path.joinpath(*parts))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(AutoTokenizer, "from_pretrained", broken)
        with pytest.raises(OSError, match="disk full"):
            ner_models.student_folder()
    assert [p.name for p in (tmp_path / "ner_tagger").iterdir() if not p.name.endswith(".lock")] == []
    folder = ner_models.student_folder()
    assert (folder / "config.json").exists() and (folder / "SOURCE.txt").exists() and (folder / "tokenizer.json").exists()
